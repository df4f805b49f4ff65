"""Classical lesion segmentation: GGO and consolidation inside the lungs.

Inside the lung mask (labels 1-2 from :func:`~lesionquant.segment.segment_lungs`), each
voxel's HU is compared with the density bands of :class:`~lesionquant.settings.Settings`
(GGO ``[-750, -300)``, consolidation ``[-300, 150)`` by default). What is *not* a lesion
although its density falls into a band, and how it is removed (``docs/method.md``):

* **Thin structures** (small vessels, fissures, airway walls, the partial-volume halo of
  vessels): a white top-hat marks structures brighter than their surroundings and
  narrower than ``tophat_mm`` (on voxels up to ``_CORE_MAX_VOXEL_MM``, ground-glass
  density counts only within ``_CORE_HALO_MM`` of a dense core: a small ground-glass
  focus is not a vessel halo), and a box opening of half-width ``lesion_opening_mm``
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
* **Single thick slices** (fewer than ``_FEW_SLICES`` slices, each at least
  ``_THICK_SLICE_MM`` thick): in the hilar zone of
  aerated lung, a 2D ridge filter marks vessels and bronchial walls, their wide
  partial-volume halo is left out of the background, and the background must be clearly
  denser than the GGO threshold.
* **Thick slices in 3D** (slices of ``_THICK3D_SLICE_MM`` or more, pixels up to
  ``_THICK3D_PIXEL_MM``): the same 2D ridge filter marks the smeared oblique vessels in
  aerated lung, and a ``_THICK3D_HALO_MM`` halo around them is left out of the background.
* **Coarse pixels** (in-plane above ``_COARSE_PIXEL_MM``): the 3-voxel boxes of the
  top-hat and the opening would remove every lesion narrower than about 12 mm; dense
  tissue is thin, and the opening applies, only in the hilar zone (vessel trunks).
* **Emphysema** is below the GGO band (< -950 HU) and is never a lesion.
* **Small specks**: connected lesions below ``min_lesion_volume_ml`` are dropped.
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lesionquant.errors import InvalidInputError
from lesionquant.segment._grid import (
    bbox,
    block_factors,
    block_mean,
    block_upsample,
    from_lps,
    to_lps,
    within_inplane,
)
from lesionquant.segment._labels import lesion_sides
from lesionquant.settings import Settings

__all__ = ["CONSOLIDATION", "GGO", "segment_lesions"]

logger = logging.getLogger(__name__)

GGO, CONSOLIDATION = 3, 4
_FULL = ndimage.generate_binary_structure(3, 3)
#: A voxel this much brighter than the grey opening of its neighbourhood is part of a
#: thin bright structure (vessel, fissure, airway wall), HU.
_TOPHAT_HU = 120.0
#: On scans whose voxels are at most ``_CORE_MAX_VOXEL_MM`` on every axis, a thin
#: structure of ground-glass density is a vessel (its partial-volume halo) only within
#: ``_CORE_HALO_MM`` of a dense (consolidation-band) thin voxel: a vessel that reaches the
#: GGO band there has a dense core, a small ground-glass focus has none. On coarser voxels
#: small vessels are diluted to ground-glass density without a core, so every thin voxel
#: counts (``docs/method.md``), mm.
_CORE_MAX_VOXEL_MM = 2.0
_CORE_HALO_MM = 3.0
#: Pixels coarser than this (in-plane, mm; the 4 mm COPD scan) make the 3-voxel boxes of
#: the top-hat and the opening 12 mm or more: consolidation and ground-glass patches up
#: to that width were read as thin structures and removed (lesions inserted into the
#: COPD scan: -7.0 pp at 20 %). On such scans both apply only in the hilar zone
#: (``docs/method.md``).
_COARSE_PIXEL_MM = 2.0
#: Single-slice handling (scans with fewer slices than this: no 3D context, and the thick
#: slices of such series smear oblique hilar vessels into broad partial-volume halos).
_FEW_SLICES = 5
#: ... and only for slices at least this thick, mm: the hilar rules answer the
#: partial-volume smearing of thick slices (measured on 1-5 mm single slices); a slab of
#: thinner slices (the two 0.5 mm slices of the COPD crop) has no such halo, and the rules
#: removed the lesions inserted into its hilar zone (``docs/method.md``).
_THICK_SLICE_MM = 0.75
#: 3D scans with slices at least ``_THICK3D_SLICE_MM`` thick and pixels at most
#: ``_THICK3D_PIXEL_MM`` (the usual 5 mm reconstruction of a 512 matrix): the 2D ridge
#: filter marks vessels in aerated lung, and the lung within ``_THICK3D_HALO_MM`` of them
#: is left out of the background (their smeared partial-volume halo), mm. Without it the
#: lesion-free 5 mm phantom read 6.1 % lesion; the single-slice rules (hilar zone, 6 mm
#: halo, raised background) took diffuse lesions with the vessels (``docs/method.md``).
_THICK3D_SLICE_MM = 3.0
_THICK3D_PIXEL_MM = 1.0
_THICK3D_HALO_MM = 2.0
#: In-plane scales (mm) of the 2D ridge filter, small vessels to hilar trunks; a voxel at
#: or above ``_RIDGE_MIN_HU`` whose ridge strength exceeds ``_RIDGE_HU`` (HU) is a vessel.
_RIDGE_MM = (1.0, 2.0, 3.0, 4.0)
_RIDGE_HU = 40.0
_RIDGE_MIN_HU = -500.0
#: Aerated context: more than ``_DARK_FRACTION`` of the lung within an in-plane
#: ``_DARK_MM`` box is below ``_DARK_HU`` (after the dependent correction). Only in the
#: hilar zone of aerated lung are ridges vessels and is the halo wide: diffuse disease has
#: almost no such lung nearby, and outside the zone focal lesions would lose dense parts.
_DARK_HU = -800.0
#: Where the lung's own 10th HU percentile (after the dependent correction) is below
#: ``_DARK_P10_HU`` (plenty of normal lung), "dark" is relative to it: below that
#: percentile + ``_DARK_OFFSET_HU`` (at least ``_DARK_HU``). Dense but normal lung (low
#: dose, smooth kernel, 1 mm with contrast) is then aerated context too.
_DARK_P10_HU = -820.0
_DARK_OFFSET_HU = 60.0
_DARK_MM = 20.0
_DARK_FRACTION = 0.15
#: In the aerated hilar zone, the lung within ``_HALO_MM`` of a vessel voxel at or above
#: ``_HALO_SOURCE_HU`` is its partial-volume halo and left out of the background.
_HALO_MM = 6.0
_HALO_SOURCE_HU = -500.0
#: Hilar zone: lung within ``_HILAR_MM`` (in-plane) of the tissue between the lungs; in
#: aerated context there the background must reach the GGO threshold + ``_HILAR_RAISE_HU``.
_HILAR_MM = 25.0
_HILAR_RAISE_HU = 100.0

def segment_lesions(
    image: sitk.Image, lungs: sitk.Image, settings: Settings | None = None
) -> sitk.Image:
    """Find GGO and consolidation inside the lungs.

    Parameters
    ----------
    image : SimpleITK.Image
        3D CT in HU.
    lungs : SimpleITK.Image
        Lung labels in the geometry of ``image`` (0 background, 1 right, 2 left; labels 3-4
        are read as lung too).
    settings : Settings, optional
        Density bands, ``min_lesion_volume_ml``, ``lesion_opening_mm``, ``rim_mm``,
        ``vessel_sigma_mm``, ``vessel_threshold``, ``dependent_correction_max_hu``.

    Returns
    -------
    SimpleITK.Image
        ``sitkUInt8`` label map in the geometry of ``image``: 0 background, 1 right lung,
        2 left lung, 3 GGO, 4 consolidation.
    """
    s = settings or Settings()
    if image.GetSize() != lungs.GetSize():
        raise InvalidInputError(
            f"lung mask size {lungs.GetSize()} differs from image size {image.GetSize()}",
            source="segment_lesions",
        )
    oriented, code = to_lps(image)
    lung_img, _ = to_lps(lungs)
    hu = sitk.GetArrayViewFromImage(oriented)
    labels = sitk.GetArrayFromImage(lung_img).astype(np.uint8)
    if (labels > 2).any():  # a label map with lesions: back to lung sides, re-derived below
        labels = lesion_sides(labels)
    spacing = tuple(float(v) for v in oriented.GetSpacing()[::-1])
    lung = labels > 0
    if lung.any():
        # The box holds a rim of non-lung around the lung wherever the scan goes on: the
        # box filters replicate the box's faces ("nearest"), which would read the apex
        # and base slices of the lung as lung continuing beyond them (no rim there).
        box = bbox(lung, _half_width(s.rim_mm, spacing))
        ggo, cons = _lesions(hu[box].astype(np.float32), labels[box], spacing, s)
        sub = labels[box]
        sub[ggo] = GGO
        sub[cons] = CONSOLIDATION
        labels[box] = sub
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(oriented)
    return from_lps(out, code, image)


def _half_width(mm: float, spacing: tuple[float, ...]) -> tuple[int, ...]:
    """Box half-widths in voxels for ``mm`` along each axis.

    In-plane at least one voxel (partial volume spans a voxel whatever its size); along z
    zero when the slices are thicker than ``mm / 0.75`` and the scan has few slices.
    """
    z = int(np.floor(mm / spacing[0] + 0.5)) if mm >= 0.75 * spacing[0] else 0
    return (z, *(max(1, int(np.floor(mm / sp + 0.5))) for sp in spacing[1:]))


def _open(mask: np.ndarray, half: tuple[int, ...]) -> np.ndarray:
    size = tuple(2 * h + 1 for h in half)
    if all(v == 1 for v in size):
        return mask
    m = mask.view(np.uint8)
    er = ndimage.minimum_filter(m, size=size, mode="nearest")
    return ndimage.maximum_filter(er, size=size, mode="nearest").astype(bool) & mask


def _dependent_correction(hu: np.ndarray, lung: np.ndarray, s: Settings) -> np.ndarray:
    """Per-row (y) HU offset of normal parenchyma relative to the anterior lung, >= 0.

    The reference of each row is the 25th percentile of its lung voxels between -1000 and
    -600 HU (a low percentile, so posterior ground glass does not pull the reference up);
    a weighted line through these references gives the anterior-to-posterior gradient.
    """
    ny = hu.shape[1]
    if s.dependent_correction_max_hu <= 0:
        return np.zeros(ny, np.float32)
    normal = lung & (hu < -600) & (hu > -1000)
    rows = np.broadcast_to(np.arange(ny)[None, :, None], hu.shape)[normal]
    bins = np.clip(((hu[normal] + 1000.0) / 10.0).astype(np.int64), 0, 39)
    hist = np.bincount(rows * 40 + bins, minlength=ny * 40).reshape(ny, 40)
    n = hist.sum(axis=1)
    good = np.flatnonzero(n >= 50)
    if good.size < 5:
        return np.zeros(ny, np.float32)
    cum = np.cumsum(hist[good], axis=1) / n[good, None]
    ref = -1000.0 + 10.0 * (np.argmax(cum >= 0.25, axis=1) + 0.5)
    slope, _ = np.polyfit(good.astype(np.float64), ref, 1, w=np.sqrt(n[good]))
    if slope <= 0:
        return np.zeros(ny, np.float32)
    y = np.arange(ny, dtype=np.float64)
    corr = np.clip(slope * (y - good[0]), 0, s.dependent_correction_max_hu)
    return corr.astype(np.float32)


def _vesselness(low: np.ndarray, sp: tuple[float, ...], sigma_mm: float,
                sel: np.ndarray) -> np.ndarray:
    """Frangi vesselness of bright tubes at one scale, evaluated at the voxels ``sel``.

    Scale-normalised Hessian (sigma^2 H) from Gaussian derivative filters; with the
    eigenvalues sorted by magnitude ``|l1| <= |l2| <= |l3|``, a bright tube has ``l2, l3 <<
    0`` and ``l1 ~ 0``: ``V = (1 - exp(-Ra^2/2a^2)) exp(-Rb^2/2b^2) (1 - exp(-S^2/2c^2))``
    with ``Ra = |l2|/|l3|`` (tube vs sheet: consolidation edges are sheets),
    ``Rb = |l1|/sqrt(|l2 l3|)`` (tube vs blob: nodules and patches are blobs),
    ``S`` the Frobenius norm (contrast), a = b = 0.5, c = 100 HU.
    """
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
        l1, l2, l3 = lam[:, 1], lam[:, 1], lam[:, 2]
        ra = np.zeros(n)
        rb = np.abs(l2) / (np.abs(l3) + 1e-9)
        s2 = l2**2 + l3**2
        v = np.exp(-(rb**2) / (2 * 0.5**2)) * (1 - np.exp(-s2 / (2 * 100.0**2)))
        return np.where(l3 < 0, v, 0.0)
    l1, l2, l3 = lam[:, 0], lam[:, 1], lam[:, 2]
    ra = np.abs(l2) / (np.abs(l3) + 1e-9)
    rb = np.abs(l1) / (np.sqrt(np.abs(l2 * l3)) + 1e-9)
    s2 = l1**2 + l2**2 + l3**2
    v = (1 - np.exp(-(ra**2) / (2 * 0.5**2))) * np.exp(-(rb**2) / (2 * 0.5**2)) * (
        1 - np.exp(-s2 / (2 * 100.0**2))
    )
    return np.where((l2 < 0) & (l3 < 0), v, 0.0)


def _vessels(hu: np.ndarray, cand: np.ndarray, spacing: tuple[float, ...],
             s: Settings) -> np.ndarray:
    """Dense tubular structures within ``cand`` (max vesselness over the scales).

    Each scale ``sigma`` is evaluated on a block-mean grid of about ``sigma / 1.5`` mm,
    which keeps the Gaussian derivative filters cheap on full-size scans.
    """
    if not s.vessel_sigma_mm or not cand.any():
        return np.zeros(hu.shape, bool)
    out = np.zeros(hu.shape, bool)
    clipped = np.clip(hu, -1000, 300)
    for sigma in s.vessel_sigma_mm:
        factors = block_factors(spacing, sigma / 1.5)
        low, _ = block_mean(clipped, factors)
        sp = tuple(v * f for v, f in zip(spacing, factors, strict=True))
        sel = block_mean(cand.view(np.uint8), factors)[0] >= 0.5
        if not sel.any():
            continue
        tube = np.zeros(low.shape, bool)
        tube[sel] = _vesselness(low, sp, sigma, sel) > s.vessel_threshold
        out |= block_upsample(tube, factors, hu.shape)
    return out & cand


def _ridges_2d(hu: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """In-plane bright-ridge strength (HU), the maximum over the scales ``_RIDGE_MM``.

    With the eigenvalues ``l1 >= l2`` of the scale-normalised 2D Hessian (sigma^2 H) of
    each slice, a bright line has ``l2 << 0`` and ``l1 ~ 0``: the strength is ``-l2``
    less the blob part ``max(-l1, 0)`` (a round focus curves down in both directions).
    On a single thick slice, vessels and bronchial walls radiating from the hilum are
    such ridges; a ground-glass patch is flat inside.
    """
    c = np.clip(hu, -1000, 200).astype(np.float32)
    best = np.zeros(hu.shape, np.float32)
    for mm in _RIDGE_MM:
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


def _hilar_zone(lung: np.ndarray, sides: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Lung within ``_HILAR_MM`` (in-plane) of the tissue between the two lungs.

    The tissue between the lungs (mediastinum, hila, spine) is the non-lung voxels of a
    row that have right lung (label 1, low x in LPS) on their low-x side and left lung
    (label 2) on their high-x side. Unlike the lung stage's mediastinum proxy
    (``_lungs._between_lungs``, only between the two most medial lung voxels) this
    includes tissue between pieces of one lung in a row, the hilum of a single slice:
    with that proxy instead the lungmask slice's false lesion rose from 3.4 to 5.2 %.
    """
    right = np.maximum.accumulate(sides == 1, axis=2)
    left = np.maximum.accumulate((sides == 2)[:, :, ::-1], axis=2)[:, :, ::-1]
    return lung & within_inplane(~lung & right & left, _HILAR_MM, spacing)


def _dark_fraction(hu: np.ndarray, lung: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Fraction of the lung within an in-plane ``_DARK_MM`` box that is normally aerated
    (below ``_DARK_HU``, or relative to the lung's 10th percentile where that is low):
    high near hilar vessels in normal lung, near 0 in diffuse disease."""
    size = (1, *(max(3, 2 * int(_DARK_MM / (2.0 * sp)) + 1) for sp in spacing[1:]))
    p10 = float(np.percentile(hu[lung], 10)) if lung.any() else 0.0
    level = max(_DARK_HU, p10 + _DARK_OFFSET_HU) if p10 < _DARK_P10_HU else _DARK_HU
    dark = ndimage.uniform_filter((lung & (hu < level)).astype(np.float32), size=size)
    den = ndimage.uniform_filter(lung.astype(np.float32), size=size)
    return dark / np.maximum(den, 1e-3)


def _grey_opening(hu: np.ndarray, width_mm: float, spacing: tuple[float, ...]) -> np.ndarray:
    """Grey opening with a ``width_mm`` box, on a grid of ~1.4 mm block means (the
    opening is smooth at that scale; 4-8x fewer voxels on thin-slice scans)."""
    factors = block_factors(spacing, 1.4)
    low, _ = block_mean(hu, factors)
    sp = tuple(v * f for v, f in zip(spacing, factors, strict=True))
    size = _window(width_mm, sp)
    opened = ndimage.maximum_filter(ndimage.minimum_filter(low, size=size, mode="nearest"),
                                    size=size, mode="nearest")
    return block_upsample(opened, factors, hu.shape)


def _box(mask: np.ndarray, half: tuple[int, ...], op: str) -> np.ndarray:
    size = tuple(2 * h + 1 for h in half)
    if all(v == 1 for v in size):
        return mask
    f = ndimage.minimum_filter if op == "erode" else ndimage.maximum_filter
    return f(mask.view(np.uint8), size=size, mode="nearest").astype(bool)


def _grow(seed: np.ndarray, mask: np.ndarray, mm: float,
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


def _window(mm: float, spacing: tuple[float, ...]) -> tuple[int, ...]:
    """Odd box sizes (voxels) about ``mm`` wide; at least 3 in-plane, 1 along thick z."""
    z = 2 * int(mm / (2.0 * spacing[0])) + 1
    return (z, *(max(3, 2 * int(mm / (2.0 * sp) + 0.5) + 1) for sp in spacing[1:]))


def _lesions(hu: np.ndarray, sides: np.ndarray, spacing: tuple[float, ...],
             s: Settings) -> tuple[np.ndarray, np.ndarray]:
    lung = sides > 0
    corr = _dependent_correction(hu, lung, s)[None, :, None]
    g_lo, _ = s.ggo_hu
    c_lo, c_hi = s.consolidation_hu
    opening = _half_width(s.lesion_opening_mm, spacing)
    one = _half_width(1.0, spacing)
    # Light smoothing (noise, texture): a 3-voxel box in-plane, ~1.5 mm along z.
    sm = ndimage.uniform_filter(hu, size=_window(1.5, spacing), mode="nearest")
    # Vessels: dense structures that are thin (removed by the opening) or tubular.
    # Thin bright structures of any density (white top-hat: vessels, also the faint
    # partial-volume vessels of thick slices, fissures, airway walls) and dense tubes.
    base = _grey_opening(hu, s.tophat_mm, spacing)
    thin = lung & (hu - base > _TOPHAT_HU) & (hu >= g_lo) & (base - corr < g_lo)
    del base
    if max(spacing) <= _CORE_MAX_VOXEL_MM:
        # Thin voxels of ground-glass density are a vessel's partial-volume halo only
        # near the vessel's dense core; farther out they are a small ground-glass focus.
        core = thin & (hu >= c_lo)
        thin &= (hu >= c_lo) | _box(core, _half_width(_CORE_HALO_MM, spacing), "dilate")
        del core
    few = hu.shape[0] < _FEW_SLICES and spacing[0] >= _THICK_SLICE_MM
    coarse = min(spacing[1:]) > _COARSE_PIXEL_MM
    hilar = _hilar_zone(lung, sides, spacing) if few or coarse else None
    dense = lung & (hu >= c_lo)
    thick = _open(dense, opening)
    if coarse:
        # Coarse pixels: the smallest box (3 voxels) is wider than many lesions. Vessels
        # that narrow are diluted below the consolidation band there, except the hilar
        # trunks: only in the hilar zone is dense tissue thin, and only there does the
        # box opening below remove candidates.
        thin &= (hu < c_lo) | hilar
        thick |= dense & ~hilar
    thin |= dense & ~thick
    vessel = thin | _vessels(hu, thick, spacing, s)
    # 3D scans of thick slices with fine pixels: vessels that run obliquely through a
    # slice are smeared into broad ground-glass-density streaks around a ridge.
    thick3d = (not few and spacing[0] >= _THICK3D_SLICE_MM
               and max(spacing[1:]) <= _THICK3D_PIXEL_MM)
    if few or thick3d:
        # Thick-slice vessels and bronchial walls: in-plane ridges in aerated lung; on
        # single slices only in the hilar zone (outside it, focal lesions in normal lung
        # would lose their dense parts).
        zone = _dark_fraction(hu - corr, lung, spacing) > _DARK_FRACTION
        if few:
            zone &= hilar
        ridge = zone & (hu >= _RIDGE_MIN_HU) & (_ridges_2d(hu, spacing) > _RIDGE_HU)
        vessel |= ridge
    # Background density: the mean HU of the surrounding lung *without* vessels and their
    # one-voxel halo (normalised convolution). A vessel or its halo in normal lung has a
    # normal background; a vessel running through ground glass has a GGO background.
    excluded = _box(vessel, one, "dilate")
    if few:  # in the hilar zone the partial-volume halo of thick-slice vessels is wider
        source = vessel & zone & (hu >= _HALO_SOURCE_HU)
        excluded |= _box(source, _half_width(_HALO_MM, spacing), "dilate")
        del source
    elif thick3d:  # the smeared halo around the ridges
        excluded |= _box(ridge, _half_width(_THICK3D_HALO_MM, spacing), "dilate")
    if few or thick3d:
        del ridge
    parenchyma = (lung & ~excluded).astype(np.float32)
    del excluded
    size = _window(s.background_mm, spacing)
    num = ndimage.uniform_filter(hu * parenchyma, size=size, mode="constant")
    den = ndimage.uniform_filter(parenchyma, size=size, mode="constant")
    bg = np.where(den > 0.05, num / np.maximum(den, 1e-6), -1000.0).astype(np.float32)
    del num, den, parenchyma
    in_band = (bg - corr >= g_lo) & (bg < c_hi)
    if few:
        in_band &= ~zone | (bg - corr >= g_lo + _HILAR_RAISE_HU)
    own = (sm - corr >= g_lo) & (sm < c_hi)
    cand = lung & in_band & (own | vessel)
    # Thin structures left (fissures, airway walls): box opening.
    if coarse:  # a 3-voxel box would remove every patch under ~12 mm
        cand = _open(cand, opening) | (cand & ~hilar)
    else:
        cand = _open(cand, opening)
    del hilar
    # Partial-volume rim at the lung surface: kept only where the lesion continues inward.
    rim = _half_width(s.rim_mm, spacing)
    if any(rim):
        inner = _box(lung, rim, "erode")
        cand &= _box(cand & inner, rim, "dilate")
    # Edges and thin parts: the background and the opening erode a lesion's border,
    # its irregular margins and thin extensions. They are grown back from the lesion
    # cores through connected voxels whose own density is in a band, for at most
    # ``lesion_grow_mm`` (a distance-limited reconstruction): isolated vessels in normal
    # lung have no core to grow from.
    own_raw = lung & (hu - corr >= g_lo) & (hu < c_hi)
    cand = _grow(cand, own_raw | cand, s.lesion_grow_mm, spacing)
    # Minimum lesion size.
    voxel_ml = float(np.prod(spacing)) / 1000.0
    min_vox = s.min_lesion_volume_ml / voxel_ml
    if min_vox > 1 and cand.any():
        lab, n = ndimage.label(cand, structure=_FULL)
        count = np.bincount(lab.ravel(), minlength=n + 1)
        big = count >= min_vox
        big[0] = False
        cand = big[lab]
    # Class by the voxel's own density; vessels inside a lesion by their
    # background.
    cls_hu = np.where(thin, bg, hu)
    cons = cand & (cls_hu >= c_lo)
    ggo = cand & ~cons
    logger.debug("lesions: GGO %d voxels, consolidation %d voxels", ggo.sum(), cons.sum())
    return ggo, cons
