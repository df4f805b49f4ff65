"""write_dicom_series / write_labels_nifti: valid CT series that load_scan reads back losslessly."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
import scipy.ndimage as ndi
import SimpleITK as sitk

from lesionquant.errors import OutputExistsError
from lesionquant.io import load_scan
from lesionquant.synth import make_phantom, write_dicom_series, write_labels_nifti


@pytest.fixture(scope="module")
def small():
    return make_phantom(size_xyz=(64, 48, 20), spacing_mm=(5.6, 7.0, 12.5), seed=9,
                        lesion_burden_pct=10.0)


def _same_geometry(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    assert a.GetSpacing() == pytest.approx(b.GetSpacing(), abs=1e-4)
    assert a.GetOrigin() == pytest.approx(b.GetOrigin(), abs=1e-3)
    assert a.GetDirection() == pytest.approx(b.GetDirection(), abs=1e-6)


@pytest.mark.parametrize("compress", [None, "jpeg2000", "rle"])
def test_round_trip_is_lossless(small, tmp_path, compress):
    files = write_dicom_series(small.image, tmp_path / "s", compress=compress)
    assert len(files) == 20
    scan = load_scan(tmp_path / "s")
    _same_geometry(scan.image, small.image)
    back = sitk.GetArrayFromImage(scan.image)
    orig = sitk.GetArrayFromImage(small.image)
    fov = orig > -3024
    assert np.array_equal(back[fov], orig[fov])  # every HU inside the reconstruction circle
    # outside it, the loader maps the -3024 padding to air (its documented policy)
    assert set(np.unique(back[~fov])) <= {-3024, -1024}
    # and the stored values really are the padding (intercept -1024, stored -2000)
    raw = pydicom.dcmread(files[0])
    assert int(raw.pixel_array.min()) == -2000


def test_headers_are_a_valid_fake_ct_series(small, tmp_path):
    files = write_dicom_series(small.image, tmp_path / "s", patient_id="SYNTH-42",
                               study_date="20200315", series_description="TEST")
    dss = [pydicom.dcmread(f) for f in files]
    first = dss[0]
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert first.file_meta.MediaStorageSOPClassUID == first.SOPClassUID
    assert list(first.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert first.Modality == "CT" and first.PatientName == "SYNTH^PATIENT"
    assert first.PatientID == "SYNTH-42" and first.StudyDate == "20200315"
    assert float(first.RescaleSlope) == 1.0 and float(first.RescaleIntercept) == -1024.0
    assert [float(v) for v in first.PixelSpacing] == pytest.approx([7.0, 5.6])
    assert float(first.SliceThickness) == pytest.approx(12.5)
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    z = [float(ds.ImagePositionPatient[2]) for ds in dss]
    assert np.allclose(np.diff(z), 12.5)
    assert len({ds.SOPInstanceUID for ds in dss}) == 20
    assert len({ds.SeriesInstanceUID for ds in dss}) == 1
    assert "SYNTHETIC" in first.ImageComments
    assert first.PatientIdentityRemoved == "YES" and "SYNTHETIC" in first.DeidentificationMethod


@pytest.mark.parametrize("opts", [dict(), dict(compress="jpeg2000"), dict(tilt_deg=10.0)])
def test_dciodvfy_finds_no_errors(small, tmp_path, opts):
    """dicom3tools' validator of the CT Image IOD (skipped where it is not installed)."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (dicom3tools) not installed")
    files = write_dicom_series(small.image, tmp_path / "s", **opts)
    out = subprocess.run([exe, str(files[7])], capture_output=True, text=True, check=False)
    report = out.stdout + out.stderr
    assert "CTImage" in report
    assert "Error" not in report, report


def test_shared_study_uid_and_refusal_to_overwrite(small, tmp_path):
    a = write_dicom_series(small.image, tmp_path / "a", study_uid="1.2.3.4", series_number=1)
    b = write_dicom_series(small.image, tmp_path / "b", study_uid="1.2.3.4", series_number=2)
    da, db = pydicom.dcmread(a[0]), pydicom.dcmread(b[0])
    assert da.StudyInstanceUID == db.StudyInstanceUID == "1.2.3.4"
    assert da.SeriesInstanceUID != db.SeriesInstanceUID
    with pytest.raises(OutputExistsError):
        write_dicom_series(small.image, tmp_path / "a")
    write_dicom_series(small.image, tmp_path / "a", overwrite=True)


def test_uid_seed_makes_files_reproducible(small, tmp_path):
    kw = dict(compress="jpeg2000", uid_seed="case-1", study_date="20200101")
    a = write_dicom_series(small.image, tmp_path / "a", **kw)
    b = write_dicom_series(small.image, tmp_path / "b", **kw)
    assert [f.read_bytes() for f in a] == [f.read_bytes() for f in b]
    ds = pydicom.dcmread(a[3])
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEG2000Lossless
    c = write_dicom_series(small.image, tmp_path / "c", compress="jpeg2000")
    assert pydicom.dcmread(c[3]).SOPInstanceUID != ds.SOPInstanceUID


def test_gantry_tilt_is_written_like_a_tilted_scanner(tmp_path):
    ph = make_phantom(size_xyz=(64, 65, 24), spacing_mm=(5.6, 5.6, 10.0), seed=1,
                      noise_hu=0.0)
    tilt = 15.0
    files = write_dicom_series(ph.image, tmp_path / "t", tilt_deg=tilt)
    dss = [pydicom.dcmread(f) for f in files]
    iop = np.array([float(v) for v in dss[0].ImageOrientationPatient])
    th = np.deg2rad(tilt)
    assert iop == pytest.approx([1, 0, 0, 0, np.cos(th), -np.sin(th)], abs=1e-5)
    assert float(dss[0].GantryDetectorTilt) == pytest.approx(tilt)
    pos = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in dss])
    assert np.allclose(np.diff(pos[:, 2]), 10.0) and np.allclose(np.diff(pos[:, :2], axis=0), 0)
    # the centre row is the pivot of the tilted plane: identical to the untilted slice
    ref = sitk.GetArrayFromImage(ph.image)
    for k in (5, 12, 18):
        arr = dss[k].pixel_array.astype(int) - 1024
        assert np.array_equal(arr[32], ref[k, 32])
        assert not np.array_equal(arr[5], ref[k, 5])  # off-centre rows are resampled
    # the loader corrects the tilt back to an orthogonal grid close to the original
    scan = load_scan(tmp_path / "t")
    back = sitk.Resample(scan.image, ph.image, sitk.Transform(), sitk.sitkLinear, -1024)
    # compare smoothed volumes: double interpolation blurs edges (~5 HU left after
    # smoothing even for the exact inverse), a geometry error leaves ~200 HU
    a = ndi.gaussian_filter(sitk.GetArrayFromImage(back).astype(float), 2)
    b = ndi.gaussian_filter(ref.astype(float), 2)
    inner = (slice(6, -6), slice(10, -10), slice(10, -10))
    assert np.median(np.abs(a - b)[inner]) < 15


def test_labels_nifti_round_trip(small, tmp_path):
    path = write_labels_nifti(small.labels, tmp_path / "labels.nii.gz")
    back = sitk.ReadImage(str(path))
    assert back.GetPixelID() == sitk.sitkUInt8
    _same_geometry(back, small.labels)
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(small.labels))
    with pytest.raises(OutputExistsError):
        write_labels_nifti(small.labels, path, overwrite=False)
    assert not list(tmp_path.glob(".tmp*"))
