"""Per-slice convex hulls of a 3D mask (the rib cage of the QA flag and the model's guard)."""

from __future__ import annotations

import numpy as np

__all__ = ["slice_hulls"]


def slice_hulls(mask: np.ndarray, min_count: int = 20) -> np.ndarray:
    """Convex hull of each axial slice of ``mask`` (Z, Y, X).

    Parameters
    ----------
    mask : (Z, Y, X) ndarray of bool
    min_count : int
        Slices with fewer ``True`` pixels get an empty hull.

    Returns
    -------
    ndarray of bool
        The hulls, same shape as ``mask``.
    """
    from skimage.morphology import convex_hull_image

    out = np.zeros(mask.shape, bool)
    counts = mask.sum(axis=(1, 2))
    rows = mask.any(axis=2)
    cols = mask.any(axis=1)
    for z in np.flatnonzero(counts >= min_count):  # no batched per-slice hull exists
        # the hull (pixel centres +-0.5) cannot reach a pixel centre outside the slice's
        # bounding box, so the hull of the box alone is the same and far cheaper (the
        # point-in-polygon test runs over the box only)
        r = np.flatnonzero(rows[z])
        c = np.flatnonzero(cols[z])
        box = (slice(r[0], r[-1] + 1), slice(c[0], c[-1] + 1))
        out[z][box] = convex_hull_image(mask[z][box])
    return out
