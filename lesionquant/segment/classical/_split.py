"""Left / right: the lung components labelled as right (1) and left (2) lung.

Arrays are ``(z, y, x)`` in LPS index order (x grows towards the patient's left).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lesionquant.segment._config import Config
from lesionquant.segment.classical._air import CROSS
from lesionquant.segment.labels import Label

__all__ = ["SplitConfig", "split_sides"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitConfig(Config):
    """Telling the two lungs apart (``docs/method.md``, step 4)."""

    second_lung_ratio: float = 0.2
    """Two components (or eroded cores) are the two lungs when the second is at least this
    share of the first; else one joined component is split by erosion."""
    erosion_depths_mm: tuple[float, ...] = (2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 20.0)
    """Erosion depths tried in turn until a joined lung falls into two cores, mm."""


def split_sides(lab: np.ndarray, keep: np.ndarray, lung: np.ndarray, body: np.ndarray,
                sp: tuple[float, float, float], cfg: SplitConfig) -> np.ndarray:
    """Label ``lung`` as 1 right / 2 left.

    Two large components are the two lungs by their physical x. One component is split by
    eroding it until two large cores appear, every voxel going to its nearest core; when
    it never splits, per slice at the body's midline.
    """
    x = np.arange(lung.shape[2], dtype=np.float64)
    ids = np.flatnonzero(keep)
    count = np.bincount(lab.ravel(), minlength=keep.size)[ids]
    order = ids[np.argsort(count)[::-1]]
    labels = np.zeros(lung.shape, np.uint8)
    ranked = np.sort(count)[::-1]
    if len(order) >= 2 and ranked[1] >= cfg.second_lung_ratio * ranked[0]:
        cores: list[np.ndarray] | None = [lab == order[0], lab == order[1]]
    else:
        cores = _erosion_cores(lung, sp, cfg)
    if cores is not None:
        xa, xb = (float((c.sum(axis=(0, 1)) * x).sum() / c.sum()) for c in cores)
        right_core, left_core = (cores[0], cores[1]) if xa < xb else (cores[1], cores[0])
        seeds = np.zeros(lung.shape, np.uint8)
        seeds[right_core] = Label.RIGHT_LUNG
        seeds[left_core] = Label.LEFT_LUNG
        inds = ndimage.distance_transform_edt(
            seeds == 0, sampling=sp, return_distances=False, return_indices=True
        )
        nearest = seeds[tuple(inds)]
        labels[lung] = nearest[lung]
        return labels
    # Fall back: per slice at the body's midline (x centre of the filled body).
    bx = body.sum(axis=1)  # (z, x)
    w = bx.sum(axis=1)
    mid = np.where(w > 0, (bx * x).sum(axis=1) / np.maximum(w, 1), 0.5 * lung.shape[2])
    left_side = x[None, None, :] >= mid[:, None, None]
    labels[lung] = np.where(np.broadcast_to(left_side, lung.shape),
                            Label.LEFT_LUNG, Label.RIGHT_LUNG)[lung]
    if not (labels == Label.LEFT_LUNG).any() or not (labels == Label.RIGHT_LUNG).any():
        logger.info("lungs: only one lung side found")
    return labels


def _erosion_cores(lung: np.ndarray, sp: tuple[float, float, float],
                   cfg: SplitConfig) -> list[np.ndarray] | None:
    """Erode a joined lung mask until it falls into two large parts (or give up)."""
    depth = ndimage.distance_transform_edt(lung, sampling=sp)
    for d in cfg.erosion_depths_mm:
        core = depth > d
        lab, n = ndimage.label(core, structure=CROSS)
        if n < 2:
            if n == 0:
                break
            continue
        count = np.bincount(lab.ravel())
        count[0] = 0
        first, second = np.argsort(count)[::-1][:2]
        if count[second] >= cfg.second_lung_ratio * count[first]:
            logger.debug("lungs: joined lungs split by erosion at %g mm", d)
            return [lab == first, lab == second]
    return None
