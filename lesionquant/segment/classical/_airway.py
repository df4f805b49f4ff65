"""Airway and hilum on the working grid: the trachea and main bronchi (removed from the
lung) and the hilum around them (soft tissue the dense-lung recovery must not add).

Arrays are ``(z, y, x)`` in LPS index order (z grows towards the head); spacings in mm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lesionquant.segment._config import Config
from lesionquant.segment._grid import bbox, pad_voxels
from lesionquant.segment.classical._air import CROSS, INPLANE

__all__ = ["AirwayConfig", "airway", "carina", "hilum"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AirwayConfig(Config):
    """The trachea and main bronchi (``docs/method.md``, step 2) and the hilum (step 5)."""

    threshold_steps_hu: tuple[float, ...] = (0.0, -25.0, -40.0)
    """Airway growing thresholds relative to ``gas_mean_hu``, tried in turn while the
    growth leaks into the lung, HU."""
    max_ml: float = 250.0
    """An airway grown beyond this is leaking into the lung, mL."""
    min_ml: float = 1.0
    """Smallest gas component that can be the trachea, mL."""
    top_reach_mm: float = 20.0
    """The trachea enters from above: its component reaches within this of the top of the
    air (and at least :attr:`top_reach_min_blocks`), mm."""
    top_reach_min_blocks: int = 2
    """Least reach of :attr:`top_reach_mm`, working-grid blocks."""
    top_area_cm2: tuple[float, float] = (0.3, 8.0)
    """Cross-section of the trachea in its top slice, cm^2."""
    max_offcentre: float = 0.2
    """The trachea's centre is within this share of the image width of its middle."""
    trachea_max_width_mm: float = 35.0
    """The grown tree is the trachea alone (bronchi to bridge) when its in-plane extent is
    at most this, mm."""
    bronchus_gap_mm: float = 10.0
    """When the gas threshold stops the airway at the carina (the walls of the main
    bronchi lift the block means), gas pieces within this of the tree's lower end are
    joined to it, mm."""
    bronchus_max_ml: float = 30.0
    """Each joined piece is at most this, mL (main and lobar bronchi, not lung)."""
    bronchus_midline_mm: float = 60.0
    """Each joined piece is centred within this of the trachea, mm."""
    bronchus_tips_mm: float = 10.0
    """The tree's lower end: its lowest this, mm (at least one block)."""
    bridge_rounds: int = 2
    """Rounds of joining (main, then lobar bronchi)."""
    lumen_blocks: int = 2
    """Full-resolution gas voxels within this many blocks of the airway are its lumen."""
    hilum_mm: float = 20.0
    """The hilum: soft tissue within this of the main bronchi is not added as dense lung
    (unless the lung around is diseased), mm."""
    hilum_airway_mm: float = 30.0
    """The main bronchi: the tree's this below the carina, mm."""


def airway(low: np.ndarray, air: np.ndarray, sp: tuple[float, float, float],
           gas_mean_hu: float, cfg: AirwayConfig) -> np.ndarray:
    """Trachea and main bronchi on the working grid (empty when not found).

    The trachea is a small, pure-gas (below ``gas_mean_hu``), near-midline component
    reaching the top of the air, grown downward at that threshold; when the growth leaks
    (> :attr:`AirwayConfig.max_ml`) a stricter threshold is tried. The result, dilated by
    one block within the air, is removed from the lung.
    """
    voxel_ml = float(np.prod(sp)) / 1000.0
    px_cm2 = sp[1] * sp[2] / 100.0
    zs = np.flatnonzero(air.any(axis=(1, 2)))
    if zs.size == 0:
        return np.zeros(low.shape, bool)
    area_lo, area_hi = cfg.top_area_cm2
    for step in cfg.threshold_steps_hu:
        thr = gas_mean_hu + step
        gas = air & (low < thr)
        lab, n = ndimage.label(gas, structure=CROSS)
        if n == 0:
            break
        objs = ndimage.find_objects(lab)
        count = np.bincount(lab.ravel(), minlength=n + 1)
        best, best_count = 0, 0
        x_mid = 0.5 * low.shape[2]
        for i, sl in enumerate(objs, start=1):
            if sl is None or count[i] * voxel_ml < cfg.min_ml:
                continue
            top = sl[0].stop - 1
            if top < zs[-1] - max(cfg.top_reach_min_blocks, round(cfg.top_reach_mm / sp[0])):
                continue  # must reach the top of the air (the trachea enters from above)
            area_top = np.count_nonzero(lab[top][sl[1], sl[2]] == i) * px_cm2
            cx = 0.5 * (sl[2].start + sl[2].stop)
            if (not (area_lo <= area_top <= area_hi)
                    or abs(cx - x_mid) > cfg.max_offcentre * low.shape[2]):
                continue
            if count[i] > best_count:
                best, best_count = i, count[i]
        if best == 0:
            return np.zeros(low.shape, bool)
        if best_count * voxel_ml <= cfg.max_ml:
            tree = _bridge_bronchi(lab == best, lab, count, sp, cfg)
            return ndimage.binary_dilation(tree, structure=CROSS) & air
        logger.debug("airway at %g HU leaks (%.0f mL); trying stricter", thr,
                     best_count * voxel_ml)
    logger.warning("airway could not be separated from the lung; it stays in the lung mask")
    return np.zeros(low.shape, bool)


def _bridge_bronchi(tree: np.ndarray, lab: np.ndarray, count: np.ndarray,
                    sp: tuple[float, float, float], cfg: AirwayConfig) -> np.ndarray:
    """Join the main bronchi that the gas threshold cut off the trachea.

    Only when the grown tree is the trachea alone (in-plane extent at most
    :attr:`~AirwayConfig.trachea_max_width_mm`): gas components of ``lab`` within
    :attr:`~AirwayConfig.bronchus_gap_mm` of the tree's lower end, below its top, small
    and near the midline join it. A tree that already branches is left as it is.
    """
    xs_tree = np.flatnonzero(tree.any(axis=(0, 1)))
    ys_tree = np.flatnonzero(tree.any(axis=(0, 2)))
    width = max(np.ptp(xs_tree) * sp[2], np.ptp(ys_tree) * sp[1])
    if width > cfg.trachea_max_width_mm:
        return tree
    voxel_ml = float(np.prod(sp)) / 1000.0
    top = int(np.flatnonzero(tree.any(axis=(1, 2)))[-1])
    x_mid = float(np.mean(xs_tree))
    objs = ndimage.find_objects(lab)
    pad = pad_voxels(cfg.bronchus_gap_mm, sp)
    for _ in range(cfg.bridge_rounds):
        tips = tree.copy()
        bottom = int(np.flatnonzero(tree.any(axis=(1, 2)))[0])
        tips[bottom + max(1, round(cfg.bronchus_tips_mm / sp[0])):] = False
        box = bbox(tips, pad)  # the distance map only around the tips
        near = ndimage.distance_transform_edt(~tips[box], sampling=sp) <= cfg.bronchus_gap_mm
        ids = np.unique(lab[box][near & ~tree[box]])
        ids = ids[ids > 0]
        keep = []
        for i in ids[count[ids] * voxel_ml <= cfg.bronchus_max_ml]:
            sl = objs[i - 1]
            cx = 0.5 * (sl[2].start + sl[2].stop - 1)
            if sl[0].stop - 1 < top and abs(cx - x_mid) * sp[2] <= cfg.bronchus_midline_mm:
                keep.append(i)
        if not keep:
            break
        tree = tree | np.isin(lab, keep)
    return tree


def hilum(tree: np.ndarray, sp: tuple[float, float, float], cfg: AirwayConfig
          ) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """The hilum around the main bronchi: a box and its mask.

    The pulmonary arteries and veins enter the lung beside the main bronchi, where the
    lung wraps around them: a closing fills them like a bite of consolidated lung, and
    without contrast they have its density (the normal COPD scan: 0.1 % of its lung read
    as consolidation, all at the hila). Soft tissue within
    :attr:`~AirwayConfig.hilum_mm` of the tree's :attr:`~AirwayConfig.hilum_airway_mm`
    below the carina (:func:`carina`; the lowest that much when the tree never splits).
    Lobar and segmental bronchi further down are inside the lung and do not count.
    Computed in a box around that part of the tree.
    """
    top = carina(tree)
    if top is None:  # no split found: the tree is the trachea and main bronchi at most
        top = int(np.flatnonzero(tree.any(axis=(1, 2)))[0]) + round(cfg.hilum_airway_mm / sp[0])
    tips = tree.copy()
    tips[top + 1:] = False
    tips[:max(0, top - round(cfg.hilum_airway_mm / sp[0]))] = False
    box = bbox(tips, pad_voxels(cfg.hilum_mm, sp))
    near = ndimage.distance_transform_edt(~tips[box], sampling=sp) <= cfg.hilum_mm
    return box, near


def carina(tree: np.ndarray) -> int | None:
    """Slice index (z grows towards the head) of the carina: the highest slice where the
    airway tree is two separate pieces in-plane; None when it never splits."""
    zs = np.flatnonzero(tree.any(axis=(1, 2)))
    for z in zs[::-1]:
        if ndimage.label(tree[z], structure=INPLANE[1])[1] >= 2:
            return int(z)
    return None
