"""Every case of ../shared/data/dicom-edge and the chest DICOM/volume files, with the numbers
the data README states (sizes, spacing, HU percentiles) and the right refusals."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lesionquant import load_scan
from lesionquant.errors import (
    InvalidInputError,
    NotCTError,
    UnsupportedDicomError,
)
from lesionquant.io import discover_series
from lesionquant.io._header import read_header
from lesionquant.io._pixels import SliceDecoder

pytestmark = pytest.mark.realdata


def _arr(scan):
    return sitk.GetArrayViewFromImage(scan.image)


def _pct(scan):
    return np.percentile(_arr(scan), [0, 1, 50, 99, 100])


def test_cip_implicit_vr_series_matches_its_nifti(edge_dir, chest_dir):
    scan = load_scan(edge_dir / "cip-chest-ct-64-dicom-series-implicit-vr")
    ref = sitk.ReadImage(str(chest_dir / "cip-copd-chest-ct-64" / "ct.nii.gz"))
    assert scan.image.GetSize() == (64, 64, 79)
    assert scan.image.GetPixelID() == sitk.sitkInt16
    np.testing.assert_allclose(scan.image.GetSpacing(), ref.GetSpacing(), atol=1e-3)
    np.testing.assert_allclose(scan.image.GetOrigin(), ref.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(scan.image.GetDirection(), ref.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(_arr(scan), sitk.GetArrayViewFromImage(ref))
    np.testing.assert_allclose(_pct(scan), [-1007, -1000, -469, 326, 1095], atol=1)
    assert scan.warnings == ()
    assert len(scan.files) == 79
    # files are in slice order (by position), not by name
    z = [read_header(f).position[2] for f in scan.files]
    assert z == sorted(z)


def test_totalseg_j2k_12bit_series(edge_dir):
    scan = load_scan(edge_dir / "totalseg-ct-series-20slice-j2k")
    assert scan.image.GetSize() == (512, 512, 20)
    np.testing.assert_allclose(scan.spacing_mm, (0.9765625, 0.9765625, 2.0), atol=1e-6)
    a = _arr(scan)
    assert a.min() == -1024 and a.max() == 1839
    assert np.median(a) == pytest.approx(-981, abs=1)
    acq = scan.acquisition
    assert acq.modality == "CT" and acq.slice_thickness_mm == 3.0
    assert acq.kernel.startswith("Br38f") and acq.manufacturer.upper().startswith("SIEMENS")
    assert acq.gantry_tilt_deg == pytest.approx(0.0, abs=1e-6)


def test_philips_study_export_chooses_s2010(edge_dir):
    root = edge_dir / "dcmqa-ct-philips-phantom-study-export"
    disc = discover_series(root)
    assert disc.skipped_index == 5  # DICOMDIR and 4 DIRFILEs are skipped, never followed
    chosen = [s for s in disc.series if s.chosen]
    assert len(chosen) == 1 and chosen[0].first.series_description == "STD BRAIN 5MM"
    assert all("S2010" in h.path for h in chosen[0].headers)
    kinds = {s.exclusion_kind for s in disc.series if not s.chosen}
    assert kinds == {"localizer", "secondary-capture"}
    scan = load_scan(root)
    assert scan.image.GetSize() == (512, 512, 28)
    np.testing.assert_allclose(scan.spacing_mm, (0.451172, 0.451172, 5.0), atol=1e-5)
    p = _pct(scan)
    assert p[1] == pytest.approx(-1017, abs=1) and p[2] == pytest.approx(-995, abs=1)
    assert p[3] == pytest.approx(699, abs=1)


def test_forcing_the_localizer_loads_it_with_a_warning(edge_dir):
    root = edge_dir / "dcmqa-ct-philips-phantom-study-export"
    loc = next(s for s in discover_series(root).series if s.exclusion_kind == "localizer")
    scan = load_scan(root, series_uid=loc.series_uid)
    assert scan.image.GetSize()[2] == 1
    assert any("forced by UID" in w for w in scan.warnings)
    summary = next(s for s in discover_series(root).series
                   if s.exclusion_kind == "secondary-capture")
    with pytest.raises(UnsupportedDicomError, match="secondary capture"):
        load_scan(root, series_uid=summary.series_uid)


def test_gantry_tilt_head_is_corrected(edge_dir):
    scan = load_scan(edge_dir / "dcmqa-ct-gantry-tilt-variable-spacing-head")
    img = scan.image
    assert img.GetSize() == (512, 558, 28)  # 46 rows added for the 22.4 mm in-plane drift
    np.testing.assert_allclose(img.GetSpacing(), (0.48828125, 0.48828125, 67.08 / 27), atol=2e-3)
    d = np.array(img.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(d @ d.T, np.eye(3), atol=1e-6)  # orthogonal grid
    np.testing.assert_allclose(d[:, 2], (0, 0.3173047, 0.9483237), atol=1e-6)  # slice normal
    assert scan.acquisition.gantry_tilt_deg == pytest.approx(18.5, abs=0.05)
    assert any("gantry tilt 18.5" in w for w in scan.warnings)
    assert any("irregular slice spacing" in w for w in scan.warnings)
    a = _arr(scan)
    assert a.min() >= -1024  # padding -1500 became air
    soft = a[(a > -200) & (a < 200)]
    assert np.median(soft) == pytest.approx(29, abs=3)


def test_single_slices_become_one_slice_volumes(edge_dir, chest_dir):
    scan = load_scan(edge_dir / "pydicom-ct-small" / "CT_small.dcm")
    assert scan.image.GetSize() == (128, 128, 1)
    assert scan.spacing_mm[2] == 5.0  # SliceThickness
    np.testing.assert_allclose(_pct(scan)[[0, 2, 4]], [-896, 2, 1167], atol=1)
    assert any("single slice" in w for w in scan.warnings)

    tcia = sorted((chest_dir / "tcia-covid19-ny-sbu-axial-slices").glob("*.dcm"))
    assert len(tcia) == 10
    for f in tcia:
        s = load_scan(f)
        a = _arr(s)
        assert s.image.GetSize() == (512, 512, 1)
        assert a.min() >= -1200  # -3024 / -2048 padding became air
        assert np.count_nonzero(a == -1024) > 1000
        assert -930 <= np.median(a) <= -220
        assert s.acquisition.slice_thickness_mm in (1.25, 2.5, 5.0)
    siemens = load_scan(chest_dir / "tcia-covid19-ny-sbu-axial-slices" / "A046441_19010101-23.dcm")
    assert np.count_nonzero(_arr(siemens) == -1024) > 10000  # intercept 0, padding -2048 -> air


def test_lungmask_pair_is_a_two_slice_series_without_modality(chest_dir):
    scan = load_scan(chest_dir / "lungmask-chest-ct-dicom-slice")
    assert scan.image.GetSize() == (512, 512, 2)
    np.testing.assert_allclose(scan.spacing_mm, (0.625, 0.625, 1.0), atol=1e-6)
    a = _arr(scan)
    np.testing.assert_array_equal(a[0], a[1])  # identical pixel data at z = 0 and 1 mm
    assert a.min() >= -1051 and np.median(a) == pytest.approx(-415, abs=30)
    assert any("Modality" in w and "missing" in w for w in scan.warnings)
    assert scan.acquisition.modality == ""


@pytest.mark.parametrize(("case", "hu"), [
    ("cip-simple-ct-2slice", (-1024, -115, 1219)),
    ("pydicom-ct-jpeg-lossless-12bit-bad-sequence", (-1011, 49, 1243)),
    ("pydicom-ct-abdomen-j2k-vr-un", (-1024, -980, 1186)),
    ("pydicom-tiny-ct-localizer-and-series", (-888, None, 85)),
])
def test_edge_cases_hu(edge_dir, case, hu):
    scan = load_scan(edge_dir / case)
    a = _arr(scan)
    assert a.min() == hu[0] and a.max() == hu[2]
    if hu[1] is not None:
        assert np.median(a) == pytest.approx(hu[1], abs=1)


def test_tiny_study_skips_localizers(edge_dir):
    scan = load_scan(edge_dir / "pydicom-tiny-ct-localizer-and-series")
    assert scan.image.GetSize() == (16, 16, 5)
    assert all("axial_5slices" in f for f in scan.files)


def test_693_codecs_lossless_kept_lossy_excluded(edge_dir):
    root = edge_dir / "pydicom-ct-head-693-codecs"
    scan = load_scan(root)
    assert scan.image.GetSize() == (512, 512, 1)
    a = _arr(scan)
    assert a.max() == 1468 and a.min() == -1024
    assert any("identical duplicate" in w for w in scan.warnings)
    # The uncompressed and JPEG 2000 lossless files decode to the same HU.
    dec = SliceDecoder(np.dtype(np.int16))
    out = [np.empty((512, 512), np.int16) for _ in range(2)]
    dec.to_hu(read_header(root / "693_UNCR.dcm"), out[0])
    dec.to_hu(read_header(root / "693_J2KR.dcm"), out[1])
    np.testing.assert_array_equal(out[0], out[1])
    disc = discover_series(root)
    assert {s.exclusion_kind for s in disc.series} == {"", "derived"}


def test_12bit_masking_and_sign(edge_dir):
    root = edge_dir / "dcmqa-mr-12bit"
    dec = SliceDecoder(np.dtype(np.int16))
    got = {f.name: dec.stored(read_header(f)) for f in sorted(root.glob("*.dcm"))}
    s = got["12bitSigned_0x0F0F.dcm"]
    assert s.min() == -2048 and s.max() == 2047
    assert got["12bitUnsigned.dcm"].min() == 0 and got["12bitUnsigned.dcm"].max() == 2908
    assert got["12bitUnsigned_0x0F0F.dcm"].max() == 4095


def test_mr_transfer_syntaxes_decode_identically_and_are_refused(edge_dir):
    root = edge_dir / "dcmqa-mr-transfer-syntaxes"
    dec = SliceDecoder(np.dtype(np.int16))
    arrays = [dec.stored(read_header(root / f"{i}.dcm")) for i in range(1, 10)]
    for a in arrays[1:]:
        np.testing.assert_array_equal(a, arrays[0])
    assert arrays[0].min() == 0 and arrays[0].max() == 2362
    with pytest.raises(UnsupportedDicomError, match="modality MR"):
        load_scan(root)
    with pytest.raises(UnsupportedDicomError, match="modality MR"):
        load_scan(root / "3.dcm")


@pytest.mark.parametrize(("case", "match"), [
    ("pydicom-dicom-seg-liver", "DICOM SEG"),
    ("pydicom-enhanced-ct-multiframe", "derived image.*PERFUSION"),
    ("pydicom-secondary-capture-modality-lut", "secondary capture"),
    ("dcmqa-mr-12bit", "modality MR"),
])
def test_refused_objects(edge_dir, case, match):
    with pytest.raises(UnsupportedDicomError, match=match) as exc:
        load_scan(edge_dir / case)
    assert "\n" not in str(exc.value) and str(edge_dir / case) in str(exc.value)


@pytest.mark.parametrize(("name", "size", "pct"), [
    ("cip-copd-chest-ct-64/ct.nii.gz", (64, 64, 79), (-1007, -1000, -469, 326, 1095)),
    ("cip-copd-chest-ct-crop-2slices/ct.nii.gz", (443, 349, 2), (-1009, -931, -571, 502, 1221)),
    ("totalseg-aorta-chest-ct/ct.nii.gz", (120, 126, 164), (-1078, -994, -29, 729, 3343)),
    ("totalseg-abdomen-ct-no-lungs/ct_small_30slices.nii.gz", (122, 101, 30),
     (-1100, -1013, -91, 188, 1207)),
])
def test_chest_volume_files(chest_dir, name, size, pct):
    scan = load_scan(chest_dir / name)
    assert scan.image.GetSize() == size
    assert scan.image.GetPixelID() == sitk.sitkInt16
    np.testing.assert_allclose(_pct(scan), pct, atol=1)
    ref = sitk.ReadImage(str(chest_dir / name))
    assert scan.image.GetSpacing() == ref.GetSpacing()
    assert scan.image.GetOrigin() == ref.GetOrigin()


def test_int32_abdomen_becomes_int16_with_padding_warning(chest_dir):
    scan = load_scan(chest_dir / "totalseg-abdomen-ct-no-lungs" / "ct.nii.gz")
    assert scan.image.GetPixelID() == sitk.sitkInt16
    a = _arr(scan)
    assert a.min() == -1100 and a.max() == 3382  # the single -1207 voxel became air
    assert any("below -1200 HU" in w for w in scan.warnings)


@pytest.mark.parametrize("name", ["cip-copd-chest-ct-64/lung_mask.nii.gz",
                                  "cip-copd-chest-ct-64/lung_labels_cip.nii.gz",
                                  "totalseg-abdomen-ct-no-lungs/"
                                  "totalseg_model_labels_for_ct_small.nii.gz"])
def test_label_maps_are_not_ct(chest_dir, name):
    with pytest.raises(NotCTError, match="Hounsfield"):
        load_scan(chest_dir / name)


def test_jpeg_is_not_dicom(chest_dir):
    jpg = chest_dir / "medseg-covid-2d-ggo-consolidation" / "images" / "000.jpg"
    with pytest.raises(InvalidInputError, match="not a DICOM file"):
        load_scan(jpg)


def test_identifiers_and_acquisition(edge_dir):
    scan = load_scan(edge_dir / "cip-simple-ct-2slice")
    assert scan.identifiers.series_uid.endswith("133.3")
    assert scan.identifiers.study_uid
    assert "patient" not in repr(scan.identifiers).lower().replace("patient_id", "")
    assert scan.acquisition.kernel == "STANDARD"
    assert scan.acquisition.kvp and scan.acquisition.kvp > 0
