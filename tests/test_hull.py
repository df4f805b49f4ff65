"""Per-slice convex hulls (the QA flag's rib cage and the model's rib-cage guard)."""

from __future__ import annotations

import numpy as np
from skimage.morphology import convex_hull_image

from lesionquant._hull import slice_hulls


def test_slice_hulls_equal_skimage_on_every_slice():
    """Hull of each slice's bounding box only: the same pixels as scikit-image's hull of
    the whole slice (blobs at the image edges, one-pixel and empty slices included)."""
    rng = np.random.default_rng(0)
    n = 96
    yy, xx = np.ogrid[:n, :n]
    mask = np.zeros((60, n, n), bool)
    for z in range(60):
        for _ in range(int(rng.integers(1, 5))):
            y, x = rng.integers(-10, n + 10, 2)
            r = int(rng.integers(1, 25))
            mask[z] |= ((yy - y) ** 2 + (xx - x) ** 2 <= r * r) & (rng.random((n, n)) < 0.6)
    mask[3] = False
    mask[4] = False
    mask[4, 0, n - 1] = True
    got = slice_hulls(mask, min_count=1)
    for z in range(60):
        want = convex_hull_image(mask[z]) if mask[z].any() else np.zeros((n, n), bool)
        assert (got[z] == want).all(), z
    few = slice_hulls(mask, min_count=20)
    assert not few[4].any() and (few[10] == got[10]).all()
