"""Write small CT DICOM files and series with pydicom, for the loader tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def ct_dataset(stored: np.ndarray, *, position: Sequence[float] = (0.0, 0.0, 0.0),
               orientation: Sequence[float] = AXIAL, spacing_mm: Sequence[float] = (1.0, 1.0),
               thickness_mm: float | None = 1.0, series_uid: str | None = None,
               study_uid: str = "1.2.826.0.1.3680043.8.498.1", intercept: float = -1024.0,
               slope: float = 1.0, modality: str | None = "CT",
               image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
               instance: int = 1, bits_stored: int = 16, implicit: bool = False,
               **extra: object) -> FileDataset:
    """A single-frame CT dataset holding ``stored`` (2D, int16 or uint16) as pixel data.

    ``spacing_mm`` is DICOM PixelSpacing order: (between rows, between columns).
    """
    stored = np.asarray(stored)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientName = "Test^Patient"
    ds.PatientID = "TEST-ID-123"
    ds.StudyDate = "20200101"
    ds.AccessionNumber = "ACC1"
    if modality is not None:
        ds.Modality = modality
    ds.ImageType = list(image_type)
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance
    ds.SeriesDescription = "test series"
    ds.Manufacturer = "lesionquant-tests"
    ds.ConvolutionKernel = "B30f"
    ds.KVP = 120
    ds.ImagePositionPatient = [f"{float(v):.6f}" for v in position]
    ds.ImageOrientationPatient = [f"{float(v):.8f}" for v in orientation]
    ds.PixelSpacing = [f"{float(v):.6f}" for v in spacing_mm]
    if thickness_mm is not None:
        ds.SliceThickness = thickness_mm
    ds.RescaleIntercept = intercept
    ds.RescaleSlope = slope
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(stored).astype(stored.dtype.newbyteorder("<")).tobytes()
    return ds


def write(ds: FileDataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(folder: Path, hu: np.ndarray, *, spacing_mm: Sequence[float] = (1.0, 1.0, 1.0),
                 origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
                 orientation: Sequence[float] = AXIAL,
                 positions: Sequence[Sequence[float]] | None = None,
                 series_uid: str | None = None, intercept: float = -1024.0,
                 prefix: str = "img", **kwargs: object) -> list[Path]:
    """Write a ``(z, y, x)`` HU volume as one file per slice (shuffled instance numbers).

    ``spacing_mm`` is (x, y, z); slices step along the normal of ``orientation`` unless
    ``positions`` gives every ImagePositionPatient.
    """
    series_uid = series_uid or generate_uid()
    r = np.asarray(orientation[:3], float)
    c = np.asarray(orientation[3:], float)
    n = np.cross(r, c)
    stored = np.round(np.asarray(hu, dtype=np.float64) - intercept).astype(np.int16)
    rng = np.random.default_rng(0)
    instances = rng.permutation(len(stored)) + 1
    paths = []
    for k, sl in enumerate(stored):
        pos = (positions[k] if positions is not None
               else np.asarray(origin_mm, float) + k * spacing_mm[2] * n)
        ds = ct_dataset(sl, position=pos, orientation=orientation,
                        spacing_mm=(spacing_mm[1], spacing_mm[0]), series_uid=series_uid,
                        intercept=intercept, instance=int(instances[k]), **kwargs)
        paths.append(write(ds, folder / f"{prefix}{instances[k]:04d}"))
    return paths


def read(path: Path) -> FileDataset:
    return pydicom.dcmread(path)
