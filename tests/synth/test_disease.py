"""v2 lesion model: exact burden, the patterns (faint, solid, band, lobar, effusion), the
phantom and insertion truth with effusion, the families, the JPEG HU map, the QA flag."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import SimpleITK as sitk

from lesionquant._jpeg_hu import LUNG_HU, SOFT_TISSUE_HU, jpeg_to_hu
from lesionquant.measure._outside import dense_outside_lung_ml
from lesionquant.synth import (
    SHIFTED_RANGES,
    TUNING_RANGES,
    LesionParams,
    family_cases,
    insert_lesions,
    make_phantom,
)
from lesionquant.synth._disease import make_disease

SPACING = (3.0, 2.0, 2.0)
# a small but whole chest: coarse pixels, thick slices (a few seconds)
SMALL = dict(size_xyz=(160, 160, 50), spacing_mm=(2.2, 2.2, 6.0))


@pytest.fixture(scope="module")
def lungs():
    """Two ellipsoidal 'lungs' (1 right at low x, 2 left), 60 x 100 x 120 voxels."""
    z, y, x = np.ogrid[:60, :100, :120]
    lab = np.zeros((60, 100, 120), np.uint8)
    for val, cx in ((1, 32), (2, 88)):
        inside = ((z - 30) / 28.0) ** 2 + ((y - 50) / 45.0) ** 2 + ((x - cx) / 26.0) ** 2 <= 1
        lab[inside] = val
    return lab


@pytest.mark.parametrize("burden,lobar,effusion", [(2.0, 0.0, 0.0), (20.0, 5.0, 60.0),
                                                   (45.0, 15.0, 0.0)])
def test_exact_burden_effusion_not_lung(lungs, burden, lobar, effusion):
    p = LesionParams(burden_pct=burden, lobar_pct=lobar, effusion_ml=effusion)
    d = make_disease(lungs, SPACING, np.random.default_rng(1), p)
    voxel_ml = float(np.prod(SPACING)) / 1000.0
    eff = d.classes == 3
    assert eff.sum() * voxel_ml == pytest.approx(effusion, abs=2 * voxel_ml)
    n_lung = int(((lungs > 0) & ~eff).sum())
    lesion = (d.classes == 1) | (d.classes == 2)
    assert lesion.sum() == round(n_lung * burden / 100.0)
    assert not (lesion & eff).any() and not ((d.classes > 0) & (lungs == 0)).any()
    assert float(d.fill[eff].max(initial=0.0)) == 0.0 and d.fill.max() <= 1.0
    if effusion:  # a dependent (posterior) collection on one side
        _zz, yy, _xx = np.nonzero(eff)
        assert yy.mean() > np.nonzero(lungs)[1].mean() + 15
        assert len(np.unique(lungs[eff])) == 1


def test_pure_patterns(lungs):
    rng = np.random.default_rng(2)
    solid = make_disease(lungs, SPACING, rng, LesionParams(
        burden_pct=8.0, ggo_fraction=0.0, kind_weights=(0, 0, 0, 1, 0)))
    assert (solid.classes == 2).sum() > 0 and (solid.classes == 1).sum() == 0
    faint = make_disease(lungs, SPACING, np.random.default_rng(3), LesionParams(
        burden_pct=8.0, ggo_fraction=1.0, kind_weights=(0, 1, 0, 0, 0)))
    f = faint.fill[faint.classes == 1]
    assert (faint.classes == 2).sum() == 0 and np.median(f) < 0.2
    band = make_disease(lungs, SPACING, np.random.default_rng(4), LesionParams(
        burden_pct=2.0, kind_weights=(0, 0, 0, 0, 1)))
    les = band.classes > 0
    depth = ndi.distance_transform_edt(lungs > 0, sampling=SPACING)[les]
    assert np.median(depth) < 14.0  # thin bands under the pleura
    # thin: most band voxels have a non-lesion neighbour within 2 voxels in-plane
    core = ndi.binary_erosion(les, structure=np.ones((1, 5, 5), bool))
    assert core.sum() < 0.4 * les.sum()


def test_lobar_consolidation_is_dependent(lungs):
    d = make_disease(lungs, SPACING, np.random.default_rng(5), LesionParams(
        burden_pct=12.0, lobar_pct=10.0, ggo_fraction=0.9))
    cons = d.classes == 2
    yy = np.nonzero(cons)[1]
    ly = np.nonzero(lungs)[1]
    assert cons.sum() >= round((lungs > 0).sum() * 0.10) - 1
    assert np.median(yy) > np.percentile(ly, 70)  # posterior third
    assert (d.lobe & cons).sum() >= 0.8 * cons.sum() - (d.classes == 2).sum() * 0.2


def test_params_are_validated():
    with pytest.raises(ValueError):
        LesionParams(burden_pct=100.0)
    with pytest.raises(ValueError):
        LesionParams(burden_pct=5.0, lobar_pct=6.0)
    with pytest.raises(ValueError):
        LesionParams(kind_weights=(1.0, 0.0))
    assert LesionParams().to_dict()["radius_mm"] == [2.5, 45.0]


def test_v2_phantom_truth_equals_labels_and_is_deterministic():
    p = LesionParams(burden_pct=20.0, lobar_pct=5.0, effusion_ml=120.0)
    a = make_phantom(**SMALL, seed=7, lesions=p)
    b = make_phantom(**SMALL, seed=7, lesions=p)
    lab = sitk.GetArrayFromImage(a.labels)
    assert np.array_equal(lab, sitk.GetArrayFromImage(b.labels))
    vox = np.prod(SMALL["spacing_mm"]) / 1000.0
    counts = np.bincount(lab.ravel(), minlength=7)
    assert a.lung_ml == pytest.approx(counts[1:5].sum() * vox)
    assert a.effusion_ml == pytest.approx(counts[6] * vox) and a.effusion_ml > 60
    assert a.lesion_pct == pytest.approx(20.0, abs=0.5)
    assert a.params["lesions"]["effusion_ml"] == 120.0
    # the params reproduce the phantom (provenance round trip)
    c = make_phantom(**dict(a.params, size_xyz=tuple(a.params["size_xyz"]),
                            spacing_mm=tuple(a.params["spacing_mm"])))
    assert np.array_equal(lab, sitk.GetArrayFromImage(c.labels))
    hu = sitk.GetArrayFromImage(a.image)
    assert abs(float(np.median(hu[lab == 6]))) < 40  # fluid, not lung
    assert float(np.median(hu[lab == 4])) > -450  # dense like the effusion


def test_v2_phantom_faint_ggo_below_750():
    ph = make_phantom(size_xyz=(256, 256, 60), spacing_mm=(1.4, 1.4, 5.0), seed=3,
                      lesions=LesionParams(burden_pct=15.0))
    hu = sitk.GetArrayFromImage(ph.image)
    lab = sitk.GetArrayFromImage(ph.labels)
    ggo = hu[lab == 3]
    assert 0.05 < float(np.mean(ggo < -750)) < 0.5  # v1: at most 3 %
    assert -700 < float(np.median(ggo)) < -450


def test_v1_phantom_unchanged_without_lesions():
    a = make_phantom(**SMALL, seed=2, lesion_burden_pct=10.0)
    assert a.params["lesions"] is None and a.effusion_ml == 0.0
    assert 6 not in np.unique(sitk.GetArrayFromImage(a.labels))


def test_v2_insertion_with_effusion():
    host = make_phantom(**SMALL, seed=4, lesions=LesionParams(burden_pct=0.0))
    lab = sitk.GetArrayFromImage(host.labels)
    mask = sitk.GetImageFromArray(np.where((lab == 1) | (lab == 2), lab, 0).astype(np.uint8))
    mask.CopyInformation(host.labels)
    ins = insert_lesions(host.image, mask, seed=1, lesions=LesionParams(
        burden_pct=15.0, lobar_pct=4.0, effusion_ml=80.0))
    out = sitk.GetArrayFromImage(ins.labels)
    vox = np.prod(SMALL["spacing_mm"]) / 1000.0
    assert ins.effusion_ml == pytest.approx((out == 6).sum() * vox) and ins.effusion_ml > 40
    assert ins.lung_ml == pytest.approx(np.isin(out, (1, 2, 3, 4)).sum() * vox)
    assert ins.lesion_pct == pytest.approx(15.0, abs=0.2)
    assert ins.params["generator"] == "v2"


@pytest.mark.parametrize("n_slices", [2, 24])
def test_inserted_air_bronchograms_hold_air(n_slices):
    """Inserted consolidation carries bronchial lumens at air density (darker than the
    host's lung), also on a 2-slice host; the host is uniform -850 HU lung, no noise."""
    z, y, x = np.ogrid[:n_slices, :220, :300]
    lab = np.zeros((n_slices, 220, 300), np.uint8)
    for val, cx in ((1, 80), (2, 220)):
        lab[((y - 110) / 100.0) ** 2 + ((x - cx) / 65.0) ** 2 + 0 * z <= 1] = val
    hu = np.where(lab > 0, -850.0, 40.0).astype(np.float32)
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing((0.7, 0.7, 1.0))
    mask = sitk.GetImageFromArray(lab)
    mask.CopyInformation(img)
    ins = insert_lesions(img, mask, seed=3, noise_hu=0.0, lesions=LesionParams(
        burden_pct=40.0, ggo_fraction=0.2, kind_weights=(0, 0, 0, 1, 0)))
    out = sitk.GetArrayFromImage(ins.image)
    cons = sitk.GetArrayFromImage(ins.labels) == 4
    air = out[cons] < -870  # only bronchial air is darker than the host's -850 HU lung
    assert 0.001 < air.mean() < 0.06
    assert out[cons].min() < -920
    assert not (out[~cons & (lab > 0)] < -870).any()


def test_families_are_disjoint_and_shifted_is_outside():
    tun, rep, shi = (family_cases(f, 6) for f in ("tuning", "report", "shifted"))
    assert family_cases("report", 6) == rep  # deterministic
    seeds = [c.seed for c in tun + rep + shi]
    assert len(set(seeds)) == len(seeds)
    assert [c.lesions for c in tun] != [c.lesions for c in rep]
    for c in tun + rep:
        lo, hi = TUNING_RANGES["burden_pct"]
        assert lo <= c.lesions.burden_pct <= hi
    for c in shi:
        assert c.lesions.burden_pct >= TUNING_RANGES["burden_pct"][1]
        assert c.lesions.ggo_fill <= TUNING_RANGES["ggo_fill"][0]
        assert c.lesions.effusion_ml >= SHIFTED_RANGES["effusion_ml"][0] - 1
    with pytest.raises(ValueError):
        family_cases("test", 1)


@pytest.mark.parametrize("lung_gray,soft_gray,saturate", [(40, 200, False), (60, 230, False),
                                                          (45, 300, True)])
def test_jpeg_hu_map_finds_lung_and_soft_tissue_peaks(lung_gray, soft_gray, saturate):
    rng = np.random.default_rng(0)
    img = np.full((200, 200), float(soft_gray))
    img[40:160, 20:90] = lung_gray
    img[40:160, 110:180] = lung_gray
    img[70:100, 40:70] = lung_gray + 50  # a GGO patch
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255)
    m = jpeg_to_hu(img)
    assert m.saturated == saturate
    assert m.apply(np.array([lung_gray]))[0] == pytest.approx(LUNG_HU, abs=40)
    if not saturate:
        assert m.apply(np.array([soft_gray]))[0] == pytest.approx(SOFT_TISSUE_HU, abs=40)
    else:  # soft tissue clipped at 255: the window's top is taken as soft tissue
        assert m.apply(np.array([255.0]))[0] == pytest.approx(SOFT_TISSUE_HU, abs=1)


def test_dense_outside_lung_flag():
    """Consolidation between the lung mask and the ribs is flagged; the heart is not."""
    _z, y, x = np.mgrid[:4, :200, :200]
    hu = np.full((4, 200, 200), -1000.0)
    r = np.hypot(y - 100, x - 100)
    hu[r < 95] = 40.0  # body
    ribs = (r > 85) & (r < 90)
    # lungs fill the rib cage (they touch the chest wall, as real ones do)
    lung_r = ((y - 100) / 70.0) ** 2 + ((x - 56) / 40.0) ** 2 < 1
    lung_l = ((y - 100) / 70.0) ** 2 + ((x - 144) / 40.0) ** 2 < 1
    hu[lung_r | lung_l] = -850.0
    hu[ribs] = 700.0
    lab = np.zeros(hu.shape, np.uint8)
    lab[lung_r] = 1
    lab[lung_l] = 2
    clean = dense_outside_lung_ml(hu, lab, (1.0, 1.0, 5.0))
    # a consolidated posterior band of the right lung left out of the mask
    missed = lung_r & (y > 140)
    lab2 = lab.copy()
    lab2[missed] = 0
    hu2 = hu.copy()
    hu2[missed] = 20.0
    flagged = dense_outside_lung_ml(hu2, lab2, (1.0, 1.0, 5.0))
    missed_ml = missed.sum() * 5.0 / 1000.0
    assert clean < 0.1 * missed_ml
    assert flagged > 0.4 * missed_ml
