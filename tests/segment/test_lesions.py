"""segment_lesions: density bands and each suppression (vessels, fissures, rim, emphysema,
dependent density, minimum size), on a fine synthetic chest with hand-placed structures."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import to_image, toy_chest

from lesionquant.errors import InvalidInputError
from lesionquant.segment import segment_lesions
from lesionquant.settings import Settings

SP = (2.0, 1.0, 1.0)
SHAPE = (40, 160, 200)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


@pytest.fixture
def chest():
    hu, labels = toy_chest(SHAPE, SP, noise_hu=15.0)
    zz, yy, xx = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    return hu, labels, (zz, yy, xx)


def _ball(grid, centre_mm, radius_mm):
    zz, yy, xx = grid
    cz, cy, cx = centre_mm
    return ((zz * SP[0] - cz) ** 2 + (yy * SP[1] - cy) ** 2 + (xx * SP[2] - cx) ** 2
            <= radius_mm**2)


def _run(hu, labels, settings=None):
    image = to_image(hu, SP)
    lungs = sitk.GetImageFromArray(labels)
    lungs.CopyInformation(image)
    out = segment_lesions(image, lungs, settings)
    assert out.GetPixelID() == sitk.sitkUInt8 and out.GetSize() == image.GetSize()
    return sitk.GetArrayFromImage(out)


def _right_centre(labels):
    z, y, x = np.nonzero(labels == 1)
    return (z.mean() * SP[0], y.mean() * SP[1], x.mean() * SP[2])


def test_ggo_and_consolidation_by_density(chest):
    hu, labels, grid = chest
    cz, cy, cx = _right_centre(labels)
    ggo = _ball(grid, (cz, cy - 20, cx), 10.0) & (labels == 1)
    cons = _ball(grid, (cz, cy + 18, cx), 9.0) & (labels == 1)
    hu[ggo] = -520.0 + np.random.default_rng(1).normal(0, 15, int(ggo.sum()))
    hu[cons] = 25.0
    out = _run(hu, labels)
    assert _dice(out == 3, ggo) > 0.85
    assert _dice(out == 4, cons) > 0.85
    # Lesion voxels stay lung voxels of the right side: labels 1-4 cover the lungs.
    assert ((out > 0) == (labels > 0)).all()
    assert not (out[labels == 2] >= 3).any()


def test_normal_lung_has_no_lesion(chest):
    hu, labels, _ = chest
    out = _run(hu, labels)
    assert (out >= 3).sum() / (labels > 0).sum() < 0.001


def test_vessels_are_not_lesions(chest):
    hu, labels, grid = chest
    zz, _yy, xx = grid
    cz, _cy, cx = _right_centre(labels)
    # A 4 mm-wide vessel (40 HU) with a 1 mm partial-volume halo (-500 HU) along y.
    r = np.sqrt((zz * SP[0] - cz) ** 2 + (xx * SP[2] - cx) ** 2)
    lung = labels == 1
    vessel = lung & (r <= 2.0)
    halo = lung & (r > 2.0) & (r <= 3.0)
    hu[vessel] = 40.0
    hu[halo] = -500.0
    out = _run(hu, labels)
    assert (out[vessel | halo] >= 3).mean() < 0.05


def test_vessel_inside_ggo_counts_as_ggo(chest):
    hu, labels, grid = chest
    zz, _yy, xx = grid
    cz, cy, cx = _right_centre(labels)
    ggo = _ball(grid, (cz, cy, cx), 14.0) & (labels == 1)
    hu[ggo] = -500.0
    vessel = ggo & (np.sqrt((zz * SP[0] - cz) ** 2 + (xx * SP[2] - cx) ** 2) <= 1.5)
    hu[vessel] = 40.0
    out = _run(hu, labels)
    assert _dice(out >= 3, ggo) > 0.85
    assert (out[vessel] == 3).mean() > 0.8


def test_fissure_is_not_lesion(chest):
    hu, labels, grid = chest
    _, yy, _ = grid
    fissure = (labels == 2) & (yy == 80)  # a one-voxel plate across the left lung
    hu[fissure] = -600.0
    out = _run(hu, labels)
    assert (out[fissure] >= 3).mean() < 0.05


def test_partial_volume_rim_is_not_lesion(chest):
    hu, labels, _ = chest
    from scipy import ndimage

    lung = labels > 0
    rim = lung & ~ndimage.binary_erosion(lung)
    hu[rim] = -550.0
    out = _run(hu, labels)
    assert (out[rim] >= 3).mean() < 0.05


def test_emphysema_is_not_lesion(chest):
    hu, labels, grid = chest
    cz, cy, cx = _right_centre(labels)
    bulla = _ball(grid, (cz, cy, cx), 12.0) & (labels == 1)
    hu[bulla] = -985.0
    out = _run(hu, labels)
    assert not (out[bulla] >= 3).any()


def test_dependent_density_gradient_is_not_ggo():
    hu, labels = toy_chest(SHAPE, SP, lung_hu=-860.0, noise_hu=15.0)
    yy = np.arange(SHAPE[1])[None, :, None].astype(np.float32)
    ys = np.flatnonzero((labels > 0).any(axis=(0, 2)))
    ramp = np.clip((yy - ys[0]) / (ys[-1] - ys[0]), 0, 1) * 160.0  # -860 -> -700 posterior
    hu = np.where(labels > 0, hu + ramp, hu)
    corrected = _run(hu, labels)
    off = Settings().replace(**{"classical_lesions.filters.dependent_correction_max_hu": 0})
    plain = _run(hu, labels, off)
    n = (labels > 0).sum()
    assert (corrected >= 3).sum() / n < 0.01
    assert (plain >= 3).sum() / n > 3 * max((corrected >= 3).sum() / n, 0.001)


def test_minimum_lesion_size(chest):
    hu, labels, grid = chest
    cz, cy, cx = _right_centre(labels)
    speck = _ball(grid, (cz, cy, cx), 7.0) & (labels == 1)  # ~1.4 mL
    hu[speck] = -450.0
    assert (_run(hu, labels, Settings(min_lesion_volume_ml=0.05))[speck] == 3).mean() > 0.5
    assert not (_run(hu, labels, Settings(min_lesion_volume_ml=3.0)) >= 3).any()


def test_band_settings_are_used(chest):
    hu, labels, grid = chest
    cz, cy, cx = _right_centre(labels)
    ggo = _ball(grid, (cz, cy, cx), 10.0) & (labels == 1)
    hu[ggo] = -650.0
    assert (_run(hu, labels)[ggo] == 3).mean() > 0.7
    narrow = Settings(ggo_hu=(-600.0, -300.0))
    assert (_run(hu, labels, narrow)[ggo] == 3).mean() < 0.05


def test_size_mismatch_raises():
    image = sitk.Image(10, 10, 10, sitk.sitkInt16)
    with pytest.raises(InvalidInputError):
        segment_lesions(image, sitk.Image(10, 10, 9, sitk.sitkUInt8))


def test_label_map_with_lesions_is_read_as_lung(chest):
    # A previous result (labels 3-4 inside the lungs) passed back in: the lesion voxels
    # stay lung, on their own side, and the lesions are found again.
    hu, labels, grid = chest
    cz, cy, cx = _right_centre(labels)
    ggo = _ball(grid, (cz, cy, cx), 10.0) & (labels == 1)
    hu[ggo] = -520.0
    first = _run(hu, labels)
    assert (first == 3).sum() > 0.85 * ggo.sum()
    again = _run(hu, first)
    assert ((again > 0) == (labels > 0)).all()
    assert ((again == 2) == (labels == 2)).all()
    assert (again == first).mean() > 0.999


def test_partial_volume_apex_and_base_slices_are_not_lesion():
    # A 5 mm slice through the lung apex or base averages lung with the tissue above or
    # below it (about -600 HU). The lesion stage works in the lung's bounding box, whose
    # filters replicated its faces: the apex and base slices read as lung going on beyond
    # them and kept no rim (every cap voxel was GGO; the 5 mm healthy sample 0.73 % lesion).
    sp = (5.0, 1.5, 1.5)
    hu, labels = toy_chest((40, 200, 260), sp, noise_hu=15.0)
    zs = np.flatnonzero((labels > 0).any(axis=(1, 2)))
    cap = (labels > 0) & np.isin(np.arange(40), [zs[0], zs[-1]])[:, None, None]
    hu[cap] = -600.0 + np.random.default_rng(2).normal(0, 15, int(cap.sum()))
    image = to_image(hu, sp)
    lungs = sitk.GetImageFromArray(labels)
    lungs.CopyInformation(image)
    out = sitk.GetArrayFromImage(segment_lesions(image, lungs))
    assert (out[cap] >= 3).mean() < 0.05
