"""Free gas on the working grid: stomach and bowel gas, outside air, the trachea.

Free gas is not lung; its wall (the diaphragm, the stomach wall) is not dense lung; its
partial volume with that wall, on thick slices through the gastric fundus, is not lung.

Arrays are ``(z, y, x)`` in LPS index order (z grows towards the head); spacings in mm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lesionquant.segment._config import Config
from lesionquant.segment.classical._air import CROSS

__all__ = ["FreeGasConfig", "free_gas", "gas_under_lung"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FreeGasConfig(Config):
    """Free gas (``docs/method.md``, steps 3, 5 and 6)."""

    parenchyma_share: float = 0.5
    """A gas pocket is free gas when less than this share of its one-block shell is
    air-like parenchyma: the gastric bubble under a thin diaphragm touches the lung on one
    face only; a bulla is wrapped in parenchyma."""
    layer_max_mm: float = 15.0
    """A gas pocket is a flat layer (free gas floating on the fluid or food of the stomach
    or bowel) when its mean height is at most this, mm ..."""
    layer_min_ml: float = 10.0
    """... its volume at least this, mL ..."""
    layer_floor: float = 0.7
    """... and at least this share of its floor (the one or two blocks below it) is not
    air-like."""
    wall_mm: float = 10.0
    """Dense-lung additions within this of free gas are its wall and the diaphragm, not
    lung, mm."""
    pocket_min_ml: float = 10.0
    """A free-gas pocket inside the body of at least this volume, centred below the middle
    of the lungs' height, is stomach or bowel gas under the lung base, mL."""
    rim_extra_mm: float = 1.0
    """Lung voxels within one slice thickness plus this of such a pocket, mm ..."""
    rim_hu: float = -750.0
    """... at or above this are the pocket's partial volume with the stomach wall: the
    aerated lung there reads -900 to -800 HU (median), the ring of a 5 mm slice through
    the fundus -700 to -620 HU, HU."""


def free_gas(low: np.ndarray, air: np.ndarray, sp: tuple[float, float, float],
             gas_mean_hu: float, cfg: FreeGasConfig) -> np.ndarray:
    """Pure-gas pockets that are not surrounded by lung parenchyma.

    A gas component (blocks below ``gas_mean_hu``) whose one-block shell is mostly soft
    tissue is stomach or bowel gas, trachea or outside air, even where partial volume
    through a thin diaphragm joins it to the lung; an emphysematous bulla or a bronchus
    inside the lung is wrapped in parenchyma and stays. Flat gas layers on soft tissue
    (:func:`_gas_layers`) are free gas too.
    """
    gas = air & (low < gas_mean_hu)
    lab, n = ndimage.label(gas, structure=CROSS)
    if n == 0:
        return gas
    grown = ndimage.grey_dilation(lab, footprint=CROSS)
    shell = (grown > 0) & ~gas
    paren = shell & air
    n_shell = np.bincount(grown[shell], minlength=n + 1)
    n_paren = np.bincount(grown[paren], minlength=n + 1)
    free = n_paren < cfg.parenchyma_share * n_shell
    free |= _gas_layers(lab, n, gas, air, sp, cfg)
    free[0] = False
    return free[lab]


def _gas_layers(lab: np.ndarray, n: int, gas: np.ndarray, air: np.ndarray,
                sp: tuple[float, float, float], cfg: FreeGasConfig) -> np.ndarray:
    """Per gas component: True for a flat gas layer lying on soft tissue.

    Gas rises onto the fluid or food of the stomach and bowel, which leaves a flat pocket
    with a soft-tissue floor; where the diaphragm is thinner than a working-grid block the
    pocket's roof touches the lung base and :func:`free_gas`'s shell test counts it as
    wrapped in lung. An emphysematous bulla is round and its floor is mostly parenchyma.
    """
    # z grows towards the head, so the floor of a pocket is at z - 1.
    floor = np.zeros(gas.shape, bool)
    floor[:-1] = gas[1:] & ~gas[:-1]
    floor_lab = np.zeros(lab.shape, lab.dtype)
    floor_lab[:-1] = lab[1:]
    floor_lab[~floor] = 0
    n_floor = np.bincount(floor_lab.ravel(), minlength=n + 1).astype(np.float64)
    # Partial volume makes the block at a gas-fluid level air-like: the floor is soft
    # tissue when the block below the pocket or the one under it is not air-like.
    solid = ~air
    solid[1:] |= ~air[:-1]
    n_tissue = np.bincount(floor_lab[floor & solid], minlength=n + 1)
    count = np.bincount(lab.ravel(), minlength=n + 1)
    height_mm = count / np.maximum(n_floor, 1) * sp[0]
    layer = (
        (count * float(np.prod(sp)) / 1000.0 >= cfg.layer_min_ml)
        & (n_tissue >= cfg.layer_floor * np.maximum(n_floor, 1))
        & (height_mm <= cfg.layer_max_mm)
    )
    if layer[1:].any():
        logger.debug("lungs: %d flat gas layer(s) under the lung dropped", int(layer[1:].sum()))
    return layer


def gas_under_lung(free: np.ndarray, body: np.ndarray, lung: np.ndarray,
                   sp: tuple[float, float, float], cfg: FreeGasConfig) -> np.ndarray:
    """The free-gas pockets under the lung base (all False when there are none): inside
    the body, at least :attr:`~FreeGasConfig.pocket_min_ml`, centred below the middle of
    the lungs' height (not a bronchus cut off the airway tree, nor oesophageal air, nor the
    air around the body)."""
    gas = free & body
    if not gas.any() or not lung.any():
        return np.zeros(gas.shape, bool)
    lab, n = ndimage.label(gas, structure=CROSS)
    count = np.bincount(lab.ravel(), minlength=n + 1)
    big = np.flatnonzero(count * float(np.prod(sp)) / 1000.0 >= cfg.pocket_min_ml)
    big = big[big > 0]
    keep = np.zeros(n + 1, bool)
    if big.size:
        zs = np.flatnonzero(lung.any(axis=(1, 2)))
        # z grows towards the head, so "below" is the lower index.
        z_centre = np.array([c[0] for c in ndimage.center_of_mass(gas, lab, big)])
        keep[big[z_centre < 0.5 * (zs[0] + zs[-1])]] = True
    return keep[lab]
