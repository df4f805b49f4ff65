"""Volume files (NIfTI, NRRD, MHA, MHD), SimpleITK images and numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import lesionquant
from lesionquant import load_scan
from lesionquant.errors import InvalidInputError, NotCTError


def _volume(dtype=np.int16):
    a = np.full((5, 12, 10), -1000, dtype=dtype)
    a[:, 3:9, 2:8] = 40
    a[:, 5:7, 4:6] = -800
    return a


def _image(a, spacing=(0.8, 0.9, 2.0), origin=(1.0, 2.0, 3.0),
           direction=(0, 1, 0, 1, 0, 0, 0, 0, -1)):
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"])
def test_volume_files_roundtrip(tmp_path, suffix):
    img = _image(_volume())
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(img, str(path))
    scan = load_scan(path)
    assert scan.source == str(path)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(scan.image), _volume())
    np.testing.assert_allclose(scan.image.GetSpacing(), img.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(scan.image.GetOrigin(), img.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(scan.image.GetDirection(), img.GetDirection(), atol=1e-6)
    assert scan.image.GetPixelID() == sitk.sitkInt16


def test_sitk_image_float_integral_becomes_int16():
    scan = lesionquant.load_scan(_image(_volume(np.float32)))
    assert scan.image.GetPixelID() == sitk.sitkInt16
    assert scan.source == "<SimpleITK image>"


def test_sitk_image_fractional_stays_float32():
    a = _volume(np.float32) + 0.25
    scan = load_scan(_image(a))
    assert scan.image.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(scan.image), a)


def test_numpy_array_with_spacing_xyz():
    a = _volume()
    scan = load_scan(a, spacing_mm=(0.7, 0.8, 2.5), origin_mm=(-5, -6, -7))
    assert scan.size_xyz == (10, 12, 5)
    assert scan.spacing_mm == pytest.approx((0.7, 0.8, 2.5))
    assert scan.image.GetOrigin() == pytest.approx((-5, -6, -7))
    assert scan.voxel_volume_ml == pytest.approx(0.7 * 0.8 * 2.5 / 1000)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(scan.image), a)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({}, "spacing_mm"),
    ({"spacing_mm": (1, 1)}, "3 positive"),
    ({"spacing_mm": (1, 0, 1)}, "3 positive"),
    ({"spacing_mm": (1, 1, 1), "direction": (1, 1, 0, 0, 1, 0, 0, 0, 1)}, "orthonormal"),
])
def test_numpy_array_bad_geometry(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        load_scan(_volume(), **kwargs)


def test_numpy_array_wrong_dims_and_not_hu():
    with pytest.raises(InvalidInputError, match="expected 3D"):
        load_scan(np.zeros((4, 4)), spacing_mm=(1, 1, 1))
    with pytest.raises(NotCTError):
        load_scan(np.ones((3, 4, 4), np.uint8), spacing_mm=(1, 1, 1))
    with pytest.raises(InvalidInputError, match="NaN"):
        a = _volume(np.float32)
        a[0, 0, 0] = np.nan
        load_scan(a, spacing_mm=(1, 1, 1))


def test_type_errors_for_programming_mistakes():
    with pytest.raises(TypeError):
        load_scan(42)
    with pytest.raises(TypeError):
        load_scan("x.nii", spacing_mm=(1, 1, 1))


def test_corrupt_and_empty_volume_files(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(InvalidInputError, match="cannot read volume file") as exc:
        load_scan(bad)
    assert "\n" not in str(exc.value)
    empty = tmp_path / "empty.nrrd"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInputError, match="empty file"):
        load_scan(empty)


def test_vector_and_4d_images():
    vec = sitk.Compose([_image(_volume())] * 3)
    with pytest.raises(InvalidInputError, match="components"):
        load_scan(vec)
    one = sitk.JoinSeries([_image(_volume())])
    assert load_scan(one).image.GetDimension() == 3
    two = sitk.JoinSeries([_image(_volume())] * 2)
    with pytest.raises(InvalidInputError, match="4D"):
        load_scan(two)


def test_2d_image_becomes_one_slice():
    img = sitk.GetImageFromArray(_volume()[0])
    scan = load_scan(img)
    assert scan.size_xyz == (10, 12, 1)
    assert any("2D image" in w for w in scan.warnings)
