"""Classical lung stage: right and left lung masks that keep dense lung.

The method (details and reasons in ``docs/method.md``), on an LPS-oriented copy of the
scan and a ~2 mm working grid (block means, :mod:`lesionquant.segment._grid`); each step's
code and tuned numbers live in its own module (:mod:`._air`, :mod:`._airway`,
:mod:`._free_gas`, :mod:`._split`, :mod:`._dense`), this one runs them and decides the
surface at full resolution. Field names below are those of :class:`ClassicalLungs`:

1. **Air and body.** Blocks below ``lung_threshold_hu`` are air-like; the body is the
   largest connected soft-tissue component, filled per slice. Blocks outside the field of
   view (padding -2048/-3024) are outside.
2. **Airway.** The trachea is found in the top slices as a small, pure-gas (below
   ``gas_mean_hu``), near-midline component and grown downward at that threshold (which
   stops at the lobar bronchi, where partial volume lifts the block means); when the
   growth leaks (>250 mL) a stricter threshold is tried. When it stops at the carina (the
   walls of the main bronchi lift the block means there), the main bronchi below the gap
   are joined to it. The airway, dilated by one block within the air, is removed.
3. **Components.** The remaining air splits into 3D components. Gas (mean below
   ``gas_mean_hu``, or mostly blocks below it: outside air, trachea above the carina,
   stomach and bowel gas mixed with their contents; pure-gas pockets mostly shelled by
   soft tissue, or flat gas layers floating on soft tissue under the lung base), air
   outside the filled body (table, padding; skipped for FOV-cropped scans) and small
   components (<5 % of the largest) are dropped. Lung parenchyma has a mean near -850 HU
   even with emphysema, pure gas is near -1000 HU.
4. **Left / right.** Two large components are the two lungs by their physical x (LPS:
   patient right has the lower x). One component is split by eroding it (distance
   transform, 2-20 mm) until two large cores appear and giving every voxel to its nearest
   core; when it never splits, per-slice at the body's midline.
5. **Dense lung.** Each lung is closed with a rolling ball of ``dense.closing_mm`` and
   filled per slice (holes: vessels, consolidation inside the lung), keeping only voxels
   below ``dense.max_hu`` (no bone, no contrast vessels) that are not airway, gas,
   outside the body, in the other lung, in the mediastinum proxy (between the two
   lungs' medial edges, notch-tolerant, grown through soft tissue), in the hilum
   (within 20 mm of the main bronchi, 30 mm below the carina) or within 10 mm of
   free gas (the diaphragm and the stomach wall under the lung base). The aerated
   lung next to an addition tells consolidation from vessels and mediastinum: where
   little of it is normally aerated (diseased lung) the mediastinum proxy and the
   hilum do not veto, and an addition bordered almost only by normally aerated lung
   (a great vessel or the mediastinum bulging into healthy lung) is not added.
   Consolidation touching the pleura is a bite in the aerated lung and is filled back;
   pleural effusion lies outside the hull of the aerated lung (a crescent along the
   chest wall), which a closing does not reach.
6. **Full resolution.** Blocks are copied back; in the blocks on the lung boundary each
   voxel is decided at full resolution (air-like, or in a recovered dense block), so the
   surface follows the original voxels, not the 2 mm blocks. Near a gas pocket under the
   lung (the gastric fundus) dense voxels within a slice thickness are the pocket's
   partial volume with the stomach wall, not lung.
7. A scan without any air-filled lung raises :class:`~lesionquant.errors.NoLungError`
   (the size checks of the mask follow for every method, :mod:`lesionquant.segment._common`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lesionquant.errors import NoLungError
from lesionquant.segment._config import Config
from lesionquant.segment._grid import (
    PADDING_HU,
    bbox,
    block_factors,
    block_mean,
    block_upsample,
    within,
)
from lesionquant.segment._orient import from_lps, to_lps
from lesionquant.segment.classical._air import (
    CROSS,
    AirConfig,
    body_inside,
    lung_components,
)
from lesionquant.segment.classical._airway import AirwayConfig, airway
from lesionquant.segment.classical._dense import DenseConfig, recover_dense
from lesionquant.segment.classical._free_gas import FreeGasConfig, free_gas, gas_under_lung
from lesionquant.segment.classical._split import SplitConfig, split_sides

if TYPE_CHECKING:  # pragma: no cover
    from lesionquant.segment._settings import Settings

__all__ = ["ClassicalLungs", "lung_stage"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassicalLungs(Config):
    """Every tuned number of the classical lung stage (``Settings.classical_lungs``).

    The measured effect of each lives in ``docs/method.md``; here one line of reason.
    """

    work_spacing_mm: float = 2.0
    """Spacing of the working grid (block means) of the heavy morphology, mm."""
    lung_threshold_hu: float = -300.0
    """Blocks below this are air-like, the aerated lung seed: the top of the GGO band, so
    ground glass counts as aerated, HU."""
    gas_mean_hu: float = -950.0
    """An air component whose mean is below this is gas, not parenchyma (mean about
    -850 HU even with emphysema); also the airway-growing threshold, HU."""
    surface_hu: float = -450.0
    """Full-resolution lung surface: about the partial-volume midpoint between aerated
    parenchyma (-850 HU) and muscle/fat; -400 put the surface ~0.1 voxel outside (phantom
    lung volume +0.5 %, COPD Dice vs CIP 0.981 vs 0.982 at -450), HU."""
    lumen_margin_hu: float = 50.0
    """Full-resolution voxels below ``gas_mean_hu`` plus this near the airway or free gas
    are its lumen, not lung, HU."""
    air: AirConfig = field(default_factory=AirConfig)
    """Which air components are lung."""
    airway: AirwayConfig = field(default_factory=AirwayConfig)
    """Trachea, main bronchi and hilum."""
    free_gas: FreeGasConfig = field(default_factory=FreeGasConfig)
    """Stomach and bowel gas under the lung, its wall and its partial volume."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """Telling right from left."""
    dense: DenseConfig = field(default_factory=DenseConfig)
    """Dense-lung recovery."""

    def __post_init__(self) -> None:
        if not self.work_spacing_mm > 0:
            raise ValueError("classical_lungs.work_spacing_mm must be > 0")
        if not self.dense.closing_mm > 0:
            raise ValueError("classical_lungs.dense.closing_mm must be > 0")
        if not self.gas_mean_hu < self.lung_threshold_hu:
            raise ValueError("classical_lungs.gas_mean_hu must be below lung_threshold_hu")


def lung_stage(image: sitk.Image, settings: Settings) -> sitk.Image:
    """The classical lung stage (:class:`~lesionquant.segment.LungStage`)."""
    cfg: ClassicalLungs = settings.classical_lungs
    oriented, code = to_lps(image)
    hu = sitk.GetArrayViewFromImage(oriented)
    spacing = tuple(float(v) for v in oriented.GetSpacing()[::-1])  # (z, y, x) mm
    labels = segment_lungs_lps(hu, spacing, cfg)
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(oriented)
    return from_lps(out, code, image)


def segment_lungs_lps(hu: np.ndarray, spacing: tuple[float, float, float],
                      cfg: ClassicalLungs) -> np.ndarray:
    """Lung sides (``uint8`` 0/1/2) of an LPS-ordered HU array; NoLungError when none."""
    factors = block_factors(spacing, cfg.work_spacing_mm)
    low, fov = block_mean(hu, factors)
    low_sp = tuple(sp * f for sp, f in zip(spacing, factors, strict=True))
    labels_low, aerated_low, excluded_low, airway_low, gas_rim_low = _lungs_lowres(
        low, fov, low_sp, cfg, gas_rim_mm=spacing[0] + cfg.free_gas.rim_extra_mm)
    if not labels_low.any():
        raise NoLungError("no air-filled lung found in the scan", source="segment_lungs")
    return _refine(labels_low, aerated_low, excluded_low, airway_low, gas_rim_low, hu,
                   factors, cfg)


# ----------------------------------------------------------------------------- low res


def _lungs_lowres(
    low: np.ndarray, fov: np.ndarray, sp: tuple[float, float, float], cfg: ClassicalLungs,
    gas_rim_mm: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lung labels on the working grid, plus the aerated part, the excluded air, the
    airway and free-gas lumen blocks, and the lung blocks within ``gas_rim_mm`` of free
    gas (:func:`_refine` takes their dense voxels out)."""
    voxel_ml = float(np.prod(sp)) / 1000.0
    outside = fov < 0.5
    air = (low < cfg.lung_threshold_hu) & ~outside
    tissue = ~air & ~outside
    body_filled, inside, cropped = body_inside(tissue, ~outside, cfg.air)
    tree = airway(low, air & inside, sp, cfg.gas_mean_hu, cfg.airway)
    gas = free_gas(low, air & ~tree, sp, cfg.gas_mean_hu, cfg.free_gas)

    cand = air & ~tree & ~gas
    lab, n = ndimage.label(cand, structure=CROSS)
    if n == 0:
        empty = np.zeros(low.shape, bool)
        return np.zeros(low.shape, np.uint8), empty, empty, empty, empty
    keep = lung_components(lab, n, low, inside, voxel_ml, cfg.gas_mean_hu, cfg.air)
    lung = keep[lab]
    excluded = (air & ~lung) | outside | tree | gas
    logger.debug(
        "lungs: %d air components, kept %d (%.0f mL); cropped FOV=%s; airway %.1f mL",
        n, int(keep.sum()), lung.sum() * voxel_ml, cropped, tree.sum() * voxel_ml,
    )
    if not lung.any():
        return np.zeros(low.shape, np.uint8), lung, excluded, tree, np.zeros_like(lung)
    labels = split_sides(lab, keep, lung, body_filled, sp, cfg.split)
    labels = recover_dense(labels, low, excluded | ~inside, sp, cfg.dense, cfg.airway,
                           free_gas=gas, free_gas_wall_mm=cfg.free_gas.wall_mm, airway=tree)
    near_airway = ndimage.binary_dilation(tree, structure=CROSS,
                                          iterations=cfg.airway.lumen_blocks)
    # Full-resolution gas voxels in the lung blocks touching free gas (the gastric fundus
    # under the base) belong to that gas, like the airway lumen.
    near_airway |= ndimage.binary_dilation(gas, structure=CROSS)
    # The partial-volume rim of free gas: where a thick slice cuts the dome of the gastric
    # fundus obliquely, the gas blends with the stomach wall into an air-like ring that
    # joins the lung base (checked voxel by voxel in _refine).
    gas_rim = np.zeros_like(lung)
    if gas_rim_mm > 0:
        pockets = gas_under_lung(gas, body_filled, labels > 0, sp, cfg.free_gas)
        gas_rim = within(pockets, gas_rim_mm, sp) & (labels > 0)
    return labels, lung, excluded, near_airway, gas_rim


# ---------------------------------------------------------------------- full res


def _refine(labels_low: np.ndarray, aerated_low: np.ndarray, excluded_low: np.ndarray,
            airway_low: np.ndarray, gas_rim_low: np.ndarray, hu: np.ndarray,
            factors: tuple[int, int, int], cfg: ClassicalLungs) -> np.ndarray:
    """Full-resolution labels: blocks copied, boundary blocks decided voxel by voxel.

    In the boundary blocks a voxel is lung when it is below ``surface_hu`` (the
    partial-volume midpoint of parenchyma and soft tissue) or lies in a recovered dense
    block; gas voxels (below ``gas_mean_hu + lumen_margin_hu``) near the airway or free
    gas are its lumen, not lung; voxels at or above ``free_gas.rim_hu`` in ``gas_rim_low``
    (lung blocks within a slice thickness plus ``free_gas.rim_extra_mm`` of free gas) are
    the gas's partial volume, not lung.
    """
    lung_low = labels_low > 0
    inner = ndimage.binary_erosion(lung_low, structure=CROSS, border_value=1)
    outer = ndimage.binary_dilation(lung_low, structure=CROSS)
    band_low = outer & ~inner
    inds = ndimage.distance_transform_edt(
        ~lung_low, return_distances=False, return_indices=True
    )
    nearest_low = labels_low[tuple(inds)]
    dense_low = lung_low & ~aerated_low

    box_low = bbox(outer, [0, 0, 0])
    f = factors
    off = tuple(sl.start * fi for sl, fi in zip(box_low, f, strict=True))
    stop = tuple(min(hu.shape[i], box_low[i].stop * f[i]) for i in range(3))
    shape = tuple(b - a for a, b in zip(off, stop, strict=True))
    full = np.zeros(hu.shape, np.uint8)
    box = tuple(slice(a, b) for a, b in zip(off, stop, strict=True))
    up = lambda a: block_upsample(a, f, shape, off)  # noqa: E731
    lab = up(labels_low)
    band = up(band_low)
    sub = hu[box]
    surface = min(cfg.surface_hu, cfg.lung_threshold_hu)
    decide = (sub < surface) & (sub > PADDING_HU) & ~up(excluded_low)
    decide |= up(dense_low) & (sub < cfg.dense.max_hu)
    lab = np.where(band, np.where(decide, up(nearest_low), 0), lab).astype(np.uint8)
    lab[up(airway_low) & (sub < cfg.gas_mean_hu + cfg.lumen_margin_hu)] = 0
    if gas_rim_low.any():
        lab[up(gas_rim_low) & (sub >= cfg.free_gas.rim_hu)] = 0
    full[box] = lab
    return full
