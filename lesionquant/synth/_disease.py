"""COVID-19 lesion model v2, fitted to real COVID-19 CT (``LesionParams``, ``make_disease``).

The v1 model (:mod:`lesionquant.synth._lesions`, kept for the shipped sample scans) drew
GGO and consolidation inside the HU bands of the classical lesion stage, always with a
solid core and always consolidation inside GGO. v2 is fitted to the expert regions of
the MedSeg slices (mapped to HU per slice by :mod:`lesionquant._jpeg_hu`), the TCIA
COVID-19-NY-SBU slices and the 1600 unlabelled COVID-19-CT-Seg slices (calibration in
``docs/synth.md``, ``bench/synth_calibration.py``). Every lesion is one of these kinds:

``patchy``
    ground glass with or without a consolidated core (the classic peripheral patch);
``faint``
    coreless faint GGO, most of it below -750 HU (fill 0.0-0.12);
``paving``
    GGO with a visible septal network (crazy paving);
``solid``
    consolidation without surrounding GGO;
``band``
    thin subpleural band or curvilinear line parallel to the pleura (1.5-4 mm thick,
    3-12 mm under it);
``lobar``
    (not a blob: ``LesionParams.lobar_pct``) whole dependent-lobe consolidation with air
    bronchograms and no aerated lung behind it, next to an optional pleural effusion
    (``effusion_ml``) of similar density that is *not* lung (label 6 in the truth).

Attenuation uses the air-to-tissue fill of v1 (``apply_fill``: a fraction ``f`` of the
voxel's air replaced by tissue at 40 HU; denser voxels such as vessels unchanged, so they
stay visible through GGO), but ``f`` now varies per lesion (log-normal around
``ggo_fill``), tapers towards each lesion's edge over ``edge_ramp_mm`` (ill-defined
margins, the faint rim the experts include) and is mottled inside consolidation, which is
what puts the expert regions' 5th percentiles near -850 HU (GGO) and -760 HU
(consolidation with air bronchograms and partial volume).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.ndimage as ndi

from lesionquant.synth._fields import gaussian_blob, random_rotation, smooth_field

logger = logging.getLogger(__name__)

__all__ = ["KINDS", "Disease", "LesionParams", "make_disease"]

KINDS = ("patchy", "faint", "paving", "solid", "band")
"""Blob lesion kinds, in the order of ``LesionParams.kind_weights``."""

EFFUSION_HU = 15.0
"""Attenuation of a simple pleural effusion, HU (0-20 HU; transudate/exudate)."""

BRONCHUS_RADIUS_MM = 1.25
"""Lumen radius of the air bronchograms drawn in inserted consolidation, mm (2.5 mm: the
segmental to subsegmental bronchi that stay visible inside consolidated lung)."""


@dataclass(frozen=True)
class LesionParams:
    """Every parameter of the v2 lesion model (a frozen, JSON-ready record).

    Attributes
    ----------
    burden_pct : float
        Lesion (GGO + consolidation) volume as % of the lung volume, met to the voxel.
        The lung excludes the effusion.
    ggo_fraction : float
        Target share of the lesion volume that is GGO (0..1). Pure kinds (faint, paving:
        GGO; solid, band, lobar: consolidation) are what they are; the split of the
        patchy lesions' cores brings the total as close to the target as they allow.
    kind_weights : tuple of float
        Relative frequency of the blob kinds ``KINDS`` (patchy, faint, paving, solid, band).
    ggo_fill : float
        Median fraction of air replaced in GGO (0.40: -840 HU lung becomes about -490 HU
        at the level; with the edge ramp and texture the GGO median is near -580 HU).
    ggo_fill_sigma : float
        Log-normal spread of the per-lesion GGO fill.
    faint_fill : tuple of float
        Fill range of the faint coreless GGO.
    consolidation_fill : tuple of float
        Per-lesion fill range of consolidation (0.75: -240 HU; 1.0: 40 HU).
    edge_ramp_mm : float
        Distance over which the GGO fill rises from 0 at the lesion's edge to its level,
        mm (convex, exponent 1.15; consolidation: over 2 mm from 2 % of its level).
    radius_mm : tuple of float
        Smallest and largest blob radius, mm (2.5 mm = a 5 mm focus); the largest is
        capped at 0.35 x the lung's width.
    peripheral_mm : float
        Decay length of the subpleural preference of lesion centres, mm.
    posterior_bias, basal_bias : float
        Extra weight of the most posterior / most basal lung (0 = none).
    lobar_pct : float
        Dependent-lobe consolidation as % of the lung (part of ``burden_pct``; the
        most dependent voxels of a lower lobe, front to back with air bronchograms).
    effusion_ml : float
        Pleural effusion volume, mL, taken from the dependent lung base of the side of
        the lobar consolidation (right when there is none); label 6, not lung.
    roughness : float
        Strength of the boundary roughening (log-normal modulation of the blob field).
    """

    burden_pct: float = 10.0
    ggo_fraction: float = 0.7
    kind_weights: tuple[float, ...] = (0.45, 0.2, 0.1, 0.15, 0.1)
    ggo_fill: float = 0.40
    ggo_fill_sigma: float = 0.3
    faint_fill: tuple[float, float] = (0.0, 0.12)
    consolidation_fill: tuple[float, float] = (0.45, 1.0)
    edge_ramp_mm: float = 2.5
    radius_mm: tuple[float, float] = (2.5, 45.0)
    peripheral_mm: float = 15.0
    posterior_bias: float = 2.0
    basal_bias: float = 0.6
    lobar_pct: float = 0.0
    effusion_ml: float = 0.0
    roughness: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.burden_pct < 100.0:
            raise ValueError("LesionParams.burden_pct must be in [0, 100)")
        if not 0.0 <= self.ggo_fraction <= 1.0:
            raise ValueError("LesionParams.ggo_fraction must be in [0, 1]")
        if len(self.kind_weights) != len(KINDS) or min(self.kind_weights) < 0 \
                or sum(self.kind_weights) <= 0:
            raise ValueError(f"LesionParams.kind_weights needs {len(KINDS)} weights >= 0")
        if not 0.0 <= self.lobar_pct <= self.burden_pct:
            raise ValueError("LesionParams.lobar_pct must be in [0, burden_pct]")
        if self.effusion_ml < 0:
            raise ValueError("LesionParams.effusion_ml must be >= 0")
        if not 0 < self.radius_mm[0] <= self.radius_mm[1]:
            raise ValueError("LesionParams.radius_mm must be (min, max) with 0 < min <= max")

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples as lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> LesionParams:
        """Inverse of :meth:`to_dict` (lists back to tuples)."""
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


@dataclass(frozen=True)
class Disease:
    """Lesions drawn on one voxel grid.

    Attributes
    ----------
    classes : (Z, Y, X) ndarray of uint8
        0 none, 1 GGO, 2 consolidation, 3 pleural effusion (not lung).
    fill : (Z, Y, X) ndarray of float32
        Fraction of air replaced, 0..1 (0 on the effusion, which is set to its own HU).
    lobe : (Z, Y, X) ndarray of bool
        The lower-lobe region used for the lobar pattern (empty without one).
    n_lesions : int
        Number of blob lesions drawn.
    kinds : dict
        Blob count per kind.
    air : (Z, Y, X) ndarray of float32 or None
        Share of each voxel that is bronchial air (the lumen of the air bronchograms drawn
        in consolidation when no ``airway`` was given, with its partial volume); ``None``
        when none was drawn. The caller sets it to air (-1000 HU): a patent bronchus inside
        consolidation holds air, not the host's aerated lung.
    """

    classes: np.ndarray
    fill: np.ndarray
    lobe: np.ndarray
    n_lesions: int
    kinds: dict = field(default_factory=dict)
    air: np.ndarray | None = None


def _normalised(v: np.ndarray) -> np.ndarray:
    return (v - v.min()) / max(float(np.ptp(v)), 1e-6)


def make_disease(
    lung: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    rng: np.random.Generator,
    params: LesionParams,
    *,
    posterior_zyx: tuple[float, float, float] = (0.0, 1.0, 0.0),
    superior_zyx: tuple[float, float, float] = (1.0, 0.0, 0.0),
    lower_lobe: np.ndarray | None = None,
    airway: np.ndarray | None = None,
    edge_mm: float = 0.7,
) -> Disease:
    """Draw v2 COVID-19 lesions (and an optional effusion) inside a lung mask.

    Parameters
    ----------
    lung : (Z, Y, X) ndarray of uint8
        Lung labels (1 right, 2 left; any non-zero value is lung).
    spacing_zyx : tuple of float
        Voxel size, mm, array order.
    rng : numpy.random.Generator
    params : LesionParams
    posterior_zyx, superior_zyx : tuple of float
        Patient posterior / superior directions in index (z, y, x) order.
    lower_lobe : (Z, Y, X) ndarray of bool, optional
        Lower lobes (the phantom knows its fissures); default: the lung behind and below
        an oblique plane through each lung (the oblique fissure's usual course).
    airway : (Z, Y, X) ndarray of bool, optional
        Bronchial lumen already in the image (phantom): kept as air bronchograms inside
        consolidation; without it, branching air tubes are drawn (pixels < 2 mm).
    edge_mm : float
        Gaussian partial-volume blur of the fill, mm.

    Returns
    -------
    Disease
    """
    shape = lung.shape
    spacing = np.asarray(spacing_zyx, float)
    lung_bool = lung > 0
    classes = np.zeros(shape, np.uint8)
    fill = np.zeros(shape, np.float32)
    empty = Disease(classes, fill, np.zeros(shape, bool), 0, {})
    if not lung_bool.any():
        return empty
    voxel_mm3 = float(np.prod(spacing))
    idx_all = np.flatnonzero(lung_bool)
    zyx = np.stack(np.unravel_index(idx_all, shape), axis=1).astype(np.float32)
    phys = zyx * spacing
    post_n = _normalised(phys @ np.asarray(posterior_zyx, float))
    sup_n = _normalised(phys @ np.asarray(superior_zyx, float))
    post_vol = np.zeros(shape, np.float32)
    post_vol.ravel()[idx_all] = post_n
    sup_vol = np.zeros(shape, np.float32)
    sup_vol.ravel()[idx_all] = sup_n

    # --- lower lobes ------------------------------------------------------------------------
    if lower_lobe is None:
        lower_lobe = _default_lower_lobes(lung, post_vol, sup_vol)
    lobe_side = 1
    if params.lobar_pct > 0 or params.effusion_ml > 0:
        sides = [s for s in (1, 2) if (lower_lobe & (lung == s)).any()]
        if sides:
            lobe_side = int(rng.choice(sides)) if params.lobar_pct > 0 else sides[0]

    # --- pleural effusion: the most dependent basal lung of one side becomes fluid ---------
    if params.effusion_ml > 0:
        side_mask = lung == lobe_side
        # supine: fluid collects along the posterior chest wall as a crescent, thickest
        # at the base (distance to the lung's own border, weighted to back and base)
        wall_mm = ndi.distance_transform_edt(side_mask, sampling=spacing).astype(np.float32)
        xs = np.arange(shape[2], dtype=np.float32)
        x_mid = float(zyx[:, 2].mean())
        lat = np.abs(xs - x_mid) / max(float(np.abs(zyx[:, 2] - x_mid).max()), 1.0)
        depth_score = (-wall_mm / 25.0 + 1.2 * post_vol + 0.5 * (1.0 - sup_vol)
                       + 0.4 * lat[None, None, :])
        # not along the mediastinum: the posterior half, away from the midline
        cand = np.flatnonzero(side_mask & (post_vol > 0.45) & (lat[None, None, :] > 0.25))
        n_eff = min(round(params.effusion_ml * 1000.0 / voxel_mm3), cand.size // 3)
        if n_eff > 0:
            order = np.argsort(depth_score.ravel()[cand], kind="stable")
            classes.ravel()[cand[order[-n_eff:]]] = 3
    lung_left = lung_bool & (classes != 3)
    idx = np.flatnonzero(lung_left)
    n_lung = idx.size
    n_target = round(n_lung * params.burden_pct / 100.0)
    if n_target == 0:
        return Disease(classes, fill, lower_lobe, 0, {})

    zyx_l = np.stack(np.unravel_index(idx, shape), axis=1).astype(np.float32)
    dist_mm = ndi.distance_transform_edt(lung_left, sampling=spacing).astype(np.float32)
    pleura_in_lung = ndi.distance_transform_edt(lung_bool, sampling=spacing).astype(np.float32)

    # --- lobar consolidation: the most dependent voxels of the chosen lower lobe -----------
    n_lobar = min(round(n_lung * params.lobar_pct / 100.0), n_target)
    lobar = np.zeros(shape, bool)
    if n_lobar > 0:
        lobe_vox = np.flatnonzero(lower_lobe & lung_left & (lung == lobe_side))
        if lobe_vox.size < n_lobar:  # spill to the other lower lobe
            lobe_vox = np.flatnonzero(lower_lobe & lung_left)
        if lobe_vox.size < n_lobar:
            lobe_vox = idx
        wobble = smooth_field(shape, rng, tuple(15.0 / spacing)).ravel()[lobe_vox]
        wall = ndi.distance_transform_edt(lung_left, sampling=spacing).ravel()[lobe_vox]
        score = post_vol.ravel()[lobe_vox] + 0.15 * (1.0 - sup_vol.ravel()[lobe_vox]) \
            - wall / 150.0 + 0.08 * wobble
        order = np.argsort(score, kind="stable")
        lobar.ravel()[lobe_vox[order[-n_lobar:]]] = True

    # --- blob lesions ------------------------------------------------------------------------
    n_blob = n_target - n_lobar
    extent_mm = (np.ptp(zyx, axis=0) + 1.0) * spacing
    span = float(np.sort(extent_mm)[-2])
    r_min = max(params.radius_mm[0], 1.2 * float(spacing[1:].min()))
    r_max = max(min(params.radius_mm[1], 0.35 * span), 1.5 * r_min)
    weight = (np.exp(-dist_mm.ravel()[idx] / params.peripheral_mm)
              * (1.0 + params.posterior_bias * post_vol.ravel()[idx])
              * (1.0 + params.basal_bias * (1.0 - sup_vol.ravel()[idx])))
    weight = weight / weight.sum()
    kw = np.asarray(params.kind_weights, float)
    kw = kw / kw.sum()
    target_mm3 = n_blob * voxel_mm3
    half = extent_mm / 2.0
    radii, kinds = [], []
    total = 0.0
    # larger lesions at higher burden: the size distribution leans to r_max as burden grows
    lean = 0.6 + 0.6 * min(params.burden_pct / 30.0, 1.0)
    while n_blob > 0 and total < 3.0 * target_mm3 and len(radii) < 500:
        r = float(r_min * (r_max / r_min) ** (rng.uniform() ** (1.0 / lean)))
        k = int(rng.choice(len(KINDS), p=kw))
        if KINDS[k] == "band":
            r = max(r, 12.0)
        radii.append(r)
        kinds.append(k)
        vol = 4.0 / 3.0 * np.pi * float(np.prod(np.minimum(r, half)))
        total += vol * (0.15 if KINDS[k] == "band" else 1.0)
    n_les = len(radii)
    centres = zyx_l[np.searchsorted(np.cumsum(weight), rng.uniform(size=n_les) * 0.999999)] \
        if n_les else np.zeros((0, 3), np.float32)
    # bands lie under the costal pleura (lateral or posterior), not along the mediastinum
    band_ids = [i for i, k in enumerate(kinds) if KINDS[k] == "band"]
    if band_ids:
        lat = np.abs(zyx_l[:, 2] - zyx_l[:, 2].mean()) * spacing[2]
        lat_n = lat / max(float(lat.max()), 1e-6)
        d_i = dist_mm.ravel()[idx]
        costal = (d_i < 12.0) & ((lat_n > 0.55) | (post_vol.ravel()[idx] > 0.8))
        pool = np.flatnonzero(costal)
        if pool.size:
            centres[band_ids] = zyx_l[pool[rng.integers(pool.size, size=len(band_ids))]]
    field_ = np.zeros(shape, np.float32)
    owner = np.full(shape, -1, np.int16)
    core = np.zeros(shape, np.float32)
    band_depth = rng.uniform(3.0, 12.0, n_les)
    band_width = rng.uniform(1.5, 4.0, n_les)
    for i, (r, k, c) in enumerate(zip(radii, kinds, centres, strict=False)):
        sig_mm = r / 1.5 * rng.uniform(0.4, 1.0, size=3)
        blob = gaussian_blob(c, sig_mm, random_rotation(rng), spacing, shape)
        if blob is None:
            continue
        box, g = blob
        if KINDS[k] == "band":  # a sheet parallel to the pleura under the footprint
            d = pleura_in_lung[box]
            sheet = np.exp(-(((d - band_depth[i]) / (0.5 * band_width[i])) ** 2))
            core_g = g.copy()
            g = (np.sqrt(g) * sheet).astype(np.float32)
        else:
            core_g = g
        better = g > field_[box]
        field_[box] = np.where(better, g, field_[box])
        owner[box] = np.where(better, i, owner[box])
        core[box] = np.where(better, core_g, core[box])

    kinds_arr = np.asarray(kinds, int)
    is_band = np.zeros(max(n_les, 1), bool)
    is_band[:n_les] = kinds_arr == KINDS.index("band") if n_les else False
    # roughen the outlines (bands keep their thin shape: only the coarse field)
    rough = smooth_field(shape, rng, tuple(4.0 / spacing))
    rough_coarse = smooth_field(shape, rng, tuple(12.0 / spacing))
    band_vox = (owner >= 0) & is_band[np.maximum(owner, 0)]
    mod = np.where(band_vox, 0.3 * rough_coarse,
                   params.roughness * (0.55 * rough + 0.5 * rough_coarse))
    field_ *= np.exp(mod).astype(np.float32)

    lesion = lobar.copy()
    if n_blob > 0:
        free = idx[~lobar.ravel()[idx]]
        values = field_.ravel()[free]
        order = np.argsort(values, kind="stable")
        lesion.ravel()[free[order[-n_blob:]]] = True

    # --- classes --------------------------------------------------------------------------
    cls = np.zeros(shape, np.uint8)
    own = np.where(lesion, owner, -1)
    kind_vox = np.full(shape, -1, np.int8)
    has = own >= 0
    if n_les:
        kind_vox[has] = kinds_arr[own[has]]
    pure_ggo = lesion & np.isin(kind_vox, [KINDS.index("faint"), KINDS.index("paving")])
    pure_cons = lobar | (lesion & np.isin(kind_vox, [KINDS.index("solid"),
                                                     KINDS.index("band")]))
    patchy = lesion & ~pure_ggo & ~pure_cons
    cls[lesion] = 1
    cls[pure_cons] = 2
    # patchy lesions: consolidated cores (core profile x propensity x own roughness)
    want_cons = round(n_target * (1.0 - params.ggo_fraction)) - int(pure_cons.sum())
    pv = np.flatnonzero(patchy)
    if want_cons > 0 and pv.size:
        prop = rng.beta(0.6, 0.8, size=max(n_les, 1)).astype(np.float32)
        patchy_f = smooth_field(shape, rng, tuple(8.0 / spacing)).ravel()[pv]
        score = (core.ravel()[pv] * prop[np.maximum(own.ravel()[pv], 0)]
                 * np.exp(0.6 * patchy_f) * (1.0 + post_vol.ravel()[pv]))
        n_c = min(want_cons, pv.size)
        cls.ravel()[pv[np.argsort(score, kind="stable")[-n_c:]]] = 2
    classes = np.where(classes == 3, 3, cls).astype(np.uint8)

    # --- fill -------------------------------------------------------------------------------
    tex = smooth_field(shape, rng, tuple(4.0 / spacing))
    patch = smooth_field(shape, rng, tuple(20.0 / spacing))
    lvl = np.exp(np.log(params.ggo_fill) + params.ggo_fill_sigma
                 * rng.standard_normal(max(n_les, 1))).astype(np.float32)
    lvl_faint = rng.uniform(*params.faint_fill, size=max(n_les, 1)).astype(np.float32)
    lvl_cons = rng.uniform(*params.consolidation_fill, size=max(n_les, 1)).astype(np.float32)
    o = np.maximum(own, 0)
    ggo_level = np.where(kind_vox == KINDS.index("faint"), lvl_faint[o], lvl[o])
    ggo_level = np.where(own < 0, np.float32(params.ggo_fill), ggo_level)
    ggo_f = np.clip(ggo_level * np.exp(0.25 * tex + 0.2 * patch), 0.0, 0.7)
    paving = kind_vox == KINDS.index("paving")
    if paving.any():
        # thickened interlobular septa: the zero set of a 6 mm field is a polygonal net of
        # 5-12 mm cells (secondary lobules), lines ~1 mm wide, +0.4 fill (~350 HU)
        septa = smooth_field(shape, rng, tuple(6.0 / spacing))
        lines = np.exp(-((septa / 0.12) ** 2))
        ggo_f = np.where(paving, np.clip(ggo_f + 0.4 * lines, 0.0, 0.85), ggo_f)
    cons_level = np.where(own < 0, np.float32(np.mean(params.consolidation_fill)),
                          lvl_cons[o])
    cons_level = np.where(lobar, np.float32(0.95), cons_level)
    cons_f = np.clip(cons_level + 0.15 * tex, 0.0, 1.0)
    # consolidation rises from the GGO level at its own edge to its level ~1.5 mm inside
    # (the partial volume and partly filled acini that experts outline with it)
    cons_in_mm = ndi.distance_transform_edt(classes == 2, sampling=spacing).astype(np.float32)
    c_ramp = np.clip(cons_in_mm / 1.5, 0.0, 1.0) ** 0.8
    cons_f = ggo_f + (cons_f - ggo_f) * c_ramp
    # spared (still aerated) secondary lobules inside consolidation: ~15 % of it
    lob = smooth_field(shape, rng, tuple(6.0 / spacing))
    cons_f = np.where(lob > 1.0, 0.12 * cons_f, cons_f)
    f = np.where(classes == 1, ggo_f, 0.0)
    f = np.where(classes == 2, cons_f, f).astype(np.float32)
    # ill-defined margins: the fill rises from the edge of each lesion over edge_ramp_mm
    les_mask = (classes == 1) | (classes == 2)
    inside_mm = ndi.distance_transform_edt(les_mask, sampling=spacing).astype(np.float32)
    # GGO: from 0 over edge_ramp_mm, convex (the faint margin experts include, down to the
    # host's own lung HU); consolidation: over 2 mm from 2 % of its level
    ramp_ggo = np.clip(inside_mm / max(params.edge_ramp_mm, 1e-3), 0.0, 1.0) ** 1.15
    ramp_cons = 0.02 + 0.98 * np.clip(inside_mm / 2.0, 0.0, 1.0) ** 0.8
    ramp = np.where(classes == 2, ramp_cons, ramp_ggo)
    # consolidation meeting GGO keeps the GGO's level at its rim, not zero
    f = np.where(les_mask, f * ramp, 0.0).astype(np.float32)
    # air bronchograms in consolidation
    cons = classes == 2
    air = None
    blur = np.asarray(edge_mm) / spacing
    if airway is not None:
        f = np.where(airway & cons, 0.0, f)
    elif float(spacing[1:].max()) < 2.0 and cons.any():
        # a branching network of curves (where two smooth 10 mm fields are both zero),
        # thickened to a bronchial lumen of BRONCHUS_RADIUS_MM (distance to the curve from
        # each field's value over its gradient)
        a = smooth_field(shape, rng, tuple(10.0 / spacing))
        b = smooth_field(shape, rng, tuple(10.0 / spacing))
        dist2 = np.zeros(shape, np.float32)
        axes = [ax for ax in range(3) if shape[ax] > 1]  # a one-slice host has no z gradient
        for fld in (a, b):
            grad = np.gradient(fld, *spacing[axes], axis=axes)
            grad = grad if isinstance(grad, list | tuple) else [grad]
            norm = np.sqrt(sum(g * g for g in grad)).astype(np.float32)
            dist2 += (fld / np.maximum(norm, 1e-6)) ** 2
        tube = dist2 < BRONCHUS_RADIUS_MM ** 2
        # bronchi well inside the consolidation (1.5 mm in-plane: a 2-slice host keeps them)
        n_in = max(1, round(1.5 / float(spacing[1:].min())))
        deep = ndi.binary_erosion(cons, structure=ndi.generate_binary_structure(2, 1)[None],
                                  iterations=n_in)
        bronch = tube & deep
        f = np.where(bronch, 0.0, f)
        if bronch.any():
            air = ndi.gaussian_filter(bronch.astype(np.float32), blur, truncate=2.5)
            air = np.where(cons, air, 0.0).astype(np.float32)
    f = ndi.gaussian_filter(f, blur, truncate=2.5)
    f = np.where(lung_bool & (classes != 3), f, 0.0).astype(np.float32)
    counts = {name: int((kinds_arr == j).sum()) if n_les else 0 for j, name in enumerate(KINDS)}
    logger.debug("disease: %d blobs %s, %d lesion voxels (%d lobar), effusion %d",
                 n_les, counts, n_target, n_lobar, int((classes == 3).sum()))
    return Disease(classes, f, lower_lobe, n_les, counts, air)


def _default_lower_lobes(lung: np.ndarray, post_vol: np.ndarray,
                         sup_vol: np.ndarray) -> np.ndarray:
    """Lower lobes without fissures: the lung behind and below an oblique plane.

    The oblique fissure runs from about the level of the fourth vertebra at the back to
    the diaphragm at the front; with heights normalised within the lungs (0 base,
    1 apex) and depth (0 front, 1 back) that is ``height < 0.15 + 0.6 * depth``.
    """
    return (lung > 0) & (sup_vol < 0.15 + 0.6 * post_vol)

