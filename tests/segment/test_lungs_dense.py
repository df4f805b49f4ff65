"""segment_lungs on diseased lung: phantom lung volume, consolidation kept, gastric gas out,
consolidation on the mediastinal side of the lung kept."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import to_image, toy_chest

from lesionquant.segment import segment_lungs
from lesionquant.synth import make_phantom

SP = (5.0, 3.0, 3.0)


@pytest.fixture(scope="module")
def phantom_result():
    """A 20 % lesion phantom at 1.9 x 1.9 x 3 mm, its truth, HU and predicted lungs."""
    ph = make_phantom(size_xyz=(192, 192, 100), spacing_mm=(1.9, 1.9, 3.0), seed=0,
                            lesion_burden_pct=20.0)
    truth = sitk.GetArrayFromImage(ph.labels)
    hu = sitk.GetArrayFromImage(ph.image)
    pred = sitk.GetArrayFromImage(segment_lungs(ph.image)) > 0
    voxel_ml = float(np.prod(ph.image.GetSpacing())) / 1000.0
    return truth, hu, pred, voxel_ml


@pytest.mark.slow
def test_phantom_lung_volume_within_2_percent(phantom_result):
    truth, _hu, pred, _ = phantom_result
    lung = (truth >= 1) & (truth <= 4)
    err_pct = 100.0 * (int(pred.sum()) - int(lung.sum())) / lung.sum()
    # Before the gas-layer rule the fundus gas under the left base made this +2.1 %.
    assert abs(err_pct) <= 2.0
    assert 2.0 * (pred & lung).sum() / (pred.sum() + lung.sum()) > 0.975


@pytest.mark.slow
def test_phantom_consolidation_inside_the_mask(phantom_result):
    truth, _hu, pred, _ = phantom_result
    cons = truth == 4
    assert cons.sum() > 1000
    # 0.79 with the row-wise mediastinum proxy; pleural bands wider than the closing ball
    # are still partly outside (docs/method.md, limitations).
    assert pred[cons].mean() >= 0.83
    assert pred[truth == 3].mean() >= 0.97  # GGO


@pytest.mark.slow
def test_phantom_gastric_gas_is_not_lung(phantom_result):
    truth, hu, pred, voxel_ml = phantom_result
    # The phantom's fundus gas touches the left lung base with no diaphragm in between
    # (52 mL of it was lung before); only partial-volume blocks at the contact remain.
    free_gas_ml = (pred & (truth == 0) & (hu < -900)).sum() * voxel_ml
    assert free_gas_ml < 10.0


def test_consolidation_on_the_mediastinal_side_is_kept():
    hu, truth = toy_chest()
    right = truth == 1
    zz, yy, xx = np.ogrid[: hu.shape[0], : hu.shape[1], : hu.shape[2]]
    medial_edge = np.where(right, xx, -1).max(axis=2, keepdims=True)
    # 24 mm of the medial right lung over 21 mm of rows and 65 mm of height, at 30 HU:
    # these rows hold both lungs, so a row-wise "between the lungs" mediastinum took it.
    cons = right & (xx > medial_edge - 8) & (yy >= 52) & (yy <= 58) & (zz >= 14) & (zz <= 26)
    # within ground glass, as COVID-19 consolidation is (without any, in healthy lung, it
    # reads like a great vessel bulging into the lung: docs/method.md, limitations)
    hu[right & (xx > medial_edge - 14) & (yy >= 46) & (yy <= 64) & (zz >= 10)
       & (zz <= 30)] = -600.0
    hu[cons] = 30.0
    lab = sitk.GetArrayFromImage(segment_lungs(to_image(hu, SP)))
    # 0.0 with the row-wise proxy, 0.40 with the notch-tolerant one, 0.57 since diseased
    # lung lifts the mediastinum veto
    assert (lab[cons] == 1).mean() > 0.5
    # The mediastinum itself stays out.
    mid = (truth == 0) & (np.abs(xx - hu.shape[2] // 2) <= 3) & (zz >= 10) & (zz <= 30)
    assert not (lab[mid & (hu > -300)] > 0).any()


def _medial_box(truth: np.ndarray, side: int, depth_vox: int, rows: tuple[int, int],
                zs: tuple[int, int]) -> np.ndarray:
    """The ``depth_vox`` most medial voxels of lung ``side`` in the given rows and slices."""
    zz, yy, xx = np.ogrid[: truth.shape[0], : truth.shape[1], : truth.shape[2]]
    lung = truth == side
    if side == 1:
        edge = np.where(lung, xx, -1).max(axis=2, keepdims=True)
        near = xx > edge - depth_vox
    else:
        edge = np.where(lung, xx, truth.shape[2]).min(axis=2, keepdims=True)
        near = xx < edge + depth_vox
    return (lung & near & (yy >= rows[0]) & (yy <= rows[1]) & (zz >= zs[0])
            & (zz <= zs[1]))


def test_mediastinal_consolidation_in_ground_glass_is_lung_a_bulging_vessel_is_not():
    # Which dense tissue against the mediastinum is lung is told by the aerated lung
    # around it: consolidation grows out of diseased lung (here ground glass), a vessel
    # or the mediastinum bulges into normally aerated lung.
    hu, truth = toy_chest()
    ggo = _medial_box(truth, 1, 10, (44, 66), (12, 28))
    cons = _medial_box(truth, 1, 4, (50, 60), (16, 24))
    hu[ggo] = -600.0
    hu[cons] = 30.0
    # A 12 mm soft-tissue tube from the mediastinum 24 mm into the healthy left lung.
    zz, yy, xx = np.ogrid[: hu.shape[0], : hu.shape[1], : hu.shape[2]]
    left = truth == 2
    edge = int(np.where(left[20, 48], np.arange(hu.shape[2]), hu.shape[2]).min())
    tube = ((((yy - 48) * 3.0) ** 2 + ((zz - 20) * 5.0) ** 2 <= 6.0**2)
            & (xx >= edge - 3) & (xx <= edge + 8))
    hu[tube] = 40.0
    lab = sitk.GetArrayFromImage(segment_lungs(to_image(hu, SP)))
    # The closing reaches 0.40 of this 33 mm wide medial band (the rest is a bite the
    # ball enters from the mediastinum); the grown mediastinum proxy took all of it before.
    assert (lab[cons] == 1).mean() > 0.35
    assert (lab[tube & left] > 0).mean() < 0.2  # 0.44 before
