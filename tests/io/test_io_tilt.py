"""A tilted acquisition made from a real chest CT: the loader must restore geometry and content.

The whole-chest COPD CT (chest/cip-copd-chest-ct-64) and its lung mask are sampled on planes
tilted 20 degrees about the patient's left-right axis, the way a tilted gantry acquires them
(ImageOrientationPatient tilted, ImagePositionPatient stepping along pure z, as GE writes it),
and written as DICOM series. After loading, every voxel must sit at its true physical
position: the content matches the original volume where both exist, and the lung volume in mL
and the lung centroid in mm match the original mask.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from _dicomgen import write_series

from lesionquant import load_scan

pytestmark = pytest.mark.realdata

TILT_DEG = 20.0
STEP_Z_MM = 3.0
PIXEL_MM = 2.5
N_PIXELS = 120


def _tilted_stack(image: sitk.Image, default: float) -> tuple[np.ndarray, list, tuple]:
    t = math.radians(TILT_DEG)
    r = np.array([1.0, 0.0, 0.0])
    c = np.array([0.0, math.cos(t), -math.sin(t)])
    n = np.cross(r, c)
    size = np.array(image.GetSize()) * np.array(image.GetSpacing())
    lo = np.array(image.GetOrigin())
    center = lo + size / 2
    fov = N_PIXELS * PIXEL_MM
    first = np.array([center[0] - fov / 2, center[1] - fov / 2 * math.cos(t), lo[2]])
    n_slices = int((size[2] + fov * math.sin(t)) / STEP_Z_MM) + 1
    positions = [first + np.array([0.0, 0.0, k * STEP_Z_MM]) for k in range(n_slices)]
    direction = tuple(np.stack([r, c, n], axis=1).ravel())
    slices = []
    for pos in positions:
        ref = sitk.Image(N_PIXELS, N_PIXELS, 1, sitk.sitkFloat32)
        ref.SetSpacing((PIXEL_MM, PIXEL_MM, 1.0))
        ref.SetOrigin(tuple(pos))
        ref.SetDirection(direction)
        out = sitk.Resample(image, ref, sitk.Transform(), sitk.sitkLinear, default,
                            sitk.sitkFloat32)
        slices.append(sitk.GetArrayFromImage(out)[0])
    return np.stack(slices), positions, (*r, *c)


@pytest.fixture(scope="module")
def tilted(chest_dir, tmp_path_factory):
    ct = sitk.Cast(sitk.ReadImage(str(chest_dir / "cip-copd-chest-ct-64" / "ct.nii.gz")),
                   sitk.sitkFloat32)
    mask = sitk.Cast(sitk.ReadImage(str(chest_dir / "cip-copd-chest-ct-64" / "lung_mask.nii.gz")),
                     sitk.sitkFloat32)
    root = tmp_path_factory.mktemp("tilted")
    hu, positions, orient = _tilted_stack(ct, -1024.0)
    write_series(root / "ct", np.rint(hu), positions=positions, orientation=orient,
                 spacing_mm=(PIXEL_MM, PIXEL_MM, STEP_Z_MM), thickness_mm=STEP_Z_MM,
                 GantryDetectorTilt=TILT_DEG)
    frac, positions, orient = _tilted_stack(mask, 0.0)
    # Lung mask encoded as HU: lung +1000, elsewhere -1000 (so the HU check passes).
    write_series(root / "mask", np.rint(frac * 2000 - 1000), positions=positions,
                 orientation=orient, spacing_mm=(PIXEL_MM, PIXEL_MM, STEP_Z_MM))
    return ct, mask, load_scan(root / "ct"), load_scan(root / "mask")


def test_geometry_is_orthogonal_with_true_slice_normal(tilted):
    _, _, scan, _ = tilted
    img = scan.image
    t = math.radians(TILT_DEG)
    d = np.array(img.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(d @ d.T, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(d[:, 2], (0, math.sin(t), math.cos(t)), atol=1e-6)
    np.testing.assert_allclose(img.GetSpacing(), (PIXEL_MM, PIXEL_MM, STEP_Z_MM * math.cos(t)),
                               atol=1e-5)
    assert scan.acquisition.gantry_tilt_deg == pytest.approx(TILT_DEG, abs=0.01)
    assert any("gantry tilt 20.0" in w for w in scan.warnings)


def test_content_restored(tilted):
    ct, _, scan, _ = tilted
    ref = sitk.Resample(ct, scan.image, sitk.Transform(), sitk.sitkLinear, -5000.0,
                        sitk.sitkFloat32)
    a = sitk.GetArrayFromImage(scan.image).astype(np.float64)
    b = sitk.GetArrayFromImage(ref).astype(np.float64)
    body = (b > -5000) & ((a > -900) | (b > -900))  # overlap, where there is anatomy
    assert body.sum() > 100_000
    corr = np.corrcoef(a[body], b[body])[0, 1]
    mad = np.abs(a - b)[body].mean()
    print(f"\ntilted chest: correlation {corr:.4f}, mean abs diff {mad:.1f} HU in the overlap")
    assert corr > 0.99
    assert mad < 15.0  # two linear interpolations of a 4 mm volume blur edges


def test_lung_volume_and_centroid_restored(tilted):
    _, mask, _, mscan = tilted
    m0 = sitk.GetArrayFromImage(mask) > 0.5
    vox0 = np.prod(mask.GetSpacing()) / 1000.0
    vol0 = m0.sum() * vox0
    m1 = sitk.GetArrayFromImage(mscan.image) > 0
    vol1 = m1.sum() * mscan.voxel_volume_ml
    print(f"\nlung volume: original {vol0:.1f} mL, tilted+corrected {vol1:.1f} mL "
          f"({100 * (vol1 / vol0 - 1):+.2f} %)")
    assert vol1 == pytest.approx(vol0, rel=0.01)

    def centroid(img, m):
        idx = np.argwhere(m)[:, ::-1].mean(axis=0)  # (x, y, z) index
        return np.array(img.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in idx)))

    shift = np.linalg.norm(centroid(mscan.image, m1) - centroid(mask, m0))
    print(f"lung centroid moved {shift:.2f} mm")
    assert shift < 0.5
