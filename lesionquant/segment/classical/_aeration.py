"""Two ideas both classical stages use, written once.

* **Normally aerated share** (:func:`normal_level`, :func:`normal_share`): the share of the
  lung in a box around each voxel that is normally aerated, i.e. below a level set relative
  to the lung's own 10th HU percentile. High around a vessel or the mediastinum in healthy
  lung, low in diseased lung. The lung stage uses it (3D box) to tell consolidation from
  vessels next to an addition of the closing; the lesion stage (in-plane box) to find the
  aerated hilar context of thick slices.
* **Between the lungs** (:func:`between_lungs`, :func:`tissue_between`): the tissue
  between the right lung (low x in LPS) and the left lung in an image row, the proxy of the
  mediastinum and hila.

Arrays are ``(z, y, x)`` in LPS index order; spacings ``(z, y, x)`` in mm.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lesionquant.segment.labels import Label

__all__ = ["between_lungs", "normal_level", "normal_share", "tissue_between"]


def normal_level(lung_hu: np.ndarray, offset_hu: float, floor_hu: float,
                 relative_below_hu: float = np.inf) -> float:
    """HU below which lung is normally aerated.

    ``max(p10 + offset_hu, floor_hu)`` with ``p10`` the 10th percentile of ``lung_hu``
    (the lung's own normal parenchyma: dose, kernel and inspiration move it) when ``p10``
    is below ``relative_below_hu``; else ``floor_hu``.
    """
    p10 = float(np.percentile(lung_hu, 10)) if lung_hu.size else 0.0
    return max(p10 + offset_hu, floor_hu) if p10 < relative_below_hu else floor_hu


def normal_share(hu: np.ndarray, lung: np.ndarray, level_hu: float,
                 size: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Box means of the normally aerated lung and of the lung.

    Returns ``(normal, lung)``: the fraction of each ``size`` box that is lung below
    ``level_hu``, and that is lung (``float32``; their ratio is the normally aerated share
    of the lung in the box, each caller decides where the box holds too little lung).
    """
    normal = ndimage.uniform_filter((lung & (hu < level_hu)).astype(np.float32), size)
    den = ndimage.uniform_filter(lung.astype(np.float32), size)
    return normal, den


def between_lungs(labels: np.ndarray, notch_px: int) -> np.ndarray:
    """The mediastinum proxy: in each image row (z, y), the voxels strictly between the
    right lung's most medial voxel and the left lung's (rows holding both lungs).

    The medial edges are taken as the most medial within ``notch_px`` rows along y (a
    ``2 notch_px + 1`` window): a dense bite in the medial lung (paravertebral
    consolidation) is not mediastinum.
    """
    x = np.arange(labels.shape[2])
    right, left = labels == Label.RIGHT_LUNG, labels == Label.LEFT_LUNG
    has_r, has_l = right.any(axis=2), left.any(axis=2)
    size = 2 * notch_px + 1
    r_max = ndimage.maximum_filter1d(np.where(right, x, -1).max(axis=2), size, axis=1)
    l_min = ndimage.minimum_filter1d(
        np.where(left, x, labels.shape[2]).min(axis=2), size, axis=1)
    r_max = np.where(has_r, r_max, -1)
    l_min = np.where(has_l, l_min, -1)
    both = (r_max >= 0) & (l_min >= 0) & (l_min > r_max)
    xx = x[None, None, :]
    return both[..., None] & (xx > r_max[..., None]) & (xx < l_min[..., None])


def tissue_between(sides: np.ndarray) -> np.ndarray:
    """Every non-lung voxel of a row with right lung somewhere on its low-x side and left
    lung on its high-x side.

    Unlike :func:`between_lungs` (only between the two most medial lung voxels) this
    includes tissue between pieces of one lung in a row, the hilum of a single slice.
    """
    lung = sides > 0
    right = np.maximum.accumulate(sides == Label.RIGHT_LUNG, axis=2)
    left = np.maximum.accumulate((sides == Label.LEFT_LUNG)[:, :, ::-1], axis=2)[:, :, ::-1]
    return ~lung & right & left
