"""Generated DICOM: malformed files, gaps, duplicates, irregular spacing, mixed folders, tilt."""

from __future__ import annotations

import os
import resource

import numpy as np
import pytest
import SimpleITK as sitk
from _dicomgen import AXIAL, ct_dataset, write, write_series
from pydicom.uid import generate_uid

from lesionquant import load_scan
from lesionquant.errors import (
    DicomDecodeError,
    GeometryError,
    IncompleteSeriesError,
    InvalidInputError,
    NoSeriesError,
    NotCTError,
)
from lesionquant.io import discover_series


def _phantom(nz=6, ny=24, nx=20):
    """Air around a soft-tissue block with a lung-density core, distinct per slice."""
    hu = np.full((nz, ny, nx), -1000, dtype=np.int16)
    hu[:, 4:-4, 3:-3] = 40
    hu[:, 8:-8, 6:-6] = -850
    hu += np.arange(nz, dtype=np.int16)[:, None, None]  # each slice differs
    return hu


def _arr(scan):
    return sitk.GetArrayFromImage(scan.image)


def test_roundtrip_series_exact(tmp_path):
    hu = _phantom()
    write_series(tmp_path, hu, spacing_mm=(0.7, 0.8, 2.5), origin_mm=(-10, 20, 30))
    scan = load_scan(tmp_path)
    np.testing.assert_array_equal(_arr(scan), hu)
    np.testing.assert_allclose(scan.spacing_mm, (0.7, 0.8, 2.5), atol=1e-6)
    np.testing.assert_allclose(scan.image.GetOrigin(), (-10, 20, 30), atol=1e-6)
    assert scan.image.GetPixelID() == sitk.sitkInt16
    assert scan.warnings == ()
    assert scan.identifiers.patient_id == "TEST-ID-123"  # in memory...
    assert "TEST-ID-123" not in repr(scan)  # ...never in repr / logs


def test_feet_first_and_flipped_orientation(tmp_path):
    hu = _phantom()
    orient = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # normal +z as well; rows and columns flipped
    write_series(tmp_path, hu, spacing_mm=(1, 1, 3), origin_mm=(50, 60, -20),
                 orientation=orient)
    scan = load_scan(tmp_path)
    np.testing.assert_array_equal(_arr(scan), hu)
    np.testing.assert_allclose(scan.image.GetDirection(), (-1, 0, 0, 0, -1, 0, 0, 0, 1),
                               atol=1e-9)
    # A voxel's physical position matches the DICOM definition.
    p = scan.image.TransformIndexToPhysicalPoint((2, 3, 4))
    np.testing.assert_allclose(p, (50 - 2, 60 - 3, -20 + 4 * 3), atol=1e-6)


def test_float_rescale_gives_float32(tmp_path):
    hu = _phantom()
    write_series(tmp_path, hu, intercept=-1024.0, slope=0.5)  # stored = hu + 1024
    scan = load_scan(tmp_path)
    assert scan.image.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(_arr(scan), (hu.astype(float) + 1024) * 0.5 - 1024)


def test_empty_file(tmp_path):
    f = tmp_path / "empty.dcm"
    f.write_bytes(b"")
    with pytest.raises(InvalidInputError, match="empty file"):
        load_scan(f)


def test_not_dicom_file_and_folder(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    with pytest.raises(InvalidInputError, match="not a DICOM file"):
        load_scan(f)
    with pytest.raises(NoSeriesError, match="1 non-DICOM"):
        load_scan(tmp_path)
    with pytest.raises(InvalidInputError, match="no such file"):
        load_scan(tmp_path / "missing")


def test_empty_folder(tmp_path):
    with pytest.raises(NoSeriesError, match="no DICOM image series"):
        load_scan(tmp_path)


def test_truncated_pixel_data(tmp_path):
    hu = _phantom(nz=3)
    paths = write_series(tmp_path, hu)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[:-100])
    with pytest.raises(DicomDecodeError, match="truncated pixel data") as exc:
        load_scan(tmp_path)
    assert paths[1].name in str(exc.value)


def test_truncated_header_refuses_the_series_unless_allowed(tmp_path):
    hu = _phantom(nz=3)
    paths = write_series(tmp_path / "s", hu)
    bad = tmp_path / "s" / "zz_bad"
    bad.write_bytes(paths[0].read_bytes()[:300])
    with pytest.raises(IncompleteSeriesError, match="zz_bad"):
        load_scan(tmp_path / "s")
    scan = load_scan(tmp_path / "s", allow_incomplete=True)
    assert scan.image.GetSize()[2] == 3
    assert any(w.startswith("incomplete series:") and "zz_bad" in w for w in scan.warnings)
    with pytest.raises(DicomDecodeError):
        load_scan(bad)
    # The same cut file in another folder than the series only warns.
    other = tmp_path / "other"
    other.mkdir()
    bad.rename(other / "zz_bad")
    scan = load_scan(tmp_path)
    assert any("outside the series' folder" in w for w in scan.warnings)


def test_huge_declared_size_refused_without_allocating(tmp_path):
    ds = ct_dataset(np.zeros((4, 4), np.int16))
    ds.Rows = ds.Columns = 60000
    f = write(ds, tmp_path / "huge.dcm")
    assert f.stat().st_size < 2000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DicomDecodeError, match="60000 x 60000"):
        load_scan(f)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert (after - before) * 1024 < 100e6  # 60000^2 int16 would be 7.2 GB


def test_huge_declared_size_compressed_refused(tmp_path):
    ds = ct_dataset(np.zeros((4, 4), np.int16))
    ds.Rows = ds.Columns = 40000
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\0" * 60])
    f = write(ds, tmp_path / "huge_j2k.dcm")
    with pytest.raises(DicomDecodeError, match="exceeds the limit"):
        load_scan(f)


def test_missing_slice_refused(tmp_path):
    hu = _phantom(nz=8)
    paths = write_series(tmp_path, hu, spacing_mm=(1, 1, 2))
    # remove slice 4 of 8 -> one gap of 4 mm: refused, naming the positions
    z = [float(__import__("pydicom").dcmread(p).ImagePositionPatient[2]) for p in paths]
    os.remove(paths[int(np.argsort(z)[4])])
    with pytest.raises(IncompleteSeriesError, match=r"4\.00 mm gap between slices at 6\.00 "
                       r"and 10\.00 mm"):
        load_scan(tmp_path)
    # allowed: interpolated over, with a warning that says so
    scan = load_scan(tmp_path, allow_incomplete=True)
    assert any(w.startswith("incomplete series:") and "interpolated" in w
               for w in scan.warnings)
    assert any("irregular slice spacing" in w for w in scan.warnings)
    assert scan.image.GetSize()[2] >= 8
    np.testing.assert_allclose(scan.image.GetSpacing()[2] * (scan.image.GetSize()[2] - 1), 14.0)


def test_large_gap_refused(tmp_path):
    hu = _phantom(nz=10)
    pos = [(0.0, 0.0, 2.0 * k) for k in range(5)] + [(0.0, 0.0, 30.0 + 2.0 * k) for k in range(5)]
    write_series(tmp_path, hu, positions=pos)
    with pytest.raises(GeometryError, match=r"missing slices: gap of 22\.00 mm"):
        load_scan(tmp_path)


def test_irregular_spacing_resampled_linearly(tmp_path):
    hu = np.stack([np.full((6, 6), v, np.int16) for v in (-1000, -900, -500, 0, 100)])
    hu[:, 0, 0] = -1000  # keep an air voxel in every slice
    z = [0.0, 2.0, 4.0, 5.0, 7.0]
    write_series(tmp_path, hu, positions=[(0, 0, v) for v in z])
    scan = load_scan(tmp_path)
    a = _arr(scan)
    assert scan.image.GetSize()[2] == 8  # 7 mm at the smallest gap (1 mm) -> 8 slices
    assert scan.spacing_mm[2] == pytest.approx(1.0)
    np.testing.assert_array_equal(a[:, 3, 3], [-1000, -950, -900, -700, -500, 0, 50, 100])


def test_nonuniform_rounding_is_not_resampled(tmp_path):
    hu = _phantom(nz=5)
    z = [0.0, 3.987, 7.975, 11.962, 15.949]  # 1 um jitter: mean spacing, no warning
    write_series(tmp_path, hu, positions=[(0, 0, v) for v in z])
    scan = load_scan(tmp_path)
    assert scan.warnings == ()
    assert scan.spacing_mm[2] == pytest.approx(15.949 / 4)
    np.testing.assert_array_equal(_arr(scan), hu)


def test_identical_duplicate_dropped(tmp_path):
    hu = _phantom(nz=4)
    uid = generate_uid()
    write_series(tmp_path / "a", hu, series_uid=uid)
    write_series(tmp_path / "b", hu[1:2], series_uid=uid, origin_mm=(0, 0, 1))
    scan = load_scan(tmp_path)
    np.testing.assert_array_equal(_arr(scan), hu)
    assert any("identical duplicate" in w for w in scan.warnings)


def test_conflicting_duplicate_refused(tmp_path):
    hu = _phantom(nz=4)
    uid = generate_uid()
    write_series(tmp_path / "a", hu, series_uid=uid)
    write_series(tmp_path / "b", hu[1:2] + 5, series_uid=uid, origin_mm=(0, 0, 1))
    with pytest.raises(GeometryError, match="conflicting duplicate"):
        load_scan(tmp_path)


def test_two_series_in_one_folder(tmp_path):
    thin, thick = _phantom(nz=40), _phantom(nz=8)
    write_series(tmp_path / "x", thick, spacing_mm=(1, 1, 5), thickness_mm=5.0, prefix="a")
    write_series(tmp_path / "x", thin, spacing_mm=(1, 1, 1), thickness_mm=1.0,
                 series_uid="1.2.3.4.5.6.7.1")
    disc = discover_series(tmp_path)
    assert len(disc.series) == 2
    scan = load_scan(tmp_path)  # same coverage: the thinner one wins
    assert scan.image.GetSize()[2] == 40
    forced = load_scan(tmp_path, series_uid=next(s.series_uid for s in disc.series
                                                  if not s.chosen))
    assert forced.image.GetSize()[2] == 8
    with pytest.raises(NoSeriesError, match="not found"):
        load_scan(tmp_path, series_uid="9.9.9")


def test_mixed_sizes_in_one_series_split(tmp_path):
    uid = generate_uid()
    write_series(tmp_path, _phantom(nz=5), series_uid=uid)
    write_series(tmp_path / "small", _phantom(nz=2, ny=10, nx=10), series_uid=uid)
    disc = discover_series(tmp_path)
    assert sorted(s.n_files for s in disc.series) == [2, 5]
    assert {s.key for s in disc.series} == {uid, uid + "#2"}
    assert load_scan(tmp_path).image.GetSize() == (20, 24, 5)


def test_not_hu_refused(tmp_path):
    raw = np.random.default_rng(1).integers(0, 4000, (3, 16, 16)).astype(np.int16)
    write_series(tmp_path, raw, intercept=0.0)  # raw detector-like values, no negatives
    with pytest.raises(NotCTError, match="Hounsfield"):
        load_scan(tmp_path)


def test_missing_positions_single_and_multi(tmp_path):
    ds = ct_dataset(_phantom(nz=1)[0] + 1024)
    del ds.ImagePositionPatient
    del ds.ImageOrientationPatient
    scan = load_scan(write(ds, tmp_path / "one" / "a.dcm"))
    assert scan.image.GetSize() == (20, 24, 1)
    assert any("assuming an axial slice" in w for w in scan.warnings)
    uid = generate_uid()
    for k in range(2):
        ds = ct_dataset(_phantom(nz=1)[0] + 1024, series_uid=uid, instance=k + 1)
        del ds.ImagePositionPatient
        write(ds, tmp_path / "two" / f"{k}.dcm")
    with pytest.raises(GeometryError, match="cannot order slices"):
        load_scan(tmp_path / "two")


def test_padding_value_and_out_of_field(tmp_path):
    hu = _phantom(nz=2)
    stored = (hu + 1024).astype(np.int16)
    stored[:, 0, :] = -2000  # PixelPaddingValue
    stored[:, 1, :] = -1000  # -2024 HU: out of field
    uid = generate_uid()
    for k in range(2):
        ds = ct_dataset(stored[k], position=(0, 0, k), series_uid=uid, PixelPaddingValue=-2000)
        ds["PixelPaddingValue"].VR = "SS"
        write(ds, tmp_path / f"{k}.dcm")
    a = _arr(load_scan(tmp_path))
    assert np.all(a[:, :2, :] == -1024)
    np.testing.assert_array_equal(a[:, 2:, :], hu[:, 2:, :])


def test_12bit_garbage_high_bits_masked(tmp_path):
    hu = _phantom(nz=2)
    stored = (hu + 1024).astype(np.uint16) | np.uint16(0xF000)  # garbage above bit 11
    uid = generate_uid()
    for k in range(2):
        write(ct_dataset(stored[k], position=(0, 0, k), series_uid=uid, bits_stored=12),
              tmp_path / f"{k}.dcm")
    np.testing.assert_array_equal(_arr(load_scan(tmp_path)), hu)


def test_implicit_vr_and_no_preamble(tmp_path):
    hu = _phantom(nz=2)
    uid = generate_uid()
    for k in range(2):
        ds = ct_dataset(hu[k] + 1024, position=(0, 0, 2 * k), series_uid=uid, implicit=True)
        p = write(ds, tmp_path / f"{k}.dcm")
        if k == 1:  # strip preamble and meta header: "raw" DICOM, implicit VR
            import pydicom

            raw = tmp_path / "raw.bin"
            pydicom.dcmwrite(raw, ds, enforce_file_format=False, implicit_vr=True,
                             little_endian=True)
            body = raw.read_bytes()
            if body[128:132] == b"DICM":
                body = body[132:]
            p.write_bytes(body[body.find(b"\x08\x00"):])
            raw.unlink()
    np.testing.assert_array_equal(_arr(load_scan(tmp_path)), hu)


def test_non_axial_reformat_excluded(tmp_path):
    coronal = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    write_series(tmp_path / "cor", _phantom(nz=4), orientation=coronal)
    write_series(tmp_path / "ax", _phantom(nz=4), orientation=AXIAL)
    disc = discover_series(tmp_path)
    assert {s.exclusion_kind for s in disc.series} == {"", "not-axial"}
    assert all("/ax/" in f for f in load_scan(tmp_path).files)


def test_missing_modality_with_mr_sop_class_refused(tmp_path):
    from lesionquant.errors import UnsupportedDicomError

    write_series(tmp_path, _phantom(nz=2), modality=None,
                 SOPClassUID="1.2.840.10008.5.1.4.1.1.4")
    with pytest.raises(UnsupportedDicomError, match="not CT"):
        load_scan(tmp_path)


def test_several_studies_are_a_typed_error_listing_them(tmp_path):
    """One scan is loaded from one study: a folder with two is refused, not guessed."""
    from lesionquant.errors import AmbiguousInputError, InvalidInputError

    write_series(tmp_path / "a", _phantom(nz=3), study_uid="1.2.3.1")
    write_series(tmp_path / "b", _phantom(nz=4), study_uid="1.2.3.2")
    with pytest.raises(AmbiguousInputError) as info:
        load_scan(tmp_path)
    assert isinstance(info.value, InvalidInputError)
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path}: ") and "\n" not in msg and "2 studies" in msg
    assert "3 slices" in msg and "4 slices" in msg
    uids = [discover_series(tmp_path / d).series[0].series_uid for d in ("a", "b")]
    assert all(uid in msg for uid in uids)
    # the way out the message names: one series UID, or one study's folder
    assert load_scan(tmp_path, series_uid=uids[1]).image.GetSize()[2] == 4
    assert load_scan(tmp_path / "a").image.GetSize()[2] == 3


def test_several_patients_are_a_typed_error_without_their_ids(tmp_path):
    from lesionquant.errors import AmbiguousInputError

    write_series(tmp_path / "x", _phantom(nz=3), study_uid="1.2.3.1", PatientID="PID-111111")
    write_series(tmp_path / "y", _phantom(nz=3), study_uid="1.2.3.1", PatientID="PID-222222")
    with pytest.raises(AmbiguousInputError, match="2 patient") as info:
        load_scan(tmp_path)
    assert "PID-" not in str(info.value)


def test_one_study_with_two_reconstructions_loads_the_thinnest(tmp_path):
    """Within one study the choice stays automatic (coverage, then thinnest)."""
    write_series(tmp_path / "thick", _phantom(nz=3), study_uid="1.2.3.1", thickness_mm=2.5,
                 spacing_mm=(1.0, 1.0, 2.5))  # the same 5 mm coverage: thickness decides
    write_series(tmp_path / "thin", _phantom(nz=6), study_uid="1.2.3.1", thickness_mm=1.0)
    assert all("/thin/" in f for f in load_scan(tmp_path).files)


@pytest.mark.parametrize("axis", ["x", "y"])
def test_tilt_about_either_axis_puts_a_sphere_where_it_is(tmp_path, axis):
    """Planes tilted 15 degrees, positions stepping along z: sphere volume and centre kept."""
    t = np.radians(15.0)
    if axis == "x":  # tilt about left-right: the column direction leaves the axial plane
        r, c = np.array([1.0, 0, 0]), np.array([0, np.cos(t), -np.sin(t)])
    else:  # tilt about anterior-posterior: the row direction leaves the axial plane
        r, c = np.array([np.cos(t), 0, -np.sin(t)]), np.array([0, 1.0, 0])
    center, radius = np.array([5.0, -3.0, 40.0]), 20.0
    ii, jj = np.meshgrid(np.arange(80), np.arange(80), indexing="xy")  # (y, x) arrays
    slices, positions = [], []
    for k in range(45):
        pos = np.array([-35.0, -43.0, 0.0 + 2.0 * k])
        pts = pos + ii[..., None] * r + jj[..., None] * c  # 1 mm pixels
        dist = np.linalg.norm(pts - center, axis=-1)
        inside = np.clip(radius - dist + 0.5, 0.0, 1.0)  # 1 mm partial-volume edge
        hu = 40.0 - 840.0 * inside
        hu[:2, :2] = -1000  # some air
        slices.append(hu)
        positions.append(pos)
    write_series(tmp_path, np.rint(np.stack(slices)), positions=positions,
                 orientation=(*r, *c), spacing_mm=(1.0, 1.0, 2.0))
    scan = load_scan(tmp_path)
    assert scan.acquisition.gantry_tilt_deg == pytest.approx(15.0, abs=0.01)
    a = sitk.GetArrayFromImage(scan.image)
    from scipy import ndimage

    labels, _ = ndimage.label((a < -380) & (a > -950))  # not the -1024 fill outside the field
    mask = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    volume_ml = mask.sum() * scan.voxel_volume_ml
    assert volume_ml == pytest.approx(4 / 3 * np.pi * radius**3 / 1000, rel=0.02)
    idx = np.argwhere(mask)[:, ::-1].mean(axis=0)
    got = np.array(scan.image.TransformContinuousIndexToPhysicalPoint(tuple(idx)))
    np.testing.assert_allclose(got, center, atol=0.3)


def test_warnings_are_logged(tmp_path, caplog):
    write_series(tmp_path, _phantom(nz=1))
    with caplog.at_level("WARNING", logger="lesionquant.io"):
        scan = load_scan(tmp_path)
    assert scan.warnings and all(w in caplog.text for w in scan.warnings)
    assert "TEST-ID-123" not in caplog.text and "Test^Patient" not in caplog.text


def test_positions_stepping_in_plane_refused(tmp_path):
    pos = [(3.0 * k, 0.0, 0.5 * k) for k in range(4)]  # 80 degrees from the normal
    write_series(tmp_path, _phantom(nz=4), positions=pos)
    with pytest.raises(GeometryError, match="not a stack"):
        load_scan(tmp_path)
