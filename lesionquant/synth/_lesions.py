"""COVID-19 lesion shapes and attenuation: the model shared by phantom and insertion.

Shape model
    A lesion is an anisotropic Gaussian blob whose iso-surface is roughened by a smooth
    random field (multiplicative log-normal modulation). Blob centres are drawn from lung
    voxels with a probability that favours the subpleural rim (``exp(-d/15 mm)``), the
    dependent (posterior) lung and the lower zones, as in COVID-19 pneumonia
    (Pan et al., Radiology 2020; Bernheim et al., Radiology 2020). Sizes are log-uniform
    from a few mm to lobar. The union of blobs is thresholded at the quantile that makes
    exactly ``target_lesion_pct`` of the lung lesion, so the burden is controlled to the
    voxel. Lesions are clipped by the pleura (pleural-based lesions flatten against it).

GGO / consolidation
    A second field (per-lesion "consolidation propensity" times the blob profile) picks
    the densest ``1 - ggo_fraction`` of lesion voxels as consolidation: consolidation
    forms the cores of lesions surrounded by a GGO halo (``consolidation_in_ggo=True``)
    or whole lesions of their own (``False``).

Attenuation
    A lung voxel is a mix of air (-1000 HU) and tissue/blood (``TISSUE_HU``). A lesion
    replaces a fraction ``f`` of the voxel's air with fluid/cells, so
    ``HU' = TISSUE_HU - (TISSUE_HU - HU) * (1 - f)``. Voxels at or above tissue density
    (vessels, bronchial walls) are unchanged, which is why vessels stay visible through
    ground glass; ``f`` near 1 (consolidation) brings parenchyma and small vessels to the
    same soft-tissue value, hiding them. GGO uses f ~ 0.15-0.45 (about -710 to -450 HU
    from -850 HU parenchyma, mean near -600 HU as measured on real COVID-19 CT),
    consolidation f ~ 0.82-1.0 (about -120 to +40 HU).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

from lesionquant.synth._fields import gaussian_blob, random_rotation, smooth_field

logger = logging.getLogger(__name__)

TISSUE_HU = 40.0
"""Attenuation of soft tissue / non-contrast blood, the end point of filling air, HU."""

GGO_FILL = (0.15, 0.45)
CONSOLIDATION_FILL = (0.82, 1.0)


@dataclass(frozen=True)
class LesionModel:
    """Lesion voxels and the fill-fraction field on one voxel grid.

    Attributes
    ----------
    classes : (Z, Y, X) ndarray of uint8
        0 none, 1 GGO, 2 consolidation.
    fill : (Z, Y, X) ndarray of float32
        Fraction of air replaced, 0..1, with soft partial-volume edges.
    bronchogram : (Z, Y, X) ndarray of bool
        Air bronchogram voxels (inside consolidation, fill kept at 0).
    n_lesions : int
        Number of blobs drawn.
    """

    classes: np.ndarray
    fill: np.ndarray
    bronchogram: np.ndarray
    n_lesions: int




def make_lesions(
    lung: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    rng: np.random.Generator,
    *,
    target_lesion_pct: float,
    ggo_fraction: float = 0.7,
    posterior_zyx: tuple[float, float, float] = (0.0, 1.0, 0.0),
    superior_zyx: tuple[float, float, float] = (1.0, 0.0, 0.0),
    consolidation_in_ggo: bool = True,
    crazy_paving: bool = False,
    bronchograms: bool = True,
    edge_mm: float = 0.7,
    max_radius_mm: float | None = None,
    pattern_pct: float | None = None,
) -> LesionModel:
    """Draw COVID-19-like lesions inside a lung mask.

    Parameters
    ----------
    lung : (Z, Y, X) ndarray of uint8
        Lung labels (1 right, 2 left; any non-zero value is lung).
    spacing_zyx : tuple of float
        Voxel size, mm, in array order.
    rng : numpy.random.Generator
    target_lesion_pct : float
        Lesion volume as % of lung volume, 0..100 (met to the voxel).
    ggo_fraction : float
        Fraction of lesion voxels that are GGO (rest consolidation), 0..1.
    posterior_zyx, superior_zyx : tuple of float
        Unit vectors (in index space, z,y,x order, scaled by spacing not needed) of the
        patient's posterior and superior directions; identity LPS gives the defaults.
    consolidation_in_ggo : bool
        Consolidation as cores inside GGO (True) or as separate lesions (False).
    crazy_paving : bool
        Superimpose a polygonal reticulation (thickened septa) on GGO.
    bronchograms : bool
        Keep air bronchograms inside consolidation (only drawn when voxels < 2 mm).
    edge_mm : float
        Gaussian sigma of the partial-volume edge of the fill field, mm.
    max_radius_mm : float, optional
        Largest blob radius; default grows with the burden.
    pattern_pct : float, optional
        Burden the set of blobs is drawn for (default ``target_lesion_pct``). With the
        same seed and ``pattern_pct``, a lower ``target_lesion_pct`` gives the same lesions
        shrunk in place (a follow-up visit of a resolving pneumonia).

    Returns
    -------
    LesionModel
    """
    shape = lung.shape
    spacing = np.asarray(spacing_zyx, dtype=float)
    lung_bool = lung > 0
    n_lung = int(lung_bool.sum())
    classes = np.zeros(shape, np.uint8)
    fill = np.zeros(shape, np.float32)
    bronch = np.zeros(shape, bool)
    n_target = round(n_lung * target_lesion_pct / 100.0)
    if n_target == 0 or n_lung == 0:
        return LesionModel(classes, fill, bronch, 0)

    voxel_mm3 = float(np.prod(spacing))
    pattern = target_lesion_pct if pattern_pct is None else max(pattern_pct, target_lesion_pct)
    target_mm3 = n_lung * pattern / 100.0 * voxel_mm3

    # --- where lesions start: subpleural, dorsal, basal -----------------------------------
    dist_mm = ndi.distance_transform_edt(lung_bool, sampling=spacing).astype(np.float32)
    idx = np.flatnonzero(lung_bool)
    zyx = np.stack(np.unravel_index(idx, shape), axis=1).astype(np.float32)
    phys = zyx * spacing
    post = phys @ np.asarray(posterior_zyx, dtype=float)
    sup = phys @ np.asarray(superior_zyx, dtype=float)
    post_n = (post - post.min()) / max(np.ptp(post), 1e-6)
    sup_n = (sup - sup.min()) / max(np.ptp(sup), 1e-6)
    weight = np.exp(-dist_mm.ravel()[idx] / 15.0) * (1.0 + 2.0 * post_n) * (1.6 - sup_n)
    weight /= weight.sum()

    # --- sizes: biased to large (patchy, confluent), the set ~2.5x the target volume -----------
    # lesion scale from the lung's extent (a thin slab keeps in-plane sizes realistic)
    extent_mm = (np.ptp(zyx, axis=0) + 1.0) * spacing
    span = float(np.sort(extent_mm)[-2])  # second largest extent (width of one lung-ish)
    r_max = max_radius_mm or float(np.clip(0.10 * span * (1 + 3 * pattern / 100),
                                           8.0, 0.35 * span))
    r_min = max(2.5, 1.5 * float(spacing[1:].min()))
    r_max = max(r_max, 1.5 * r_min)
    half = extent_mm / 2.0
    radii: list[float] = []
    total = 0.0
    while total < 3.0 * target_mm3 and len(radii) < 600:
        u = rng.uniform() ** 0.85
        r = float(r_min * (r_max / r_min) ** u)
        radii.append(r)
        total += 4.0 / 3.0 * np.pi * float(np.prod(np.minimum(r, half)))
    centres = zyx[rng.choice(idx.size, size=len(radii), p=weight)]

    # --- rasterise the blobs (each only in its bounding box) ----------------------------------
    field = np.zeros(shape, np.float32)
    cfield = np.zeros(shape, np.float32)
    owner_c = np.zeros(shape, np.float32)
    propensity = np.clip(rng.beta(0.6, 0.8, size=len(radii)), 0, 1)  # mostly GGO or mostly dense
    for r, c, prop in zip(radii, centres, propensity, strict=False):
        sig_mm = r / 1.5 * rng.uniform(0.35, 1.0, size=3)  # anisotropic, elongated
        blob = gaussian_blob(c, sig_mm, random_rotation(rng), spacing, shape)
        if blob is None:
            continue
        box, g = blob
        better = g > field[box]
        field[box] = np.where(better, g, field[box])
        owner_c[box] = np.where(better, prop, owner_c[box])
        cfield[box] = np.maximum(cfield[box], (prop * g).astype(np.float32))

    # roughen the boundary: log-normal modulation by smooth fields at 5 and 15 mm
    rough = smooth_field(shape, rng, tuple(4.0 / spacing))
    rough_coarse = smooth_field(shape, rng, tuple(12.0 / spacing))
    field *= np.exp(0.55 * rough + 0.5 * rough_coarse)

    # exact burden: threshold at the quantile of the lung voxels
    values = field.ravel()[idx]
    order = np.argsort(values, kind="stable")
    lesion_idx = idx[order[-n_target:]]
    lesion = np.zeros(shape, bool)
    lesion.ravel()[lesion_idx] = True

    # consolidation: densest (1 - ggo_fraction) of the lesion voxels
    n_cons = round(n_target * (1.0 - ggo_fraction))
    classes.ravel()[lesion_idx] = 1
    if n_cons > 0:
        cons_score = (cfield if consolidation_in_ggo else owner_c).ravel()[lesion_idx]
        # irregular, dependent consolidation: its own roughness and a posterior bias
        patchy = smooth_field(shape, rng, tuple(8.0 / spacing)).ravel()[lesion_idx]
        post_all = np.zeros(shape, np.float32)
        post_all.ravel()[idx] = post_n
        cons_score = cons_score * np.exp(0.6 * patchy) * (1.0 + post_all.ravel()[lesion_idx])
        corder = np.argsort(cons_score, kind="stable")
        classes.ravel()[lesion_idx[corder[-n_cons:]]] = 2

    # --- fill fraction with texture and soft edges --------------------------------------------
    tex = smooth_field(shape, rng, tuple(4.0 / spacing))
    patch = smooth_field(shape, rng, tuple(25.0 / spacing))
    ggo_level = np.float32(np.mean(GGO_FILL)) + np.float32(0.5 * np.ptp(GGO_FILL)) * np.clip(
        patch, -1.5, 1.5) / 1.5
    ggo_f = np.clip(ggo_level * (1.0 + 0.2 * tex), 0.10, 0.60)
    if crazy_paving:
        septa = smooth_field(shape, rng, tuple(3.0 / spacing))
        lines = np.exp(-((septa / 0.18) ** 2))  # zero-level set of a field: a polygonal net
        ggo_f = np.clip(ggo_f + 0.30 * lines, 0.0, 0.8)
    cons_f = np.clip(np.float32(0.93) + np.float32(0.05) * tex, *CONSOLIDATION_FILL)
    fill = np.where(classes == 1, ggo_f, 0.0).astype(np.float32)
    fill = np.where(classes == 2, cons_f, fill).astype(np.float32)
    if bronchograms and float(spacing[1:].max()) < 2.0 and n_cons > 0:
        # air bronchograms: intersection of the zero sets of two smooth fields = curves
        a = smooth_field(shape, rng, tuple(12.0 / spacing))
        b = smooth_field(shape, rng, tuple(12.0 / spacing))
        tube = (np.abs(a) < 0.10) & (np.abs(b) < 0.10)
        bronch = tube & ndi.binary_erosion(classes == 2, iterations=2)
        fill[bronch] = 0.0
    sig_vox = np.asarray(edge_mm) / spacing
    fill = ndi.gaussian_filter(fill, sig_vox, truncate=2.5)
    fill = np.where(lung_bool, fill, 0.0).astype(np.float32)
    logger.debug("lesions: %d blobs, r %.1f-%.1f mm, %d voxels (%d consolidation)",
                 len(radii), r_min, r_max, n_target, n_cons)
    return LesionModel(classes, fill, bronch, len(radii))


def apply_fill(hu: np.ndarray, fill: np.ndarray, tissue_hu: float = TISSUE_HU) -> np.ndarray:
    """Replace the fraction ``fill`` of each voxel's air by tissue; denser voxels unchanged.

    Parameters
    ----------
    hu : (Z, Y, X) ndarray of float32
        Host attenuation, HU.
    fill : (Z, Y, X) ndarray of float32
        Fraction 0..1.
    tissue_hu : float
        End point of filling, HU.

    Returns
    -------
    (Z, Y, X) ndarray of float32
    """
    filled = tissue_hu - (tissue_hu - hu) * (1.0 - fill)
    return np.where(hu < tissue_hu, filled, hu).astype(np.float32)
