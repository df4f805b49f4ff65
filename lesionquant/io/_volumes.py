"""Volume files (NIfTI, NRRD, MHA/MHD), SimpleITK images and numpy arrays -> Scan.

SimpleITK reads every format in LPS (it converts NIfTI's RAS for us). The image keeps its
direction (no reorientation). Voxels are checked to look like HU; integer-valued data become
``sitkInt16`` and anything else ``sitkFloat32``. Values below -1200 HU (out-of-field padding)
become -1024 (air) with a warning, as for DICOM.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from lesionquant.errors import InvalidInputError
from lesionquant.io._pixels import check_looks_like_hu, replace_out_of_field
from lesionquant.scan import Scan

__all__ = ["VOLUME_SUFFIXES", "from_array", "from_sitk", "is_volume_file", "read_volume_file"]

logger = logging.getLogger(__name__)

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def is_volume_file(path: str) -> bool:
    """Whether ``path`` has a volume-file suffix."""
    return path.lower().endswith(VOLUME_SUFFIXES)


def _to_hu_image(array: np.ndarray, source: str, warns: list[str]):
    """Checked HU array -> SimpleITK image with the right pixel type (geometry unset)."""
    import SimpleITK as sitk

    if array.dtype.kind not in "iuf" or array.dtype == np.float16:
        raise InvalidInputError(f"unsupported voxel type {array.dtype}", source=source)
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            raise InvalidInputError("image holds NaN or infinite values", source=source)
        integral = bool(np.all(np.mod(array, 1) == 0))
    else:
        integral = True
    warns.extend(check_looks_like_hu(array, source))
    if integral:
        lo, hi = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        if lo < -32768 or hi > 32767:
            raise InvalidInputError(f"values {lo:.0f}..{hi:.0f} outside the int16 range of HU",
                                    source=source)
        out = array.astype(np.int16)
    else:
        out = array.astype(np.float32)
    replaced = replace_out_of_field(out)
    if replaced:
        warns.append(f"{source}: {replaced} voxel(s) below -1200 HU (out-of-field padding) "
                     "set to -1024 HU (air)")
    return sitk.GetImageFromArray(out)


def _finish(image, source: str, warns: list[str]) -> Scan:
    for w in warns:
        logger.warning("%s", w)
    return Scan(image=image, source=source, warnings=tuple(warns))


def from_sitk(image, source: str = "<SimpleITK image>") -> Scan:
    """A SimpleITK image in HU -> Scan (geometry kept, voxels checked and typed).

    Raises
    ------
    InvalidInputError
        Not 3D (a 2D image becomes one slice of 1 mm with a warning), vector pixels, not HU.
    """
    import SimpleITK as sitk

    warns: list[str] = []
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidInputError(f"{image.GetNumberOfComponentsPerPixel()} components per "
                                "voxel; CT must be scalar", source=source)
    dim = image.GetDimension()
    if dim == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
        dim = 3
    if dim == 2:
        warns.append(f"{source}: 2D image; loaded as a 3D volume of one slice (z spacing 1 mm)")
        image = sitk.JoinSeries([image])
    elif dim != 3:
        raise InvalidInputError(f"{dim}D image; expected a 3D CT volume", source=source)
    array = sitk.GetArrayViewFromImage(image)
    out = _to_hu_image(np.asarray(array), source, warns)
    out.CopyInformation(image)
    return _finish(out, source, warns)


def read_volume_file(path: str) -> Scan:
    """Read a NIfTI / NRRD / MHA / MHD file as a Scan.

    Raises
    ------
    InvalidInputError
        The file cannot be read, or its content is not a CT volume in HU.
    """
    import SimpleITK as sitk

    try:
        if os.path.getsize(path) == 0:
            raise InvalidInputError("empty file", source=path)
        image = sitk.ReadImage(path)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[-200:]
        raise InvalidInputError(f"cannot read volume file ({first})", source=path) from exc
    return from_sitk(image, source=path)


def from_array(array: np.ndarray, *, spacing_mm: Sequence[float] | None,
               origin_mm: Sequence[float] | None = None,
               direction: Sequence[float] | None = None,
               source: str = "<numpy array>") -> Scan:
    """A ``(z, y, x)`` numpy array in HU with its geometry -> Scan.

    Parameters
    ----------
    array : (Z, Y, X) ndarray
        Voxels in HU.
    spacing_mm : sequence of 3 float
        Voxel spacing in **(x, y, z)** order (SimpleITK's and ``Scan.spacing_mm``'s order),
        mm. Required: an array without spacing cannot give volumes in mL.
    origin_mm : sequence of 3 float, optional
        LPS position of voxel ``[0, 0, 0]``, (x, y, z), mm. Default zeros.
    direction : sequence of 9 float, optional
        Row-major 3x3 direction cosines as in ``SimpleITK.Image.SetDirection``. Default
        identity.

    Raises
    ------
    InvalidInputError
        Wrong dimensionality, spacing missing or not positive, values not HU.
    """
    warns: list[str] = []
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise InvalidInputError(f"array of shape {arr.shape}; expected 3D (z, y, x)",
                                source=source)
    if spacing_mm is None:
        raise InvalidInputError("numpy arrays need spacing_mm=(x, y, z) in mm", source=source)
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise InvalidInputError(f"spacing_mm {spacing_mm} must be 3 positive numbers (x, y, z)",
                                source=source)
    image = _to_hu_image(arr, source, warns)
    image.SetSpacing(spacing)
    if origin_mm is not None:
        origin = tuple(float(v) for v in origin_mm)
        if len(origin) != 3:
            raise InvalidInputError(f"origin_mm {origin_mm} must have 3 values", source=source)
        image.SetOrigin(origin)
    if direction is not None:
        d = np.asarray(direction, dtype=np.float64).reshape(-1)
        if d.size != 9 or not np.allclose(d.reshape(3, 3) @ d.reshape(3, 3).T, np.eye(3),
                                          atol=1e-4):
            raise InvalidInputError("direction must be 9 values of an orthonormal 3x3 matrix",
                                    source=source)
        image.SetDirection(tuple(float(v) for v in d))
    return _finish(image, source, warns)
