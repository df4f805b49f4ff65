"""Display conventions shared by the montage, the report and the viewer.

One place decides how a CT and its label map become pixels a radiologist reads:

* **Orientation.** Volumes are reoriented to LPS-identity (``SimpleITK.DICOMOrient``), so
  the numpy view ``(z, y, x)`` has x increasing to the patient's left, y increasing to
  posterior and z increasing to superior. An axial slice ``a[k]`` shown as is therefore
  puts the patient's right on the image left and anterior at the top (radiological
  convention). Coronal and sagittal reformats are flipped vertically so superior is up;
  the sagittal has anterior on the image left.
* **Aspect.** Pixel aspect ratios come from the physical spacing (mm), never from indices.
* **Windows.** Lung W1500/L-600 and mediastinum W400/L40 (HU).
* **Palette.** Okabe-Ito (Okabe & Ito 2008, "Color Universal Design"), chosen to stay
  distinct for deutan, protan and tritan colour vision and on a grey CT background:
  GGO orange ``#E69F00`` and consolidation blue ``#0072B2`` differ in hue *and* in
  lightness (orange is light, blue is dark), so they stay apart even in greyscale print;
  the lung contour is bluish green ``#009E73`` drawn as a thin line, so its shape (line,
  not fill) separates it from the fills. Red/green pairs are avoided on purpose.
* **Safety.** Derived and secondary-capture images are never rendered (they may carry
  burned-in patient data): :func:`check_renderable` refuses them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from lesionquant.errors import UnsupportedDicomError
from lesionquant.segment import LUNG_LABELS, Label

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from lesionquant.scan import Acquisition

logger = logging.getLogger(__name__)

__all__ = [
    "COLOURS",
    "LUNG_WINDOW",
    "MEDIASTINUM_WINDOW",
    "WINDOWS",
    "DisplayVolume",
    "Window",
    "check_renderable",
    "fill_rgba",
    "to_display",
    "window_uint8",
]


#: Okabe-Ito colours (hex) used everywhere: fills for lesions, a line for the lung contour.
COLOURS = {
    "ggo": "#E69F00",  # orange
    "consolidation": "#0072B2",  # blue
    "lung": "#009E73",  # bluish green (contour line)
}
#: Opacity of the lesion fills in the montage (the viewer lets the reader change it).
FILL_ALPHA = 0.45


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


#: label value -> RGB (uint8) of its fill; labels not listed are not filled.
FILL_RGB = {Label.GGO: _rgb(COLOURS["ggo"]),
            Label.CONSOLIDATION: _rgb(COLOURS["consolidation"])}


@dataclass(frozen=True)
class Window:
    """A CT display window in HU.

    Attributes
    ----------
    name : str
        Short name (``"lung"``, ``"mediastinum"``).
    width_hu, level_hu : float
        Window width and centre, HU.
    """

    name: str
    width_hu: float
    level_hu: float

    @property
    def label(self) -> str:
        """Human-readable ``"W1500/L-600"``."""
        return f"W{self.width_hu:g}/L{self.level_hu:g}"


LUNG_WINDOW = Window("lung", 1500.0, -600.0)
MEDIASTINUM_WINDOW = Window("mediastinum", 400.0, 40.0)
WINDOWS = {w.name: w for w in (LUNG_WINDOW, MEDIASTINUM_WINDOW)}


def window_uint8(hu: np.ndarray, window: Window = LUNG_WINDOW) -> np.ndarray:
    """Map HU to 8-bit grey levels with a linear window.

    Parameters
    ----------
    hu : ndarray
        CT values, HU, any shape.
    window : Window
        Display window.

    Returns
    -------
    ndarray of uint8
        Same shape; ``level - width/2`` maps to 0 and ``level + width/2`` to 255.

    Examples
    --------
    >>> window_uint8(np.array([-1350.0, -600.0, 150.0])).tolist()
    [0, 128, 255]
    """
    lo = window.level_hu - window.width_hu / 2.0
    scaled = (np.asarray(hu, dtype=np.float32) - lo) * (255.0 / window.width_hu)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def fill_rgba(labels: np.ndarray) -> np.ndarray:
    """Colour lesion labels as opaque RGBA (transparent elsewhere).

    Parameters
    ----------
    labels : ndarray of uint8
        Label map slice (any shape), values per the label convention.

    Returns
    -------
    ndarray of uint8, shape ``labels.shape + (4,)``
        GGO and consolidation in their palette colours with alpha 255; everything else
        transparent black.
    """
    lut = np.zeros((256, 4), dtype=np.uint8)
    for value, rgb in FILL_RGB.items():
        lut[value] = (*rgb, 255)
    return lut[np.asarray(labels, dtype=np.uint8)]


def blend_fills(grey: np.ndarray, labels: np.ndarray, alpha: float = FILL_ALPHA) -> np.ndarray:
    """Blend translucent lesion fills over a grey image.

    Parameters
    ----------
    grey : (H, W) ndarray of uint8
        Windowed CT slice.
    labels : (H, W) ndarray of uint8
        Label map slice of the same shape.
    alpha : float
        Fill opacity in [0, 1].

    Returns
    -------
    (H, W, 3) ndarray of uint8
        ``grey * (1 - alpha) + colour * alpha`` where a fill label is, grey elsewhere.
    """
    rgba = fill_rgba(labels).astype(np.float32)
    a = (rgba[..., 3:4] / 255.0) * float(alpha)
    out = grey.astype(np.float32)[..., None] * (1.0 - a) + rgba[..., :3] * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def check_renderable(acquisition: Acquisition | None, source: object = "scan") -> None:
    """Refuse images that must never be rendered.

    Derived images and secondary captures (DICOM ImageType (0008,0008) value 1
    ``DERIVED`` or value 2 ``SECONDARY``, or Modality ``OT``) may carry burned-in patient
    data such as scanner screenshots, so the QA pictures never show them.

    Parameters
    ----------
    acquisition : Acquisition or None
        Acquisition facts of the scan; ``None`` (an array or volume file without a DICOM
        header) is accepted.
    source : object
        Name of the input, for the error message.

    Raises
    ------
    UnsupportedDicomError
        When the image is derived or a secondary capture.
    """
    if acquisition is None:
        return
    image_type = tuple(str(v).strip().upper() for v in (acquisition.image_type or ()))
    modality = str(acquisition.modality or "").strip().upper()
    if (image_type[:1] == ("DERIVED",) or "SECONDARY" in image_type[:2]
            or modality == "OT"):
        kind = "\\".join(image_type) if image_type else f"modality {modality}"
        raise UnsupportedDicomError(
            f"refusing to render a derived or secondary-capture image (ImageType {kind}); "
            "it may carry burned-in patient data",
            source=source,
        )


@dataclass(frozen=True)
class DisplayVolume:
    """A CT and its label map as arrays in display orientation (LPS identity).

    Attributes
    ----------
    hu : (Z, Y, X) ndarray
        CT values, HU (int16 or float32), z increasing superior.
    labels : (Z, Y, X) ndarray of uint8
        Label map on the same grid.
    spacing_mm : tuple of float
        ``(x, y, z)`` voxel spacing, mm.
    origin_z_mm : float
        LPS z of slice 0, mm (for slice position labels).
    """

    hu: np.ndarray
    labels: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_z_mm: float
    # The SimpleITK images the arrays view into, kept alive as long as the views.
    _images: tuple = field(default=(), repr=False, compare=False)

    @property
    def lung(self) -> np.ndarray:
        """Boolean lung mask (labels 1-4), ``(Z, Y, X)``."""
        lut = np.zeros(256, dtype=bool)
        lut[list(LUNG_LABELS)] = True
        return lut[self.labels]

    def z_mm(self, k: int) -> float:
        """LPS z position of axial slice ``k``, mm."""
        return self.origin_z_mm + k * self.spacing_mm[2]

    @property
    def axial_aspect(self) -> float:
        """Height/width of one axial pixel (``sy / sx``)."""
        return self.spacing_mm[1] / self.spacing_mm[0]

    @property
    def coronal_aspect(self) -> float:
        """Height/width of one coronal pixel (``sz / sx``)."""
        return self.spacing_mm[2] / self.spacing_mm[0]

    @property
    def sagittal_aspect(self) -> float:
        """Height/width of one sagittal pixel (``sz / sy``)."""
        return self.spacing_mm[2] / self.spacing_mm[1]

    def axial(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Axial slice ``k``: (hu, labels), rows anterior->posterior, cols right->left."""
        return self.hu[k], self.labels[k]

    def coronal(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Coronal plane at row ``j``: superior at the top, patient right on the left."""
        return self.hu[::-1, j, :], self.labels[::-1, j, :]

    def sagittal(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Sagittal plane at column ``i``: superior at the top, anterior on the left."""
        return self.hu[::-1, :, i], self.labels[::-1, :, i]


def to_display(image: sitk.Image, labels: sitk.Image, *, source: object = "scan"
               ) -> DisplayVolume:
    """Reorient a CT and its label map to LPS identity and take numpy views.

    Parameters
    ----------
    image : SimpleITK.Image
        3D CT, HU.
    labels : SimpleITK.Image
        3D label map (uint8) in the same geometry as ``image``.
    source : object
        Name of the input, for error messages.

    Returns
    -------
    DisplayVolume

    Raises
    ------
    GeometryError
        When the label map is not on the CT's grid.
    """
    import SimpleITK as sitk

    from lesionquant.errors import GeometryError

    if image.GetDimension() != 3 or labels.GetDimension() != 3:
        raise GeometryError("QA needs 3D images (a single slice is a 3D image with one slice)",
                            source=source)
    if image.GetSize() != labels.GetSize() or not np.allclose(
        image.GetSpacing(), labels.GetSpacing(), rtol=1e-4
    ) or not np.allclose(image.GetDirection(), labels.GetDirection(), atol=1e-4):
        raise GeometryError(
            f"label map grid {labels.GetSize()} {labels.GetSpacing()} does not match the CT "
            f"grid {image.GetSize()} {image.GetSpacing()}",
            source=source,
        )
    direction = np.array(image.GetDirection()).reshape(3, 3)
    if not np.allclose(direction, np.eye(3), atol=1e-6):
        image = sitk.DICOMOrient(image, "LPS")
        labels = sitk.DICOMOrient(labels, "LPS")
    hu = sitk.GetArrayViewFromImage(image)
    lab = sitk.GetArrayViewFromImage(labels)
    if lab.dtype != np.uint8:
        lab = np.clip(lab, 0, 255).astype(np.uint8)
    sx, sy, sz = (float(s) for s in image.GetSpacing())
    return DisplayVolume(hu=hu, labels=lab, spacing_mm=(sx, sy, sz),
                         origin_z_mm=float(image.GetOrigin()[2]), _images=(image, labels))
