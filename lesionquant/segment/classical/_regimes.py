"""Scan regimes of the classical lesion stage: single thick slices, 3D scans of thick
slices, coarse pixels. Each smears vessels differently, and each has its own answer
(``docs/method.md``): the hilar zone, the 2D ridge filter, the aerated context.

Arrays are ``(z, y, x)`` in LPS index order; spacings in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lesionquant.segment._config import Config
from lesionquant.segment._grid import within_inplane
from lesionquant.segment.classical._aeration import normal_level, normal_share, tissue_between

__all__ = ["Regime", "RegimeConfig", "dark_fraction", "hilar_zone", "regime", "ridges_2d"]

#: Numerical, not tuned: HU clip before the 2D Hessian.
_RIDGE_CLIP_HU = (-1000, 200)


@dataclass(frozen=True)
class RegimeConfig(Config):
    """Scan regimes and the rules that apply in each."""

    few_slices: int = 5
    """Scans with fewer slices than this have no 3D context (single-slice rules) ..."""
    thick_slice_mm: float = 0.75
    """... when their slices are at least this thick: a slab of thinner slices (the two
    0.5 mm slices of the COPD crop) has no thick-slice halo, and the rules removed lesions
    inserted into its hilar zone, mm."""
    thick3d_slice_mm: float = 3.0
    """3D scans with slices at least this thick ..."""
    thick3d_pixel_mm: float = 1.0
    """... and pixels at most this (the usual 5 mm reconstruction of a 512 matrix): the
    2D ridge filter marks the smeared oblique vessels in aerated lung, mm ..."""
    thick3d_halo_mm: float = 2.0
    """... and the lung within this of them is left out of the background (without it
    the lesion-free 5 mm phantom read 6.1 % lesion), mm."""
    coarse_pixel_mm: float = 2.0
    """Pixels coarser than this make the 3-voxel boxes of the top-hat and the opening
    12 mm or more (lesions inserted into the 4 mm COPD scan: -7.0 pp at 20 %); there both
    apply only in the hilar zone, mm."""
    ridge_mm: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)
    """In-plane scales of the 2D ridge filter, small vessels to hilar trunks, mm."""
    ridge_hu: float = 40.0
    """A voxel whose ridge strength exceeds this ... , HU"""
    ridge_min_hu: float = -500.0
    """... and whose HU is at least this is a vessel, HU."""
    dark_hu: float = -800.0
    """Aerated context: lung below this (after the dependent correction) is normally
    aerated, HU ..."""
    dark_p10_hu: float = -820.0
    """... or, where the lung's own 10th percentile is below this (plenty of normal lung;
    dense but normal lung of low dose, smooth kernels, contrast), ..."""
    dark_offset_hu: float = 60.0
    """... below that percentile plus this (at least ``dark_hu``), HU."""
    dark_mm: float = 20.0
    """Width of the in-plane box of the aerated context, mm."""
    dark_fraction: float = 0.15
    """Aerated context: more than this share of the lung in the box is normally aerated
    (diffuse disease has almost none)."""
    halo_mm: float = 6.0
    """Single slices: in the aerated hilar zone, the lung within this of a vessel ..."""
    halo_source_hu: float = -500.0
    """... at or above this is its partial-volume halo, left out of the background, HU."""
    hilar_mm: float = 25.0
    """Hilar zone: lung within this (in-plane) of the tissue between the lungs, mm ..."""
    hilar_raise_hu: float = 100.0
    """... where, in aerated context, the background must reach the GGO threshold plus
    this, HU."""


@dataclass(frozen=True)
class Regime:
    """Which rules apply to a scan.

    Attributes
    ----------
    few : bool
        Single thick slices (fewer than ``few_slices``, at least ``thick_slice_mm``).
    coarse : bool
        In-plane pixels above ``coarse_pixel_mm``.
    thick3d : bool
        A 3D scan of thick slices (``thick3d_slice_mm``) with fine pixels.
    """

    few: bool
    coarse: bool
    thick3d: bool


def regime(shape: tuple[int, ...], spacing: tuple[float, ...], cfg: RegimeConfig) -> Regime:
    """The regime of a scan of ``shape`` (``z, y, x``) voxels of ``spacing`` mm."""
    few = shape[0] < cfg.few_slices and spacing[0] >= cfg.thick_slice_mm
    coarse = min(spacing[1:]) > cfg.coarse_pixel_mm
    thick3d = (not few and spacing[0] >= cfg.thick3d_slice_mm
               and max(spacing[1:]) <= cfg.thick3d_pixel_mm)
    return Regime(few=few, coarse=coarse, thick3d=thick3d)


def ridges_2d(hu: np.ndarray, spacing: tuple[float, ...], cfg: RegimeConfig) -> np.ndarray:
    """In-plane bright-ridge strength (HU), the maximum over the scales ``ridge_mm``.

    With the eigenvalues ``l1 >= l2`` of the scale-normalised 2D Hessian (sigma^2 H) of
    each slice, a bright line has ``l2 << 0`` and ``l1 ~ 0``: the strength is ``-l2``
    less the blob part ``max(-l1, 0)`` (a round focus curves down in both directions).
    On a thick slice, vessels and bronchial walls radiating from the hilum are such
    ridges; a ground-glass patch is flat inside.
    """
    c = np.clip(hu, *_RIDGE_CLIP_HU).astype(np.float32)
    best = np.zeros(hu.shape, np.float32)
    for mm in cfg.ridge_mm:
        sig = (0.0, mm / spacing[1], mm / spacing[2])
        hyy = ndimage.gaussian_filter(c, sig, order=(0, 2, 0), mode="nearest")
        hxx = ndimage.gaussian_filter(c, sig, order=(0, 0, 2), mode="nearest")
        hxy = ndimage.gaussian_filter(c, sig, order=(0, 1, 1), mode="nearest")
        k = np.float32(sig[1] * sig[2])
        mean = 0.5 * (hxx + hyy)
        dev = np.sqrt(0.25 * (hxx - hyy) ** 2 + hxy**2)
        l2 = (mean - dev) * k
        l1 = (mean + dev) * k
        best = np.maximum(best, np.where(l2 < 0, -l2 - np.maximum(-l1, 0), 0))
    return best


def hilar_zone(sides: np.ndarray, spacing: tuple[float, ...], cfg: RegimeConfig) -> np.ndarray:
    """Lung within ``hilar_mm`` (in-plane) of the tissue between the two lungs
    (:func:`~._aeration.tissue_between`: with the lung stage's narrower mediastinum proxy
    instead, the lungmask slice's false lesion rose from 3.4 to 5.2 %)."""
    lung = sides > 0
    return lung & within_inplane(tissue_between(sides), cfg.hilar_mm, spacing)


def dark_fraction(hu: np.ndarray, lung: np.ndarray, spacing: tuple[float, ...],
                  cfg: RegimeConfig) -> np.ndarray:
    """Share of the lung within an in-plane ``dark_mm`` box that is normally aerated:
    high near hilar vessels in normal lung, near 0 in diffuse disease."""
    size = (1, *(max(3, 2 * int(cfg.dark_mm / (2.0 * sp)) + 1) for sp in spacing[1:]))
    level = normal_level(hu[lung], cfg.dark_offset_hu, cfg.dark_hu, cfg.dark_p10_hu)
    dark, den = normal_share(hu, lung, level, size)
    return dark / np.maximum(den, 1e-3)
