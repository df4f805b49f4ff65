"""The loaded scan: the one object every pipeline stage receives.

Conventions (fixed for the whole package):

* ``Scan.image`` is a 3D :class:`SimpleITK.Image` in LPS physical space, spacing in mm,
  voxel values in Hounsfield units (HU). The pixel type is ``sitkInt16`` when the HU
  values are integers (the norm for CT) and ``sitkFloat32`` otherwise.
* numpy views of images are ``(z, y, x)`` (``SimpleITK.GetArrayViewFromImage``).
* Patient identifiers live only in memory (:class:`Identifiers`); their ``repr`` is masked
  so they do not leak into logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

__all__ = ["Acquisition", "Identifiers", "Scan"]


@dataclass(frozen=True)
class Identifiers:
    """Identifiers of a scan, kept in memory only.

    Attributes
    ----------
    patient_id : str
        DICOM PatientID (0010,0020); empty when unknown.
    patient_name : str
        DICOM PatientName (0010,0010).
    study_uid, series_uid : str
        StudyInstanceUID (0020,000D) and SeriesInstanceUID (0020,000E).
    study_date : str
        StudyDate (0008,0020), ``YYYYMMDD``; empty when unknown.
    study_time : str
        StudyTime (0008,0030), ``HHMMSS[.ffffff]``.
    accession : str
        AccessionNumber (0008,0050).
    """

    patient_id: str = field(default="", repr=False)
    patient_name: str = field(default="", repr=False)
    study_uid: str = ""
    series_uid: str = ""
    study_date: str = field(default="", repr=False)
    study_time: str = field(default="", repr=False)
    accession: str = field(default="", repr=False)


@dataclass(frozen=True)
class Acquisition:
    """Acquisition facts of the series (``None`` when the header does not say).

    Attributes
    ----------
    modality : str
        Modality (0008,0060); ``""`` when missing.
    series_description : str
        SeriesDescription (0008,103E).
    image_type : tuple of str
        ImageType (0008,0008) values.
    slice_thickness_mm : float or None
        SliceThickness (0018,0050), mm.
    kernel : str
        ConvolutionKernel (0018,1210), joined with ``/`` if multi-valued.
    manufacturer, model : str
        Manufacturer (0008,0070) and ManufacturerModelName (0008,1090).
    kvp : float or None
        KVP (0018,0060), kV.
    contrast : str or None
        ContrastBolusAgent (0018,0010) when present (``""`` means tag present but empty).
    gantry_tilt_deg : float
        Gantry tilt (degrees) measured from the geometry (not only the header tag).
    """

    modality: str = ""
    series_description: str = ""
    image_type: tuple[str, ...] = ()
    slice_thickness_mm: float | None = None
    kernel: str = ""
    manufacturer: str = ""
    model: str = ""
    kvp: float | None = None
    contrast: str | None = None
    gantry_tilt_deg: float = 0.0


@dataclass(frozen=True)
class Scan:
    """A CT volume in HU with its provenance.

    Attributes
    ----------
    image : SimpleITK.Image
        3D image, LPS, spacing in mm, voxels in HU.
    source : str
        Path (or description, e.g. ``"<numpy array>"``) the scan was loaded from.
    identifiers : Identifiers
        In-memory identifiers (never written unless the user asks).
    acquisition : Acquisition
        Acquisition facts.
    warnings : tuple of str
        One-line warnings raised while loading (tilt corrected, slices resampled, ...).
    files : tuple of str
        The files that made up the series (empty for volume files / arrays), in slice order.
    """

    image: sitk.Image
    source: str
    identifiers: Identifiers = field(default_factory=Identifiers)
    acquisition: Acquisition = field(default_factory=Acquisition)
    warnings: tuple[str, ...] = ()
    files: tuple[str, ...] = field(default=(), repr=False)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel spacing ``(x, y, z)`` in mm."""
        return tuple(float(s) for s in self.image.GetSpacing())  # type: ignore[return-value]

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        """Image size ``(x, y, z)`` in voxels."""
        return tuple(int(s) for s in self.image.GetSize())  # type: ignore[return-value]

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL (1 mL = 1000 mm^3)."""
        sx, sy, sz = self.spacing_mm
        return sx * sy * sz / 1000.0
