"""Classical lesion stage: GGO and consolidation inside the lungs.

Inside the lung mask (labels 1-2 from :func:`~lesionquant.segment.segment_lungs`), each
voxel's HU is compared with the density bands of :class:`~lesionquant.settings.Settings`
(GGO ``[-750, -300)``, consolidation ``[-300, 150)`` by default). What is *not* a lesion
although its density falls into a band, and how it is removed (``docs/method.md``; the
filters and their numbers in :mod:`._filters`, the scan regimes in :mod:`._regimes`, field
names those of :class:`~._filters.FilterConfig` and :class:`~._regimes.RegimeConfig`):

* **Thin structures** (small vessels, fissures, airway walls, the partial-volume halo of
  vessels): a white top-hat marks structures brighter than their surroundings and
  narrower than ``tophat_mm`` (on voxels up to ``core_max_voxel_mm``, ground-glass
  density counts only within ``core_halo_mm`` of a dense core: a small ground-glass
  focus is not a vessel halo), and a box opening of half-width ``opening_mm``
  removes every candidate structure thinner than about twice that; lesions are blob- or
  sheet-like and thicker.
* **Larger vessels** (dense and tubular): a Hessian vesselness (Frangi-type objectness
  for bright lines, at the scales ``vessel_sigma_mm``) above ``vessel_threshold`` marks
  tubes; dense voxels on tubes and the GGO halo around them are removed. Consolidation is
  blob or sheet shaped and scores low.
* **Partial-volume rim** at the lung surface (the pleura, the mediastinum, recovered dense
  lung edges): candidates in the outer ``rim_mm`` of the lung are kept only where the
  lesion continues inward (reconstruction from the inner lung).
* **Normal dependent density**: the anterior-to-posterior HU gradient of normal
  parenchyma (fitted on voxels below -600 HU) is subtracted, up to
  ``dependent_correction_max_hu``, before the GGO threshold.
* **Single thick slices** (fewer than ``few_slices`` slices, each at least
  ``thick_slice_mm`` thick): in the hilar zone of
  aerated lung, a 2D ridge filter marks vessels and bronchial walls, their wide
  partial-volume halo is left out of the background, and the background must be clearly
  denser than the GGO threshold.
* **Thick slices in 3D** (slices of ``thick3d_slice_mm`` or more, pixels up to
  ``thick3d_pixel_mm``): the same 2D ridge filter marks the smeared oblique vessels in
  aerated lung, and a ``thick3d_halo_mm`` halo around them is left out of the background.
* **Coarse pixels** (in-plane above ``coarse_pixel_mm``): the 3-voxel boxes of the
  top-hat and the opening would remove every lesion narrower than about 12 mm; dense
  tissue is thin, and the opening applies, only in the hilar zone (vessel trunks).
* **Emphysema** is below the GGO band (< -950 HU) and is never a lesion.
* **Small specks**: connected lesions below ``min_lesion_volume_ml`` are dropped (for
  every method, :mod:`lesionquant.segment._common`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lesionquant.segment._common import split_by_hu
from lesionquant.segment._config import Config
from lesionquant.segment._contract import LesionOutput
from lesionquant.segment._grid import bbox, half_width, window
from lesionquant.segment._orient import from_lps, to_lps
from lesionquant.segment.classical._filters import (
    FilterConfig,
    box,
    dependent_correction,
    grey_opening,
    grow,
    open_mask,
    vessels,
)
from lesionquant.segment.classical._regimes import (
    RegimeConfig,
    dark_fraction,
    hilar_zone,
    regime,
    ridges_2d,
)

if TYPE_CHECKING:  # pragma: no cover
    from lesionquant.segment._settings import Settings

__all__ = ["ClassicalLesions", "lesion_stage"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassicalLesions(Config):
    """Every tuned number of the classical lesion stage (``Settings.classical_lesions``).

    The density bands and the minimum lesion size are the method-independent
    ``Settings.ggo_hu``, ``consolidation_hu`` and ``min_lesion_volume_ml``.
    """

    filters: FilterConfig = field(default_factory=FilterConfig)
    """What has a lesion's density but is not a lesion."""
    regimes: RegimeConfig = field(default_factory=RegimeConfig)
    """Single thick slices, thick 3D slices, coarse pixels."""


def lesion_stage(image: sitk.Image, lungs: sitk.Image, settings: Settings) -> LesionOutput:
    """The classical lesion stage (:class:`~lesionquant.segment.LesionStage`).

    The lesion mask, and the class map that reads a vessel inside a lesion by its
    background density (the voxel's own density everywhere else).
    """
    cfg: ClassicalLesions = settings.classical_lesions
    oriented, code = to_lps(image)
    lung_img, _ = to_lps(lungs)
    hu = sitk.GetArrayViewFromImage(oriented)
    sides = sitk.GetArrayViewFromImage(lung_img)
    spacing = tuple(float(v) for v in oriented.GetSpacing()[::-1])
    mask = np.zeros(hu.shape, np.uint8)
    classes = np.zeros(hu.shape, np.uint8)
    lung = sides > 0
    if lung.any():
        # The box holds a rim of non-lung around the lung wherever the scan goes on: the
        # box filters replicate the box's faces ("nearest"), which would read the apex
        # and base slices of the lung as lung continuing beyond them (no rim there).
        b = bbox(lung, half_width(cfg.filters.rim_mm, spacing))
        cand, cls_hu = _lesions(hu[b].astype(np.float32), sides[b], spacing, settings, cfg)
        mask[b] = cand
        classes[b] = split_by_hu(cand, cls_hu, settings)
    out = []
    for arr in (mask, classes):
        img = sitk.GetImageFromArray(arr)
        img.CopyInformation(oriented)
        out.append(from_lps(img, code, image))
    return LesionOutput(mask=out[0], classes=out[1])


def _lesions(hu: np.ndarray, sides: np.ndarray, spacing: tuple[float, ...], s: Settings,
             cfg: ClassicalLesions) -> tuple[np.ndarray, np.ndarray]:
    """Lesion candidates in a box, and the density each is classed by."""
    f, r = cfg.filters, cfg.regimes
    lung = sides > 0
    corr = dependent_correction(hu, lung, f)[None, :, None]
    g_lo, _ = s.ggo_hu
    c_lo, c_hi = s.consolidation_hu
    opening = half_width(f.opening_mm, spacing)
    one = half_width(f.vessel_halo_mm, spacing)
    # Light smoothing (noise, texture): a 3-voxel box in-plane, ~1.5 mm along z.
    sm = ndimage.uniform_filter(hu, size=window(f.smoothing_mm, spacing), mode="nearest")
    # Vessels: dense structures that are thin (removed by the opening) or tubular.
    # Thin bright structures of any density (white top-hat: vessels, also the faint
    # partial-volume vessels of thick slices, fissures, airway walls) and dense tubes.
    base = grey_opening(hu, f.tophat_mm, spacing, f.tophat_grid_mm)
    thin = lung & (hu - base > f.tophat_hu) & (hu >= g_lo) & (base - corr < g_lo)
    del base
    if max(spacing) <= f.core_max_voxel_mm:
        # Thin voxels of ground-glass density are a vessel's partial-volume halo only
        # near the vessel's dense core; farther out they are a small ground-glass focus.
        core = thin & (hu >= c_lo)
        thin &= (hu >= c_lo) | box(core, half_width(f.core_halo_mm, spacing), "dilate")
        del core
    reg = regime(hu.shape, spacing, r)
    few, coarse, thick3d = reg.few, reg.coarse, reg.thick3d
    hilar = hilar_zone(sides, spacing, r) if few or coarse else None
    dense = lung & (hu >= c_lo)
    thick = open_mask(dense, opening)
    if coarse:
        # Coarse pixels: the smallest box (3 voxels) is wider than many lesions. Vessels
        # that narrow are diluted below the consolidation band there, except the hilar
        # trunks: only in the hilar zone is dense tissue thin, and only there does the
        # box opening below remove candidates.
        thin &= (hu < c_lo) | hilar
        thick |= dense & ~hilar
    thin |= dense & ~thick
    vessel = thin | vessels(hu, thick, spacing, f)
    # 3D scans of thick slices with fine pixels: vessels that run obliquely through a
    # slice are smeared into broad ground-glass-density streaks around a ridge.
    if few or thick3d:
        # Thick-slice vessels and bronchial walls: in-plane ridges in aerated lung; on
        # single slices only in the hilar zone (outside it, focal lesions in normal lung
        # would lose their dense parts).
        zone = dark_fraction(hu - corr, lung, spacing, r) > r.dark_fraction
        if few:
            zone &= hilar
        ridge = zone & (hu >= r.ridge_min_hu) & (ridges_2d(hu, spacing, r) > r.ridge_hu)
        vessel |= ridge
    # Background density: the mean HU of the surrounding lung *without* vessels and their
    # one-voxel halo (normalised convolution). A vessel or its halo in normal lung has a
    # normal background; a vessel running through ground glass has a GGO background.
    excluded = box(vessel, one, "dilate")
    if few:  # in the hilar zone the partial-volume halo of thick-slice vessels is wider
        source = vessel & zone & (hu >= r.halo_source_hu)
        excluded |= box(source, half_width(r.halo_mm, spacing), "dilate")
        del source
    elif thick3d:  # the smeared halo around the ridges
        excluded |= box(ridge, half_width(r.thick3d_halo_mm, spacing), "dilate")
    if few or thick3d:
        del ridge
    parenchyma = (lung & ~excluded).astype(np.float32)
    del excluded
    size = window(f.background_mm, spacing)
    num = ndimage.uniform_filter(hu * parenchyma, size=size, mode="constant")
    den = ndimage.uniform_filter(parenchyma, size=size, mode="constant")
    bg = np.where(den > f.background_min_share, num / np.maximum(den, 1e-6),
                  -1000.0).astype(np.float32)
    del num, den, parenchyma
    in_band = (bg - corr >= g_lo) & (bg < c_hi)
    if few:
        in_band &= ~zone | (bg - corr >= g_lo + r.hilar_raise_hu)
    own = (sm - corr >= g_lo) & (sm < c_hi)
    cand = lung & in_band & (own | vessel)
    # Thin structures left (fissures, airway walls): box opening.
    if coarse:  # a 3-voxel box would remove every patch under ~12 mm
        cand = open_mask(cand, opening) | (cand & ~hilar)
    else:
        cand = open_mask(cand, opening)
    del hilar
    # Partial-volume rim at the lung surface: kept only where the lesion continues inward.
    rim = half_width(f.rim_mm, spacing)
    if any(rim):
        inner = box(lung, rim, "erode")
        cand &= box(cand & inner, rim, "dilate")
    # Edges and thin parts: the background and the opening erode a lesion's border,
    # its irregular margins and thin extensions. They are grown back from the lesion
    # cores through connected voxels whose own density is in a band, for at most
    # ``grow_mm`` (a distance-limited reconstruction): isolated vessels in normal
    # lung have no core to grow from.
    own_raw = lung & (hu - corr >= g_lo) & (hu < c_hi)
    cand = grow(cand, own_raw | cand, f.grow_mm, spacing)
    # Class by the voxel's own density; vessels inside a lesion by their background.
    logger.debug("lesions: %d candidate voxels", int(cand.sum()))
    return cand, np.where(thin, bg, hu)
