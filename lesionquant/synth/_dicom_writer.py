"""Write a CT volume as a CT Image Storage DICOM series; write label maps as NIfTI.

The series is what a scanner would export for one axial reconstruction: one file per
slice, ``ImageType ORIGINAL\\PRIMARY\\AXIAL``, signed 16-bit pixels with
``RescaleIntercept -1024`` / ``RescaleSlope 1`` (HU = stored - 1024), the geometry in
``ImagePositionPatient`` / ``ImageOrientationPatient`` / ``PixelSpacing`` /
``SliceThickness``, new UIDs from :func:`pydicom.uid.generate_uid`, and identifiers that
are plausible in form but obviously fake (``SYNTH^PATIENT``). ``ImageComments`` says the
image is synthetic.

Gantry tilt is written the way a tilted scanner does it: every slice is sampled on a
plane tilted by ``tilt_deg`` about the patient's left-right axis (trilinear), the
orientation's column vector is ``(0, cos t, -sin t)``, and the positions step along z
by the table increment, so a reader must resample to get an orthogonal volume back.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import SimpleITK as sitk

from lesionquant._atomic import atomic_path
from lesionquant.errors import InvalidInputError, OutputExistsError

logger = logging.getLogger(__name__)

__all__ = ["write_dicom_series", "write_labels_nifti"]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RESCALE_INTERCEPT = -1024.0


def write_dicom_series(
    image: sitk.Image,
    folder: str | os.PathLike,
    *,
    patient_name: str = "SYNTH^PATIENT",
    patient_id: str = "SYNTH-0001",
    study_date: str = "20200401",
    study_time: str = "120000",
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int = 1,
    series_description: str = "SYNTHETIC CHEST lesionquant.synth",
    study_description: str = "SYNTHETIC CT CHEST",
    accession_number: str = "SYNTH0001",
    tilt_deg: float = 0.0,
    compress: str | None = None,
    kvp: float = 120.0,
    kernel: str = "STANDARD",
    overwrite: bool = False,
    prefix: str = "CT",
    uid_seed: str | None = None,
) -> list[Path]:
    """Write a 3D CT image (HU) as a DICOM CT Image Storage series, one file per slice.

    Parameters
    ----------
    image : SimpleITK.Image
        3D CT in HU (any integer or float pixel type; rounded to integers). Its geometry
        (origin, spacing, direction) becomes ``ImagePositionPatient``,
        ``PixelSpacing``, ``SliceThickness`` and ``ImageOrientationPatient``.
    folder : path
        Output folder (created). Files are ``<prefix>000001.dcm`` ... .
    patient_name, patient_id, study_date, study_time, accession_number : str
        Fake identifiers (DICOM PN, LO, DA ``YYYYMMDD``, TM ``HHMMSS``, SH).
    study_uid, series_uid : str, optional
        Reuse UIDs (e.g. two series of one study); new ones are generated otherwise.
    series_number : int
    series_description, study_description : str
    tilt_deg : float
        Gantry tilt (DICOM GantryDetectorTilt), degrees; slices are resampled on tilted
        planes. Requires an axial (identity-direction) input.
    compress : {None, "jpeg2000", "rle"}
        Lossless transfer syntax: JPEG 2000 lossless (pylibjpeg-openjpeg) or RLE.
    kvp : float
    kernel : str
        ConvolutionKernel.
    overwrite : bool
        Replace existing files of the same names instead of raising.
    prefix : str
        File-name prefix.
    uid_seed : str, optional
        Derive every generated UID from this text (reproducible files, e.g. the shipped
        samples); random UIDs otherwise.

    Returns
    -------
    list of Path
        The files written, in slice order (increasing z).

    Raises
    ------
    OutputExistsError
        A target file exists and ``overwrite`` is False.
    InvalidInputError
        The image is not 3D.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import (
        PYDICOM_IMPLEMENTATION_UID,
        ExplicitVRLittleEndian,
        JPEG2000Lossless,
        RLELossless,
        generate_uid,
    )

    if image.GetDimension() != 3:
        raise InvalidInputError("write_dicom_series needs a 3D image", source="image")
    syntax = {None: None, "jpeg2000": JPEG2000Lossless, "rle": RLELossless}
    if compress not in syntax:
        raise ValueError(f"compress must be None, 'jpeg2000' or 'rle', not {compress!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    arr = sitk.GetArrayFromImage(image)  # (z, y, x)
    nz, ny, nx = arr.shape
    sx, sy, sz = image.GetSpacing()
    direction = np.array(image.GetDirection(), float).reshape(3, 3)
    row = direction[:, 0]
    col = direction[:, 1]
    positions = np.array([image.TransformIndexToPhysicalPoint((0, 0, k)) for k in range(nz)])
    tilt = float(tilt_deg)
    if tilt != 0.0:
        if not np.allclose(direction, np.eye(3), atol=1e-6):
            raise ValueError("tilt_deg needs an image with identity direction (axial LPS)")
        arr, positions, col = _tilted_slices(arr, image, tilt)
    stored = np.rint(np.asarray(arr, dtype=np.float64) - RESCALE_INTERCEPT)
    stored = np.clip(stored, -32768, 32767).astype(np.int16)

    files = [folder / f"{prefix}{k + 1:06d}.dcm" for k in range(nz)]
    if not overwrite:
        for f in files:
            if f.exists():
                raise OutputExistsError("file exists (pass overwrite=True)", source=f)

    def new_uid(*role: object) -> str:
        if uid_seed is None:
            return generate_uid()
        return generate_uid(entropy_srcs=[str(uid_seed), *map(str, role)])

    study_uid = study_uid or new_uid("study")
    series_uid = series_uid or new_uid("series", series_number)
    frame_uid = new_uid("frame", series_number)
    hu_min, hu_max = int(stored.min() + RESCALE_INTERCEPT), int(stored.max() + RESCALE_INTERCEPT)
    logger.info("writing %d slices to %s (tilt %.1f deg, %s)", nz, folder, tilt,
                compress or "uncompressed")
    for k in range(nz):
        ds = pydicom.Dataset()
        sop_uid = new_uid("sop", series_number, k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceCreationDate = study_date
        ds.InstanceCreationTime = study_time
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
        ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = study_time
        ds.AccessionNumber = accession_number
        ds.Modality = "CT"
        ds.Manufacturer = "lesionquant synthetic"
        ds.InstitutionName = "SYNTHETIC"
        ds.ReferringPhysicianName = "SYNTH^REFERRER"
        ds.StudyDescription = study_description
        ds.SeriesDescription = series_description
        ds.ManufacturerModelName = "lesionquant.synth"
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "SYNTHETIC: no patient, made by lesionquant.synth"
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = _ds(sz if tilt == 0.0 else sz * np.cos(np.deg2rad(tilt)))
        ds.SpacingBetweenSlices = ds.SliceThickness
        ds.KVP = _ds(kvp)
        ds.ConvolutionKernel = kernel
        ds.GantryDetectorTilt = _ds(tilt)
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = int(series_number)
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(v) for v in positions[k]]
        ds.ImageOrientationPatient = [_ds(v) for v in (*row, *col)]
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = _ds(float(positions[k] @ np.cross(row, col)))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ny
        ds.Columns = nx
        ds.PixelSpacing = [_ds(sy), _ds(sx)]  # row spacing (between rows), column spacing
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.WindowCenter = "-600"
        ds.WindowWidth = "1500"
        ds.RescaleIntercept = _ds(RESCALE_INTERCEPT)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.ImageComments = ("SYNTHETIC image made by lesionquant.synth; not a patient. "
                            f"HU range {hu_min}..{hu_max}")
        ds.PixelData = stored[k].tobytes()
        if syntax[compress] is not None:
            ds.compress(syntax[compress], stored[k], generate_instance_uid=False)
        with atomic_path(files[k]) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
    return files


def _ds(value: float) -> str:
    """A DICOM decimal string: the most precise form that fits in 16 characters."""
    v = float(value)
    if abs(v) < 1e-9:
        return "0"
    for digits in range(14, 4, -1):
        text = f"{v:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{v:.6g}"


def _tilted_slices(arr: np.ndarray, image: sitk.Image, tilt_deg: float):
    """Sample every slice on a plane tilted about x through the slice's centre row."""
    nz, ny, nx = arr.shape
    _sx, sy, sz = image.GetSpacing()
    ox, oy, oz = image.GetOrigin()
    th = np.deg2rad(tilt_deg)
    col = np.array([0.0, np.cos(th), -np.sin(th)])
    jc = (ny - 1) / 2.0
    j = np.arange(ny, dtype=float)
    # physical y, z of row j of slice k: centre row at (y_c, z_k)
    y_phys = oy + jc * sy + (j - jc) * sy * col[1]  # (ny,)
    dz = (j - jc) * sy * col[2]  # (ny,)
    z_phys = oz + np.arange(nz)[:, None] * sz + dz[None, :]  # (nz, ny)
    zi = (z_phys - oz) / sz
    yi = np.broadcast_to(((y_phys - oy) / sy)[None, :], (nz, ny))
    coords = np.empty((3, nz, ny, nx), np.float32)
    coords[0] = zi[:, :, None]
    coords[1] = yi[:, :, None]
    coords[2] = np.arange(nx, dtype=np.float32)[None, None, :]
    out = ndi.map_coordinates(arr.astype(np.float32), coords, order=1, mode="nearest")
    positions = np.stack([np.full(nz, ox), np.full(nz, y_phys[0]), z_phys[:, 0]], axis=1)
    return out, positions, col


def write_labels_nifti(labels: sitk.Image, path: str | os.PathLike, *,
                       overwrite: bool = True) -> Path:
    """Write a label map as (gzipped) NIfTI, atomically, as ``sitkUInt8``.

    Parameters
    ----------
    labels : SimpleITK.Image
        Label map (0-5 convention), in the CT's geometry.
    path : path
        Target, normally ``labels.nii.gz``.
    overwrite : bool
        Replace an existing file (default) instead of raising :class:`OutputExistsError`.

    Returns
    -------
    Path
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError("file exists (pass overwrite=True)", source=path)
    with atomic_path(path) as tmp:
        sitk.WriteImage(sitk.Cast(labels, sitk.sitkUInt8), str(tmp), True)
    return path
