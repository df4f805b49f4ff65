"""Tiny CT DICOM series written with pydicom, for tests that must not wait for the synth module.

Not a phantom: a box of "lung" (-850 HU) with a GGO block (-500 HU) inside a body (40 HU),
enough for outputs, SEG and discovery tests.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def write_series(folder: Path, *, patient_id: str = "PAT001", patient_name: str = "DOE^JANE",
                 study_date: str = "20200301", size: int = 16, slices: int = 6,
                 spacing_mm: float = 2.0, thickness_mm: float = 2.5, study_uid: str | None = None,
                 series_uid: str | None = None) -> dict:
    """Write a CT series into ``folder``; return its UIDs, files and HU volume (z, y, x)."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = generate_uid()
    hu = np.full((slices, size, size), -1000, dtype=np.int16)
    hu[:, 2:-2, 2:-2] = 40
    hu[:, 4:-4, 4:-4] = -850
    hu[1:3, 5:8, 5:8] = -500
    files = []
    for k in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PatientID, ds.PatientName = patient_id, patient_name
        ds.PatientBirthDate, ds.PatientSex = "19700101", "F"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
        ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = "ACC123", "1", "DR^WHO"
        ds.Modality, ds.Manufacturer = "CT", "TestCo"
        ds.SeriesNumber, ds.InstanceNumber = 2, k + 1
        ds.SeriesDescription = "test chest"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientPosition = "FFS"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-15.0, -15.0, float(k * thickness_mm)]
        ds.PixelSpacing = [spacing_mm, spacing_mm]
        ds.SliceThickness = thickness_mm
        ds.KVP = 120
        ds.PositionReferenceIndicator = ""
        ds.AcquisitionNumber = 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.PixelData = (hu[k].astype(np.int32) + 1024).astype(np.int16).tobytes()
        path = folder / f"slice{k:03d}"
        ds.save_as(path, enforce_file_format=True)
        files.append(str(path))
    return {"study_uid": study_uid, "series_uid": series_uid, "files": files, "hu": hu,
            "date": dt.date.fromisoformat(f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:]}")}
