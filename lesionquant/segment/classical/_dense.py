"""Dense-lung recovery on the working grid: consolidation, atelectasis and dependent
density brought back into each lung, without the mediastinum, the hila, great vessels,
the diaphragm or abdominal organs (``docs/method.md``, step 5).

Arrays are ``(z, y, x)`` in LPS index order; spacings in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lesionquant.segment._config import Config
from lesionquant.segment._grid import bbox, within, within_inplane
from lesionquant.segment.classical._aeration import between_lungs, normal_level, normal_share
from lesionquant.segment.classical._air import INPLANE
from lesionquant.segment.classical._airway import AirwayConfig, hilum
from lesionquant.segment.labels import Label

__all__ = ["DenseConfig", "recover_dense"]


@dataclass(frozen=True)
class DenseConfig(Config):
    """Which dense tissue next to the aerated lung is lung."""

    closing_mm: float = 20.0
    """Radius of the rolling-ball closing that brings dense lung (consolidation touching
    the pleura, dependent atelectasis) back into the lung mask, mm."""
    max_hu: float = 150.0
    """Recovered voxels are below this (bone, contrast vessels are not lung), HU."""
    max_hole_cm2: float = 10.0
    """Largest in-plane hole of a lung filled back as lung (larger: abdominal organs ringed
    by the lung bases around the diaphragm dome), cm^2."""
    medial_notch_mm: float = 15.0
    """The medial lung edge of a row is the most medial edge within this along y: a dense
    bite in the medial lung (paravertebral consolidation) is not mediastinum, mm."""
    mediastinum_grow_mm: float = 14.0
    """The mediastinum proxy grows this far (in-plane, through soft tissue) into the
    lung's medial concavities (aorta, hilar vessels), mm."""
    neighbourhood_mm: float = 16.0
    """Width of the box whose aerated lung tells consolidation from vessels, mm."""
    normal_offset_hu: float = 60.0
    """Normally aerated: below the lung's own 10th HU percentile plus this (about -795 HU
    on the phantoms and the aorta crop), HU ..."""
    normal_min_hu: float = -850.0
    """... and always below at least this, HU: with emphysema the 10th percentile is
    emphysema (the COPD scan: -960 HU)."""
    diseased_normal_fraction: float = 0.3
    """Diseased neighbourhood: less than this share of its aerated lung is normal (the
    mediastinum and hilum vetoes are lifted there)."""
    healthy_normal_fraction: float = 0.55
    """Healthy neighbourhood: more than this share is normal (an addition there, near the
    mediastinum, is a great vessel bulging into healthy lung; 0.6 left the hilar vessels
    of a healthy 5 mm phantom in)."""
    healthy_veto_mm: float = 50.0
    """The healthy veto applies within this (in-plane) of the tissue between the lungs,
    where the great vessels are; a pleural-based consolidation stays lung, mm."""
    pv_erosion_mm: float = 2.0
    """For the healthy test the aerated lung is eroded by this (its partial-volume edge
    against the addition is not normal lung); the diseased test always erodes one block,
    mm."""


def recover_dense(labels: np.ndarray, low: np.ndarray, forbidden: np.ndarray,
                  sp: tuple[float, float, float], cfg: DenseConfig,
                  airway_cfg: AirwayConfig, free_gas: np.ndarray | None = None,
                  free_gas_wall_mm: float = 0.0, airway: np.ndarray | None = None
                  ) -> np.ndarray:
    """Bring dense lung (consolidation, dependent density) back into each lung.

    Each lung is closed with a ball of :attr:`~DenseConfig.closing_mm` (bites of dense
    lung narrower than about twice that, e.g. consolidation against the pleura, are
    filled) and its in-plane holes (vessels, consolidation cores surrounded by aerated
    lung or GGO) are filled whatever their density. Closing additions must be below
    :attr:`~DenseConfig.max_hu`; nothing is taken from the other lung, ``forbidden``
    (airway, gas, outside the body), within ``free_gas_wall_mm`` of ``free_gas`` (its
    wall and the diaphragm), or where
    the aerated lung around is healthy near the mediastinum; the mediastinum proxy and
    the hilum are taken only where the aerated lung around is diseased.
    """
    dense = (low < cfg.max_hu) & ~forbidden
    mediastinum = between_lungs(labels, round(cfg.medial_notch_mm / sp[1]))
    between = mediastinum
    n_grow = round(cfg.mediastinum_grow_mm / sp[1])
    if n_grow > 0 and between.any():
        between = ndimage.binary_dilation(between, structure=INPLANE, iterations=n_grow,
                                          mask=dense | between)
    # What borders an addition: diseased lung (consolidation grows out of it) lifts the
    # mediastinum and hilum vetoes; normally aerated lung all around, near the
    # mediastinum, marks a great vessel or the mediastinum bulging into healthy lung.
    # NaN (no aerated lung near) decides nothing.
    normal = _normal_fraction(labels, low, sp, 1, cfg)
    diseased = normal < cfg.diseased_normal_fraction
    erode = round(cfg.pv_erosion_mm / min(sp[1:]))
    if erode != 1:
        normal = _normal_fraction(labels, low, sp, erode, cfg)
    healthy = normal > cfg.healthy_normal_fraction
    if healthy.any():
        healthy &= within_inplane(mediastinum, cfg.healthy_veto_mm, sp)
    allowed = dense & ~(between & ~diseased) & ~healthy
    if free_gas is not None and free_gas.any():
        # The diaphragm and the stomach or bowel wall between the lung base and free gas
        # are a thin soft-tissue layer that the closing would fill as a bite of the lung.
        allowed &= ~within(free_gas, free_gas_wall_mm, sp)
    if airway is not None and airway.any():
        box, near = hilum(airway, sp, airway_cfg)
        allowed[box] &= ~(near & ~diseased[box])
    out = labels.copy()
    r = cfg.closing_mm
    pad = [int(np.ceil(r / v)) + 2 for v in sp]
    for value, other in ((Label.RIGHT_LUNG, Label.LEFT_LUNG),
                         (Label.LEFT_LUNG, Label.RIGHT_LUNG)):
        m = labels == value
        if not m.any():
            continue
        box = bbox(m, pad)
        sub = m[box]
        add = _closing(sub, r, sp) & allowed[box]
        holes = ndimage.binary_fill_holes(sub | add, structure=INPLANE) & ~sub & ~add
        add |= _small_holes(holes, sp, cfg) & ~forbidden[box]
        add &= (out[box] == 0) & (labels[box] != other)
        out[box][add] = value
    return out


def _normal_fraction(labels: np.ndarray, low: np.ndarray, sp: tuple[float, float, float],
                     erode: int, cfg: DenseConfig) -> np.ndarray:
    """Share of the aerated lung within :attr:`~DenseConfig.neighbourhood_mm` (a 3D box)
    that is normally aerated; the aerated lung is eroded by ``erode`` blocks against
    partial volume; NaN where none of it is in the box (single slices erode to nothing)."""
    aerated = labels > 0
    inner = ndimage.binary_erosion(aerated, iterations=erode) if erode > 0 else aerated
    size = tuple(max(3, 2 * int(cfg.neighbourhood_mm / (2.0 * v)) + 1) for v in sp)
    level = normal_level(low[aerated], cfg.normal_offset_hu, cfg.normal_min_hu)
    num, den = normal_share(low, inner, level, size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0.01, num / den, np.nan)


def _closing(mask: np.ndarray, radius_mm: float, sp: tuple[float, float, float]) -> np.ndarray:
    """Binary closing with a ball of ``radius_mm`` (distance transforms; edges replicated)."""
    pad = [int(np.ceil(radius_mm / v)) + 1 for v in sp]
    # The lung continues beyond the first and last slice (edge replicated in z); in-plane
    # the image border is not lung (zero padding), so a cropped FOV is not closed onto it.
    m = np.pad(mask, [(pad[0], pad[0]), (0, 0), (0, 0)], mode="edge")
    m = np.pad(m, [(0, 0), (pad[1], pad[1]), (pad[2], pad[2])])
    dil = ndimage.distance_transform_edt(~m, sampling=sp) <= radius_mm
    closed = ndimage.distance_transform_edt(dil, sampling=sp) > radius_mm
    return closed[pad[0]:-pad[0], pad[1]:-pad[1], pad[2]:-pad[2]] | mask


def _small_holes(holes: np.ndarray, sp: tuple[float, float, float],
                 cfg: DenseConfig) -> np.ndarray:
    """In-plane holes up to :attr:`~DenseConfig.max_hole_cm2` (vessels, consolidation
    cores); larger ones are abdominal organs ringed by the lung bases."""
    lab, n = ndimage.label(holes, structure=INPLANE)
    if n == 0:
        return holes
    area_cm2 = np.bincount(lab.ravel(), minlength=n + 1) * sp[1] * sp[2] / 100.0
    small = area_cm2 <= cfg.max_hole_cm2
    small[0] = False
    return small[lab]
