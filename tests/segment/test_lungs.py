"""segment_lungs: sides, volumes, dense-lung recovery, gas and airway exclusion, errors."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import to_image, toy_chest

from lesionquant.errors import InvalidInputError, NoLungError
from lesionquant.segment import segment_lungs
from lesionquant.settings import Settings

SP = (5.0, 3.0, 3.0)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


def test_sides_geometry_and_volume(toy):
    image, truth = toy
    out = segment_lungs(image)
    assert out.GetPixelID() == sitk.sitkUInt8
    assert out.GetSize() == image.GetSize()
    assert out.GetSpacing() == image.GetSpacing() and out.GetOrigin() == image.GetOrigin()
    lab = sitk.GetArrayFromImage(out)
    assert set(np.unique(lab)) == {0, 1, 2}
    # Patient right = low x index in LPS.
    x = np.arange(lab.shape[2])
    assert (x * (lab == 1).sum(axis=(0, 1))).sum() / (lab == 1).sum() < lab.shape[2] / 2
    assert (x * (lab == 2).sum(axis=(0, 1))).sum() / (lab == 2).sum() > lab.shape[2] / 2
    for v in (1, 2):
        assert _dice(lab == v, truth == v) > 0.97
    vol_err = abs(int((lab > 0).sum()) - int((truth > 0).sum())) / (truth > 0).sum()
    assert vol_err < 0.02


def test_flipped_orientation_keeps_patient_sides(toy):
    """An RAS-stored image (x flipped) still gets 1 = patient right."""
    image, truth = toy
    arr = sitk.GetArrayFromImage(image)[:, ::-1, ::-1].copy()
    flipped = sitk.GetImageFromArray(arr)
    flipped.SetSpacing(image.GetSpacing())
    flipped.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    lab = sitk.GetArrayFromImage(segment_lungs(flipped))
    assert _dice(lab == 1, truth[:, ::-1, ::-1] == 1) > 0.97


def test_pleural_consolidation_is_kept_in_the_lung():
    hu, truth = toy_chest()
    # A dense (20 HU) pleural-based consolidation: the lung inside a 15 mm ball centred
    # on the lateral pleura of the right lung.
    lung = truth == 1
    zz, yy, xx = np.ogrid[: hu.shape[0], : hu.shape[1], : hu.shape[2]]
    xs = np.flatnonzero(lung[20].any(axis=0))
    cz, cy, cx = 20, 48, xs[0]
    ball = ((zz - cz) * 5.0) ** 2 + ((yy - cy) * 3.0) ** 2 + ((xx - cx) * 3.0) ** 2 <= 15.0**2
    cons = lung & ball
    hu[cons] = 20.0
    lab = sitk.GetArrayFromImage(segment_lungs(to_image(hu, SP)))
    # Plain thresholding keeps none of it; the rolling-ball closing brings most back.
    assert (lab[cons] == 1).mean() > 0.6
    assert _dice(lab > 0, truth > 0) > 0.97


def test_stomach_gas_below_the_lung_is_not_lung():
    hu, _truth = toy_chest()
    # A pure-gas pocket in soft tissue below the left lung (z 0..3).
    zz, yy, xx = np.ogrid[: hu.shape[0], : hu.shape[1], : hu.shape[2]]
    gas = ((zz <= 2) & ((yy - 48) ** 2 + (xx - 90) ** 2 <= 8**2))
    hu[gas] = -1000.0
    lab = sitk.GetArrayFromImage(segment_lungs(to_image(hu, SP)))
    assert not (lab[gas] > 0).any()


@pytest.mark.slow
def test_gastric_fundus_ring_of_thick_slices_is_not_lung():
    # A 5 mm slice that cuts the dome of the gastric fundus blends its gas with the
    # stomach wall into an air-like ring (-700 to -620 HU) that joins the lung base:
    # 23.1 mL of it was lung on this lesion-free phantom (lung volume +1.75 %). Voxels at
    # or above -750 HU within a slice thickness + 1 mm of gas under the lung are not lung.
    from scipy import ndimage

    from lesionquant.synth import make_phantom

    ph = make_phantom(size_xyz=(512, 512, 60), spacing_mm=(0.7, 0.7, 5.0), seed=0,
                      lesion_burden_pct=0)
    lab = sitk.GetArrayFromImage(ph.labels)
    hu = sitk.GetArrayFromImage(ph.image)
    lung = (lab >= 1) & (lab <= 4)
    pred = sitk.GetArrayFromImage(segment_lungs(ph.image)) > 0
    zs = np.flatnonzero(lung.any(axis=(1, 2)))
    inside = ndimage.binary_fill_holes(hu > -500, structure=np.ones((1, 3, 3), bool))
    gas = (hu < -950) & ~lung & inside
    gas[(zs[0] + zs[-1]) // 2:] = False  # below the middle of the lungs
    near = ndimage.distance_transform_edt(~gas, sampling=(5.0, 0.7, 0.7)) <= 6.0
    voxel_ml = 0.7 * 0.7 * 5.0 / 1000.0
    assert np.count_nonzero(pred & ~lung & near) * voxel_ml < 10.0  # 5.8 mL
    assert np.count_nonzero(pred & lung & near) >= 0.65 * np.count_nonzero(lung & near)
    assert abs(pred.sum() - lung.sum()) / lung.sum() < 0.015  # 1.17 %


def test_trachea_is_not_lung():
    hu, _truth = toy_chest()
    zz, yy, xx = np.ogrid[: hu.shape[0], : hu.shape[1], : hu.shape[2]]
    # Trachea from the top of the scan down to the lungs' upper third, midline.
    trachea = (zz >= 22) & ((yy - 45) ** 2 + (xx - 64) ** 2 <= 3**2)
    hu[trachea] = -1000.0
    # Main bronchi into each lung.
    for x0 in (52, 76):
        hu[(zz >= 22) & (zz <= 23) & ((yy - 45) ** 2 <= 4) & (np.abs(xx - x0) <= 12)] = -1000
    lab = sitk.GetArrayFromImage(segment_lungs(to_image(hu, SP)))
    assert (lab[trachea & (zz >= 30)] == 0).all()


def test_main_bronchi_cut_off_at_the_carina_are_not_lung():
    hu, _truth = toy_chest()
    zz, yy, xx = np.ogrid[: hu.shape[0], : hu.shape[1], : hu.shape[2]]
    trachea = (zz >= 26) & ((yy - 45) ** 2 + (xx - 64) ** 2 <= 3**2)
    hu[trachea] = -1000.0
    # Slice 25 is the carina (soft tissue): the gas threshold cannot grow across it.
    bronchi = np.zeros(hu.shape, bool)
    for side in (-1, 1):
        for z in range(20, 25):
            x0 = 64 + side * (4 + 3 * (24 - z))  # running down and out into each lung
            bronchi |= (zz == z) & ((yy - 45) ** 2 + (xx - x0) ** 2 <= 2**2)
    hu[bronchi] = -1000.0
    lab = sitk.GetArrayFromImage(segment_lungs(to_image(hu, SP)))
    in_lung = bronchi & (_truth > 0)
    assert in_lung.sum() > 20
    assert (lab[in_lung] == 0).mean() > 0.9


def test_no_lung_raises():
    hu, _ = toy_chest(lung_hu=40.0)
    with pytest.raises(NoLungError, match="lung"):
        segment_lungs(to_image(hu, SP))


def test_small_lung_below_min_area_raises():
    hu, _ = toy_chest()
    with pytest.raises(NoLungError, match="min_lung_area_cm2"):
        segment_lungs(to_image(hu, SP), Settings(min_lung_area_cm2=1e5))


def test_2d_image_rejected():
    with pytest.raises(InvalidInputError):
        segment_lungs(sitk.Image(32, 32, sitk.sitkInt16))


def test_single_slice_scan(toy):
    """One-slice scans (TCIA-style) segment in 2D."""
    image, truth = toy
    one = image[:, :, 20:21]
    lab = sitk.GetArrayFromImage(segment_lungs(one))
    assert _dice(lab[0] == 1, truth[20] == 1) > 0.95
    assert _dice(lab[0] == 2, truth[20] == 2) > 0.95


@pytest.mark.realdata
def test_copd_lung_dice_against_cip_mask(chest_dir):
    image = sitk.ReadImage(str(chest_dir / "cip-copd-chest-ct-64" / "ct.nii.gz"))
    truth = sitk.GetArrayFromImage(
        sitk.ReadImage(str(chest_dir / "cip-copd-chest-ct-64" / "lung_mask.nii.gz"))) > 0
    lab = sitk.GetArrayFromImage(segment_lungs(image))
    assert _dice(lab > 0, truth) >= 0.95
    # Both sides present, similar size (right slightly larger in this subject).
    r, left = (lab == 1).sum(), (lab == 2).sum()
    assert 0.8 < r / left < 1.4


@pytest.mark.realdata
def test_abdomen_without_lungs_raises(chest_dir):
    image = sitk.ReadImage(str(chest_dir / "totalseg-abdomen-ct-no-lungs" / "ct.nii.gz"))
    with pytest.raises(NoLungError):
        segment_lungs(image)


def test_hilum_is_found_at_the_carina_not_at_the_lowest_bronchi():
    from lesionquant.segment.classical._airway import AirwayConfig, carina, hilum

    # LPS index order: z grows towards the head. Trachea z 30-59 at x 20; main bronchi
    # from the carina (z 29) down to z 20 at x 12 and x 28; a lobar bronchus continues
    # from the right one down to z 0.
    airway = np.zeros((60, 40, 40), bool)
    airway[30:60, 19:21, 19:21] = True
    airway[20:30, 19:21, 11:13] = True
    airway[20:30, 19:21, 27:29] = True
    airway[0:20, 19:21, 11:13] = True
    assert carina(airway) == 29
    sp = (2.0, 2.0, 2.0)
    box, near = hilum(airway, sp, AirwayConfig())
    zone = np.zeros(airway.shape, bool)
    zone[box] = near
    assert zone[25, 20, 12] and zone[25, 20, 28]  # beside the main bronchi
    assert not zone[2, 20, 12]  # beside the lobar bronchus 54 mm below the carina
    # A tree that never splits: its lowest 30 mm.
    assert carina(airway[30:]) is None
    box, near = hilum(airway[30:], sp, AirwayConfig())
    assert near.any() and box[0].start == 0
