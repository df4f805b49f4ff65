"""Lesion filters of the classical lesion stage: what has a lesion's density but is not a
lesion (vessels, fissures, airway walls, the partial-volume rim, normal dependent
density), and the growth that gives lesions back their margins.

Arrays are ``(z, y, x)`` in LPS index order (y grows towards posterior); spacings in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lesionquant.segment._config import Config
from lesionquant.segment._grid import block_factors, block_mean, block_upsample, window

__all__ = ["FilterConfig", "box", "dependent_correction", "grey_opening", "grow", "open_mask",
           "vessels"]

#: Numerical, not tuned: HU clip before the Hessian (bone and metal would dominate it).
_HESSIAN_CLIP_HU = (-1000, 300)
#: Numerical, not tuned: histogram bin of the dependent-correction percentile, HU.
_DEPENDENT_BIN_HU = 10.0


@dataclass(frozen=True)
class FilterConfig(Config):
    """Lesion filters (``docs/method.md``, "What is not a lesion")."""

    smoothing_mm: float = 1.5
    """Light smoothing of the voxel's own density (noise, texture): a box about this wide
    (at least 3 voxels in-plane), mm."""
    tophat_mm: float = 6.0
    """Width of the box of the white top-hat that marks thin bright structures (vessels,
    fissures) in normal lung; structures narrower than about this are not lesion, mm."""
    tophat_hu: float = 120.0
    """A voxel this much brighter than the grey opening of its neighbourhood is part of a
    thin bright structure, HU."""
    tophat_grid_mm: float = 1.4
    """The grey opening runs on block means of about this (smooth at that scale; 4-8x
    fewer voxels on thin slices), mm."""
    core_max_voxel_mm: float = 2.0
    """On scans whose voxels are at most this on every axis, a thin structure of
    ground-glass density is a vessel's halo only near a dense core (coarser voxels dilute
    small vessels to ground-glass density without a core), mm ..."""
    core_halo_mm: float = 3.0
    """... within this of the core, mm."""
    opening_mm: float = 1.5
    """Half-width of the box opening that removes thin structures (vessels, fissures,
    airway walls) from the candidates, mm."""
    vessel_sigma_mm: tuple[float, ...] = (3.0,)
    """Gaussian scales of the Hessian vesselness that removes dense tubes (vessels) from
    consolidation, mm; empty disables it (thinner vessels are caught by the top-hat)."""
    vessel_threshold: float = 0.3
    """Vesselness above which a dense voxel is vessel, in [0, 1]."""
    vessel_grid_ratio: float = 1.5
    """Each scale ``sigma`` runs on block means of about ``sigma / vessel_grid_ratio``."""
    frangi_alpha: float = 0.5
    """Frangi's tube-vs-sheet sensitivity (consolidation edges are sheets)."""
    frangi_beta: float = 0.5
    """Frangi's tube-vs-blob sensitivity (nodules and patches are blobs)."""
    frangi_c_hu: float = 100.0
    """Frangi's contrast scale (second-order structure below this is noise), HU."""
    vessel_halo_mm: float = 1.0
    """Vessels and this halo (at least one voxel in-plane) are left out of the
    background density, mm."""
    background_mm: float = 6.0
    """Width of the box of the background density (mean HU of the surrounding lung
    without vessels); a voxel is lesion only when its background is in a band, mm."""
    background_min_share: float = 0.05
    """Where less than this share of the box is lung without vessels, the background is
    air (-1000 HU)."""
    rim_mm: float = 5.0
    """Depth of the lung-surface shell whose candidates are kept only where the lesion
    continues inward (partial volume of oblique surfaces in thick slices), mm."""
    grow_mm: float = 3.0
    """Lesion cores are grown back at most this through connected lung whose own density
    is in a band (margins and thin parts); 0 disables, mm."""
    dependent_correction_max_hu: float = 150.0
    """Largest anterior-to-posterior gradient correction of normal density before the GGO
    threshold (normal dependent density is not GGO); 0 disables, HU."""
    dependent_normal_hu: tuple[float, float] = (-1000.0, -600.0)
    """Lung voxels in this HU band are the rows' normal parenchyma, HU."""
    dependent_percentile: float = 0.25
    """The reference of a row is this quantile of its normal parenchyma (low, so posterior
    ground glass does not lift it)."""
    dependent_min_voxels: int = 50
    """A row takes part in the gradient fit with at least this many normal voxels."""
    dependent_min_rows: int = 5
    """The gradient is fitted on at least this many rows (else no correction)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "vessel_sigma_mm",
                           tuple(float(v) for v in self.vessel_sigma_mm))
        for name in ("background_mm", "tophat_mm"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"classical_lesions.filters.{name} must be > 0")
        for name in ("opening_mm", "rim_mm", "grow_mm", "dependent_correction_max_hu"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"classical_lesions.filters.{name} must be >= 0")
        if any(v <= 0 for v in self.vessel_sigma_mm):
            raise ValueError("classical_lesions.filters.vessel_sigma_mm values must be > 0")
        if not 0.0 <= self.vessel_threshold <= 1.0:
            raise ValueError("classical_lesions.filters.vessel_threshold must be in [0, 1]")


def open_mask(mask: np.ndarray, half: tuple[int, ...]) -> np.ndarray:
    """Box opening of ``mask`` (half-widths ``half`` voxels), kept within ``mask``."""
    size = tuple(2 * h + 1 for h in half)
    if all(v == 1 for v in size):
        return mask
    m = mask.view(np.uint8)
    er = ndimage.minimum_filter(m, size=size, mode="nearest")
    return ndimage.maximum_filter(er, size=size, mode="nearest").astype(bool) & mask


def box(mask: np.ndarray, half: tuple[int, ...], op: str) -> np.ndarray:
    """Box erosion (``op="erode"``) or dilation of ``mask`` (half-widths ``half``)."""
    size = tuple(2 * h + 1 for h in half)
    if all(v == 1 for v in size):
        return mask
    f = ndimage.minimum_filter if op == "erode" else ndimage.maximum_filter
    return f(mask.view(np.uint8), size=size, mode="nearest").astype(bool)


def dependent_correction(hu: np.ndarray, lung: np.ndarray, cfg: FilterConfig) -> np.ndarray:
    """Per-row (y) HU offset of normal parenchyma relative to the anterior lung, >= 0.

    The reference of each row is the :attr:`~FilterConfig.dependent_percentile` quantile
    of its lung voxels in :attr:`~FilterConfig.dependent_normal_hu`; a weighted line
    through these references gives the anterior-to-posterior gradient.
    """
    ny = hu.shape[1]
    if cfg.dependent_correction_max_hu <= 0:
        return np.zeros(ny, np.float32)
    lo, hi = cfg.dependent_normal_hu
    nbins = round((hi - lo) / _DEPENDENT_BIN_HU)
    normal = lung & (hu < hi) & (hu > lo)
    rows = np.broadcast_to(np.arange(ny)[None, :, None], hu.shape)[normal]
    bins = np.clip(((hu[normal] - lo) / _DEPENDENT_BIN_HU).astype(np.int64), 0, nbins - 1)
    hist = np.bincount(rows * nbins + bins, minlength=ny * nbins).reshape(ny, nbins)
    n = hist.sum(axis=1)
    good = np.flatnonzero(n >= cfg.dependent_min_voxels)
    if good.size < cfg.dependent_min_rows:
        return np.zeros(ny, np.float32)
    cum = np.cumsum(hist[good], axis=1) / n[good, None]
    ref = lo + _DEPENDENT_BIN_HU * (np.argmax(cum >= cfg.dependent_percentile, axis=1) + 0.5)
    slope, _ = np.polyfit(good.astype(np.float64), ref, 1, w=np.sqrt(n[good]))
    if slope <= 0:
        return np.zeros(ny, np.float32)
    y = np.arange(ny, dtype=np.float64)
    corr = np.clip(slope * (y - good[0]), 0, cfg.dependent_correction_max_hu)
    return corr.astype(np.float32)


def _vesselness(low: np.ndarray, sp: tuple[float, ...], sigma_mm: float,
                sel: np.ndarray, cfg: FilterConfig) -> np.ndarray:
    """Frangi vesselness of bright tubes at one scale, evaluated at the voxels ``sel``.

    Scale-normalised Hessian (sigma^2 H) from Gaussian derivative filters; with the
    eigenvalues sorted by magnitude ``|l1| <= |l2| <= |l3|``, a bright tube has ``l2, l3 <<
    0`` and ``l1 ~ 0``: ``V = (1 - exp(-Ra^2/2a^2)) exp(-Rb^2/2b^2) (1 - exp(-S^2/2c^2))``
    with ``Ra = |l2|/|l3|`` (tube vs sheet), ``Rb = |l1|/sqrt(|l2 l3|)`` (tube vs blob),
    ``S`` the Frobenius norm (contrast); a, b, c from the config.
    """
    a2 = 2 * cfg.frangi_alpha**2
    b2 = 2 * cfg.frangi_beta**2
    c2 = 2 * cfg.frangi_c_hu**2
    sig = tuple(sigma_mm / v for v in sp)
    if low.shape[0] < 3:  # one or two slices: in-plane Hessian only (2D tubes are lines)
        sig = (0.0, *sig[1:])
    orders = {(0, 0): (2, 0, 0), (1, 1): (0, 2, 0), (2, 2): (0, 0, 2),
              (0, 1): (1, 1, 0), (0, 2): (1, 0, 1), (1, 2): (0, 1, 1)}
    n = int(sel.sum())
    h = np.zeros((n, 3, 3), np.float64)
    for (i, j), order in orders.items():
        if sig[0] == 0.0 and (i == 0 or j == 0):
            continue
        d = ndimage.gaussian_filter(low, sigma=sig, order=order, mode="nearest")[sel]
        d = d * (sigma_mm**2) / (sp[i] * sp[j])
        h[:, i, j] = d
        h[:, j, i] = d
    lam = np.linalg.eigvalsh(h)
    order_idx = np.argsort(np.abs(lam), axis=1)
    lam = np.take_along_axis(lam, order_idx, axis=1)
    if low.shape[0] < 3:  # 2D: the zero z eigenvalue is l1; tube = one strong negative
        l2, l3 = lam[:, 1], lam[:, 2]
        rb = np.abs(l2) / (np.abs(l3) + 1e-9)
        s2 = l2**2 + l3**2
        v = np.exp(-(rb**2) / b2) * (1 - np.exp(-s2 / c2))
        return np.where(l3 < 0, v, 0.0)
    l1, l2, l3 = lam[:, 0], lam[:, 1], lam[:, 2]
    ra = np.abs(l2) / (np.abs(l3) + 1e-9)
    rb = np.abs(l1) / (np.sqrt(np.abs(l2 * l3)) + 1e-9)
    s2 = l1**2 + l2**2 + l3**2
    v = (1 - np.exp(-(ra**2) / a2)) * np.exp(-(rb**2) / b2) * (1 - np.exp(-s2 / c2))
    return np.where((l2 < 0) & (l3 < 0), v, 0.0)


def vessels(hu: np.ndarray, cand: np.ndarray, spacing: tuple[float, ...],
            cfg: FilterConfig) -> np.ndarray:
    """Dense tubular structures within ``cand`` (max vesselness over the scales).

    Each scale ``sigma`` is evaluated on a block-mean grid of about
    ``sigma / vessel_grid_ratio``, which keeps the Gaussian derivative filters cheap.
    """
    if not cfg.vessel_sigma_mm or not cand.any():
        return np.zeros(hu.shape, bool)
    out = np.zeros(hu.shape, bool)
    clipped = np.clip(hu, *_HESSIAN_CLIP_HU)
    for sigma in cfg.vessel_sigma_mm:
        factors = block_factors(spacing, sigma / cfg.vessel_grid_ratio)
        low, _ = block_mean(clipped, factors)
        sp = tuple(v * f for v, f in zip(spacing, factors, strict=True))
        sel = block_mean(cand.view(np.uint8), factors)[0] >= 0.5
        if not sel.any():
            continue
        tube = np.zeros(low.shape, bool)
        tube[sel] = _vesselness(low, sp, sigma, sel, cfg) > cfg.vessel_threshold
        out |= block_upsample(tube, factors, hu.shape)
    return out & cand


def grey_opening(hu: np.ndarray, width_mm: float, spacing: tuple[float, ...],
                 grid_mm: float) -> np.ndarray:
    """Grey opening with a ``width_mm`` box, on a grid of ~``grid_mm`` block means."""
    factors = block_factors(spacing, grid_mm)
    low, _ = block_mean(hu, factors)
    sp = tuple(v * f for v, f in zip(spacing, factors, strict=True))
    size = window(width_mm, sp)
    opened = ndimage.maximum_filter(ndimage.minimum_filter(low, size=size, mode="nearest"),
                                    size=size, mode="nearest")
    return block_upsample(opened, factors, hu.shape)


def grow(seed: np.ndarray, mask: np.ndarray, mm: float,
         spacing: tuple[float, ...]) -> np.ndarray:
    """Geodesic dilation of ``seed`` inside ``mask`` for at most ``mm``.

    One in-plane voxel step per iteration (4-connected); a step along z is allowed on the
    first ``mm / spacing_z`` iterations only, so thick slices grow about ``mm`` in every
    direction.
    """
    n_xy = round(mm / min(spacing[1:]))
    n_z = round(mm / spacing[0])
    if n_xy <= 0 or not seed.any():
        return seed
    plane = ndimage.generate_binary_structure(3, 1)
    plane[0] = plane[2] = False
    out = seed.copy()
    for i in range(n_xy):
        st = ndimage.generate_binary_structure(3, 1) if i < n_z else plane
        grown = ndimage.binary_dilation(out, st, mask=mask)
        if np.array_equal(grown, out):
            break
        out = grown
    return out
