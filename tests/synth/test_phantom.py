"""make_phantom: truth equals the label map, anatomy where it belongs, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lesionquant.synth import make_phantom

from .conftest import SMALL


def _arrays(ph):
    return sitk.GetArrayFromImage(ph.image), sitk.GetArrayFromImage(ph.labels)


def test_truth_volumes_equal_label_map(diseased):
    img, lab = _arrays(diseased)
    vox_ml = np.prod(diseased.image.GetSpacing()) / 1000.0
    counts = np.bincount(lab.ravel(), minlength=6)
    assert diseased.lung_ml == pytest.approx(counts[1:5].sum() * vox_ml, abs=1e-9)
    assert diseased.ggo_ml == pytest.approx(counts[3] * vox_ml, abs=1e-9)
    assert diseased.consolidation_ml == pytest.approx(counts[4] * vox_ml, abs=1e-9)
    assert diseased.lesion_ml == pytest.approx(diseased.ggo_ml + diseased.consolidation_ml)
    assert diseased.airway_ml == pytest.approx(counts[5] * vox_ml, abs=1e-9)
    assert diseased.right_lung_ml + diseased.left_lung_ml == pytest.approx(diseased.lung_ml)
    assert diseased.lesion_pct == pytest.approx(100 * diseased.lesion_ml / diseased.lung_ml)
    assert set(np.unique(lab)) <= {0, 1, 2, 3, 4, 5}
    assert img.dtype == np.int16 and lab.dtype == np.uint8


def test_burden_and_mix_are_controlled(diseased):
    # drawn exactly on the coarse grid; nearest upsampling moves it by a fraction of a %
    assert diseased.lesion_pct == pytest.approx(12.0, abs=0.8)
    assert diseased.ggo_ml / diseased.lesion_ml == pytest.approx(0.6, abs=0.05)


def test_adult_lung_volumes_and_right_larger(healthy):
    assert 2500 < healthy.lung_ml < 6500
    assert healthy.right_lung_ml > 1.1 * healthy.left_lung_ml
    assert healthy.lesion_ml == 0.0
    assert 10 < healthy.airway_ml < 80  # trachea and main bronchi lumen


def test_right_lung_is_on_patient_right_low_x(healthy):
    """LPS: x grows towards the patient's left, so the right lung has the lower x."""
    _, lab = _arrays(healthy)
    xr = np.nonzero(lab == 1)[2].mean()
    xl = np.nonzero(lab == 2)[2].mean()
    assert xr < lab.shape[2] / 2 < xl
    right_x_mm = healthy.image.TransformContinuousIndexToPhysicalPoint((xr, 0.0, 0.0))[0]
    assert right_x_mm < 0  # patient right in LPS
    assert healthy.image.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)


def test_tissue_attenuation(healthy):
    img, lab = _arrays(healthy)
    lung = img[(lab == 1) | (lab == 2)]
    assert -880 < np.median(lung) < -780
    assert np.percentile(lung, 99) > -300  # vessels are in the lung mask and bright
    airway = img[lab == 5]
    assert np.median(airway) < -900
    # dependent gradient: posterior lung denser than anterior lung
    z, y, x = np.nonzero((lab == 1) | (lab == 2))
    vals = img[z, y, x].astype(float)
    parenchyma = vals < -600
    ant = vals[parenchyma & (y < np.percentile(y, 25))]
    post = vals[parenchyma & (y > np.percentile(y, 75))]
    assert np.median(post) - np.median(ant) > 25
    # bone, fat, padding outside the reconstruction circle
    assert img.max() > 500
    assert (img == -3024).any() and img[0, 0, 0] == -3024
    body = img[lab == 0]
    assert ((body > -150) & (body < -60)).sum() > 1000  # subcutaneous fat


def test_lesions_attenuation_and_location(diseased):
    img, lab = _arrays(diseased)
    ggo = img[lab == 3]
    cons = img[lab == 4]
    assert -720 < np.median(ggo) < -350
    assert -120 < np.median(cons) < 80
    assert np.mean((cons > -150) & (cons < 150)) > 0.7  # 6 mm slices: partial volume at edges


def test_vessels_stay_visible_through_ggo(noiseless_pair):
    """Same seed with/without lesions: GGO raises parenchyma, leaves vessels above it."""
    h, d = noiseless_pair
    hi, _ = _arrays(h)
    di, dl = _arrays(d)
    ggo = dl == 3
    vessel = ggo & (hi > -300)
    parenchyma = ggo & (hi < -750)
    assert vessel.sum() > 30 and parenchyma.sum() > 1000
    assert np.all(di[vessel] >= hi[vessel] - 1)  # never darker
    assert np.mean(di[vessel] > -300) > 0.99  # above the GGO band
    raised = di[parenchyma].astype(float) - hi[parenchyma]
    assert np.median(raised) > 150
    assert np.mean((di[parenchyma] >= -800) & (di[parenchyma] <= -250)) > 0.9
    # consolidation hides vessels: vessels and parenchyma converge to soft tissue
    cons = dl == 4
    cv, cp = cons & (hi > -300), cons & (hi < -750)
    assert np.median(hi[cv]) - np.median(hi[cp]) > 500  # visible before
    assert abs(np.median(di[cv]) - np.median(di[cp])) < 80  # hidden after
    # outside the lesions nothing changed
    outside = dl != 3
    outside &= dl != 4
    assert np.array_equal(di[outside & (dl != 0)], hi[outside & (dl != 0)]) or (
        np.mean(di[outside] == hi[outside]) > 0.99)


def test_same_seed_identical_other_seed_differs():
    kw = dict(size_xyz=(64, 64, 32), spacing_mm=(5.6, 5.6, 9.0), lesion_burden_pct=5.0)
    a = make_phantom(**kw, seed=11)
    b = make_phantom(**kw, seed=11)
    c = make_phantom(**kw, seed=12)
    assert np.array_equal(sitk.GetArrayFromImage(a.image), sitk.GetArrayFromImage(b.image))
    assert np.array_equal(sitk.GetArrayFromImage(a.labels), sitk.GetArrayFromImage(b.labels))
    assert not np.array_equal(sitk.GetArrayFromImage(a.labels), sitk.GetArrayFromImage(c.labels))
    assert a.truth() == b.truth()


def test_noise_scales_with_thickness_and_dose():
    thin = make_phantom(**SMALL, seed=0, noise_hu=None)
    kw = dict(SMALL, spacing_mm=(3.7, 3.7, 1.5))
    thinner = make_phantom(**kw, seed=0)
    low_dose = make_phantom(**SMALL, seed=0, dose_factor=0.25)
    assert thinner.noise_hu == pytest.approx(thin.noise_hu * 2.0)
    assert low_dose.noise_hu == pytest.approx(thin.noise_hu * 2.0)
    # the measured noise in a homogeneous region matches the requested level
    img = sitk.GetArrayFromImage(low_dose.image).astype(float)
    lab = sitk.GetArrayFromImage(low_dose.labels)
    ref = sitk.GetArrayFromImage(make_phantom(**SMALL, seed=0, noise_hu=0.0).image)
    resid = (img - ref)[(lab == 0) & (ref > -50) & (ref < 80)]
    assert np.std(resid) == pytest.approx(low_dose.noise_hu, rel=0.15)


def test_geometry_and_contrast_option():
    ph = make_phantom(size_xyz=(80, 70, 30), spacing_mm=(4.5, 5.0, 10.0), seed=2,
                      contrast=True, outside_fov_hu=-2048, table=False)
    assert ph.image.GetSize() == (80, 70, 30)
    assert ph.image.GetSpacing() == pytest.approx((4.5, 5.0, 10.0))
    assert ph.labels.GetSize() == ph.image.GetSize()
    img = sitk.GetArrayFromImage(ph.image)
    assert img.min() == -2048
    assert ph.params["contrast"] is True


@pytest.mark.parametrize("bad", [dict(lesion_burden_pct=-1), dict(ggo_fraction=1.5),
                                 dict(size_xyz=(0, 10, 10)), dict(patient_scale=3.0)])
def test_bad_parameters_raise_valueerror(bad):
    with pytest.raises(ValueError):
        make_phantom(**{**dict(size_xyz=(32, 32, 16)), **bad})


@pytest.mark.slow
def test_full_size_phantom():
    ph = make_phantom(seed=0, lesion_burden_pct=8.0)
    assert ph.image.GetSize() == (512, 512, 300)
    assert 3500 < ph.lung_ml < 6500
    assert ph.lesion_pct == pytest.approx(8.0, abs=0.5)
