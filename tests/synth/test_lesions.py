"""The shared lesion model: exact burden, mix, location bias, patterns, regression in place."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

from lesionquant.synth._lesions import apply_fill, make_lesions

SPACING = (3.0, 2.0, 2.0)


@pytest.fixture(scope="module")
def lungs():
    """Two ellipsoidal 'lungs' (1 right at low x, 2 left), 60 x 100 x 120 voxels."""
    z, y, x = np.ogrid[:60, :100, :120]
    lab = np.zeros((60, 100, 120), np.uint8)
    for val, cx in ((1, 32), (2, 88)):
        inside = ((z - 30) / 28.0) ** 2 + ((y - 50) / 45.0) ** 2 + ((x - cx) / 26.0) ** 2 <= 1
        lab[inside] = val
    return lab


@pytest.mark.parametrize("pct,ggo", [(1.0, 0.9), (10.0, 0.7), (40.0, 0.5)])
def test_exact_burden_and_mix(lungs, pct, ggo):
    m = make_lesions(lungs, SPACING, np.random.default_rng(0), target_lesion_pct=pct,
                     ggo_fraction=ggo)
    n_lung = (lungs > 0).sum()
    n_les = (m.classes > 0).sum()
    assert n_les == round(n_lung * pct / 100)
    assert (m.classes == 2).sum() == round(n_les * (1 - ggo))
    assert not ((m.classes > 0) & (lungs == 0)).any()
    assert m.fill.max() <= 1.0 and m.fill.min() >= 0.0
    assert not (m.fill[lungs == 0] > 0).any()


def test_bilateral_subpleural_dorsal_basal(lungs):
    dist = ndi.distance_transform_edt(lungs > 0, sampling=SPACING)
    zz, yy, _ = np.nonzero(lungs > 0)
    post, basal, near, both = [], [], [], []
    for seed in range(6):
        m = make_lesions(lungs, SPACING, np.random.default_rng(seed), target_lesion_pct=10.0)
        les = m.classes > 0
        lz, ly, _ = np.nonzero(les)
        post.append(ly.mean() - yy.mean())  # +y = posterior (LPS)
        basal.append(zz.mean() - lz.mean())  # +z = superior, so basal = lower z
        near.append(np.median(dist[les]) < np.median(dist[lungs > 0]))
        both.append(((lungs == 1) & les).sum() > 0 and ((lungs == 2) & les).sum() > 0)
    assert np.mean(post) > 0 and np.mean(basal) > 0
    assert all(near) and all(both)


def test_pattern_pct_shrinks_the_same_lesions_in_place(lungs):
    big = make_lesions(lungs, SPACING, np.random.default_rng(3), target_lesion_pct=20.0,
                       pattern_pct=20.0)
    small = make_lesions(lungs, SPACING, np.random.default_rng(3), target_lesion_pct=8.0,
                         pattern_pct=20.0)
    inside = ((small.classes > 0) & (big.classes > 0)).sum() / (small.classes > 0).sum()
    assert inside == 1.0


def test_crazy_paving_adds_reticulation(lungs):
    plain = make_lesions(lungs, SPACING, np.random.default_rng(1), target_lesion_pct=15.0)
    paved = make_lesions(lungs, SPACING, np.random.default_rng(1), target_lesion_pct=15.0,
                         crazy_paving=True)
    # the septa are thin lines: a local (high-pass) texture the plain GGO lacks
    def texture(m):
        ggo = ndi.binary_erosion(m.classes == 1, iterations=2)
        hp = m.fill - ndi.uniform_filter(m.fill, 3)
        return np.std(hp[ggo])

    assert texture(paved) > 1.5 * texture(plain)


def test_fill_model_keeps_dense_voxels():
    hu = np.array([-1000.0, -850.0, -300.0, 40.0, 300.0], np.float32)
    out = apply_fill(hu, np.full(5, 0.5, np.float32))
    assert out[0] == pytest.approx(-480.0) and out[1] == pytest.approx(-405.0)
    assert out[3] == 40.0 and out[4] == 300.0  # tissue and contrast vessels unchanged
    assert np.all(np.diff(out) > 0)  # order (vessel brighter than parenchyma) is kept
