"""Procedural full chest CT phantom with exact truth (``make_phantom``).

The anatomy (see :mod:`lesionquant.synth._anatomy`) is painted on a coarse grid (about
1.4 mm in-plane, 2 mm along z), lesions are drawn there with the shared lesion model,
and the HU volume is upsampled trilinearly (which gives partial-volume edges) while the
labels are upsampled by nearest neighbour; correlated noise is added at full
resolution. A 512x512x300 phantom takes seconds (see ``bench/synth_phantom_speed.py``).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import SimpleITK as sitk

from lesionquant.segment.labels import Label
from lesionquant.synth._anatomy import Grid, grow_tree, paint_tubes, rasterise_tree, superellipse
from lesionquant.synth._disease import EFFUSION_HU, LesionParams, make_disease
from lesionquant.synth._fields import correlated_noise, resize, smooth_field
from lesionquant.synth._lesions import apply_fill, make_lesions
from lesionquant.synth._results import Phantom

logger = logging.getLogger(__name__)

__all__ = ["make_phantom"]

# attenuation of the tissues, HU (non-contrast adult chest CT)
AIR, FAT, MUSCLE, BLOOD, CONTRAST_BLOOD = -1000.0, -100.0, 45.0, 40.0, 220.0
LIVER, SPLEEN, CSF, CARTILAGE = 58.0, 48.0, 12.0, 120.0
CORTICAL, MARROW, DISC = 900.0, 230.0, 80.0
PARENCHYMA_HU, DEPENDENT_HU = -870.0, 70.0
REFERENCE_NOISE_HU = 18.0
"""Noise std at 1 mm slices, ``dose_factor=1``, ``patient_scale=1`` (~120 kV, 100 mAs)."""


def make_phantom(
    *,
    size_xyz: tuple[int, int, int] = (512, 512, 300),
    spacing_mm: tuple[float, float, float] = (0.7, 0.7, 1.0),
    seed: int = 0,
    noise_hu: float | None = None,
    dose_factor: float = 1.0,
    patient_scale: float = 1.0,
    lesion_burden_pct: float = 0.0,
    ggo_fraction: float = 0.7,
    crazy_paving: bool = False,
    consolidation_in_ggo: bool = True,
    lesion_pattern_pct: float | None = None,
    contrast: bool = False,
    outside_fov_hu: int = -3024,
    table: bool = True,
    lesions: LesionParams | None = None,
) -> Phantom:
    """Generate a chest CT phantom with known lung, airway and lesion volumes.

    Parameters
    ----------
    size_xyz : tuple of int
        Matrix (columns, rows, slices).
    spacing_mm : tuple of float
        Voxel size (x, y, z), mm; z is the slice thickness and spacing.
    seed : int
        Seed of every random choice; the same arguments give an identical phantom.
    noise_hu : float, optional
        Standard deviation of the image noise, HU. Default: 18 HU scaled by
        ``sqrt(1 mm / slice thickness)``, ``1 / sqrt(dose_factor)`` and
        ``patient_scale ** 1.5`` (noise grows with patient size, falls with dose and
        thickness as in a real scanner).
    dose_factor : float
        Relative dose (mAs) for the default noise; 0.25 is a low-dose scan.
    patient_scale : float
        Linear size of the patient, 1 = average adult (0.8-1.25 sensible).
    lesion_burden_pct : float
        Lesion volume as % of lung volume (0 = healthy).
    ggo_fraction : float
        Fraction of lesion volume that is GGO; the rest is consolidation.
    crazy_paving, consolidation_in_ggo : bool
        Lesion patterns, see :func:`lesionquant.synth.insert_lesions`.
    lesion_pattern_pct : float, optional
        Burden the lesion pattern is drawn for; with the same seed, a lower
        ``lesion_burden_pct`` shrinks the same lesions in place (follow-up visit).
    contrast : bool
        Contrast-enhanced blood (~220 HU) instead of non-contrast (~40 HU).
    outside_fov_hu : int
        Value outside the reconstruction circle (-3024 or -2048 on real scanners).
    table : bool
        Draw the patient table under the back.
    lesions : LesionParams or dict, optional
        The v2 generator (``docs/synth.md``): lesions from the lesion model fitted to real
        COVID-19 CT (patchy, faint, crazy-paving, solid, band and dependent-lobe
        patterns, pleural effusion as label 6) on the v2 anatomy (oblique and horizontal
        fissures, vessel trees grown per lobe). The legacy arguments
        ``lesion_burden_pct``, ``ggo_fraction``, ``crazy_paving``,
        ``consolidation_in_ggo`` and ``lesion_pattern_pct`` are then ignored. Without it
        the v1 generator runs unchanged (the shipped sample scans use it).

    Returns
    -------
    Phantom
        Image (``sitkInt16`` HU, LPS), labels (``sitkUInt8``) and the true volumes.

    Examples
    --------
    >>> from lesionquant.synth import make_phantom
    >>> ph = make_phantom(size_xyz=(64, 64, 40), spacing_mm=(5.6, 5.6, 7.5), seed=1)
    >>> round(ph.lung_ml, -2) > 2000
    True
    """
    t0 = time.perf_counter()
    if isinstance(lesions, dict):  # from a Phantom's params (provenance round trip)
        lesions = LesionParams.from_dict(lesions)
    size = tuple(int(v) for v in size_xyz)
    spacing = tuple(float(v) for v in spacing_mm)
    if len(size) != 3 or min(size) < 1 or len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError("make_phantom: size_xyz and spacing_mm need three positive values")
    if not 0.0 <= lesion_burden_pct < 100.0:
        raise ValueError("make_phantom: lesion_burden_pct must be in [0, 100)")
    if not 0.0 <= ggo_fraction <= 1.0:
        raise ValueError("make_phantom: ggo_fraction must be in [0, 1]")
    if not 0.5 <= patient_scale <= 1.6:
        raise ValueError("make_phantom: patient_scale must be in [0.5, 1.6]")
    if noise_hu is None:
        noise_hu = (REFERENCE_NOISE_HU * np.sqrt(1.0 / spacing[2]) / np.sqrt(dose_factor)
                    * patient_scale**1.5)
    rng = np.random.default_rng(seed)

    # full-resolution geometry: FOV centred on x = y = 0, slices upwards from z = 0
    nx, ny, nz = size
    sx, sy, sz = spacing
    origin = (-(nx - 1) * sx / 2.0, -(ny - 1) * sy / 2.0, 0.0)

    # coarse grid: ~1.4 mm in-plane, ~2 mm along z (never finer than the output)
    fx = max(1, round(1.4 / sx))
    fy = max(1, round(1.4 / sy))
    fz = max(1, round(2.0 / sz))
    # thick slices (> 2 mm) are painted on `sub` thinner sub-slices and averaged: the
    # slice sensitivity profile, so thin vessels are diluted as on a real thick-slice scan
    sub = int(np.ceil(sz / 2.0)) if fz == 1 else 1
    cshape = (int(np.ceil(nz / fz)) * sub, int(np.ceil(ny / fy)), int(np.ceil(nx / fx)))
    csp = (nz * sz / cshape[0], ny * sy / cshape[1], nx * sx / cshape[2])
    corg = (origin[0] - sx / 2 + csp[2] / 2, origin[1] - sy / 2 + csp[1] / 2,
            origin[2] - sz / 2 + csp[0] / 2)
    grid = Grid(
        x=(corg[0] + np.arange(cshape[2]) * csp[2]).reshape(1, 1, -1),
        y=(corg[1] + np.arange(cshape[1]) * csp[1]).reshape(1, -1, 1),
        z=(corg[2] + np.arange(cshape[0]) * csp[0]).reshape(-1, 1, 1),
        spacing_zyx=csp, origin_xyz=corg,
    )
    hu, labels = _paint_anatomy(grid, rng, patient_scale, contrast, table,
                                nz * sz, lesion_burden_pct, ggo_fraction,
                                crazy_paving, consolidation_in_ggo, lesion_pattern_pct,
                                lesions)
    t1 = time.perf_counter()

    if sub > 1:  # average the sub-slices; the truth is the centre sub-slice's label
        hu = hu.reshape(nz, sub, *hu.shape[1:]).mean(axis=1, dtype=np.float32)
        labels = np.ascontiguousarray(labels.reshape(nz, sub, *labels.shape[1:])[:, sub // 2])
    # upsample: HU trilinear (partial volume), labels nearest
    hu_full = resize(hu, (nz, ny, nx), order=1)
    del hu
    lab_full = resize(labels, (nz, ny, nx), order=0)
    del labels
    hu_full += np.float32(noise_hu) * correlated_noise((nz, ny, nx), rng, sigma_vox=0.7)
    # reconstruction circle
    yy = (origin[1] + np.arange(ny) * sy).reshape(-1, 1)
    xx = (origin[0] + np.arange(nx) * sx).reshape(1, -1)
    fov_r = min(nx * sx, ny * sy) / 2.0
    outside = (xx**2 + yy**2) > fov_r**2
    np.clip(hu_full, -1024, 3071, out=hu_full)
    hu_full[:, outside] = outside_fov_hu
    lab_full[:, outside] = 0
    img_arr = np.rint(hu_full).astype(np.int16)
    del hu_full

    image = sitk.GetImageFromArray(img_arr)
    lab_img = sitk.GetImageFromArray(lab_full)
    for im in (image, lab_img):
        im.SetSpacing(spacing)
        im.SetOrigin(origin)
    counts = np.bincount(lab_full.ravel(), minlength=7)
    vox_ml = sx * sy * sz / 1000.0
    # per-side lung volumes count the lesions of that side
    side_right = _right_lung_voxels(lab_full)
    lung_ml = float(counts[1:5].sum() * vox_ml)
    lesion_ml = float(counts[3:5].sum() * vox_ml)
    params = dict(size_xyz=list(size), spacing_mm=list(spacing), seed=int(seed),
                  noise_hu=float(noise_hu), dose_factor=float(dose_factor),
                  patient_scale=float(patient_scale),
                  lesion_burden_pct=float(lesion_burden_pct), ggo_fraction=float(ggo_fraction),
                  crazy_paving=bool(crazy_paving),
                  consolidation_in_ggo=bool(consolidation_in_ggo), contrast=bool(contrast),
                  lesion_pattern_pct=lesion_pattern_pct,
                  outside_fov_hu=int(outside_fov_hu), table=bool(table),
                  lesions=lesions.to_dict() if lesions is not None else None)
    ph = Phantom(
        image=image, labels=lab_img,
        lung_ml=lung_ml,
        right_lung_ml=float(side_right * vox_ml),
        left_lung_ml=float(lung_ml - side_right * vox_ml),
        lesion_ml=lesion_ml,
        ggo_ml=float(counts[3] * vox_ml),
        consolidation_ml=float(counts[4] * vox_ml),
        lesion_pct=float(100.0 * lesion_ml / lung_ml) if lung_ml else 0.0,
        airway_ml=float(counts[5] * vox_ml),
        noise_hu=float(noise_hu), seed=int(seed), params=params,
        effusion_ml=float(counts[Label.EFFUSION] * vox_ml),
    )
    logger.info("phantom %s: anatomy %.1f s, total %.1f s, lung %.0f mL, lesion %.1f %%",
                size, t1 - t0, time.perf_counter() - t0, ph.lung_ml, ph.lesion_pct)
    return ph


def _lobes(grid: Grid, rng, lungs, t, yb, bc_ant, bc_post, s):
    """Lobes and fissures of the v2 phantom.

    The oblique fissure of each lung runs from 70 mm below the apex at the back to
    225 mm (the diaphragm) at the front, gently warped by a smooth field; the right
    horizontal fissure lies 130 mm below the apex in front of it. Lobes: 1 right upper,
    2 right middle, 3 right lower, 4 left upper, 5 left lower. A fissure is a 0.3 mm
    pleural sheet, drawn with its partial volume (a Gaussian of 0.7 mm carrying the
    sheet's tissue), so it shows as a thin faint line.

    Returns
    -------
    lobes : (Z, Y, X) uint8, fissure : (Z, Y, X) float32 tissue occupancy
    """
    depth = np.clip((yb + bc_ant) / (bc_ant + bc_post), 0.0, 1.0)  # 0 front, 1 back
    warp = smooth_field(grid.shape, rng, tuple(40.0 / np.array(grid.spacing_zyx)))
    t_obl = (225.0 - 155.0 * depth) * s + 6.0 * s * warp
    slope = 155.0 * s / (bc_ant + bc_post)
    d_obl = (t - t_obl) / np.sqrt(1.0 + slope**2)
    t_hor = 130.0 * s + 4.0 * s * warp
    d_hor = t - t_hor
    lower = d_obl > 0
    lobes = np.zeros(grid.shape, np.uint8)
    right, left = lungs == Label.RIGHT_LUNG, lungs == Label.LEFT_LUNG
    lobes[right & ~lower & (d_hor <= 0)] = 1
    lobes[right & ~lower & (d_hor > 0)] = 2
    lobes[right & lower] = 3
    lobes[left & ~lower] = 4
    lobes[left & lower] = 5
    sheet_mm = 0.3
    sig = 0.7
    peak = sheet_mm / (sig * np.sqrt(2.0 * np.pi))
    occ = peak * np.exp(-0.5 * (d_obl / sig) ** 2)
    occ_h = np.where(right & ~lower, peak * np.exp(-0.5 * (d_hor / sig) ** 2), 0.0)
    fissure = np.where(lungs > 0, np.maximum(occ, occ_h), 0.0).astype(np.float32)
    return lobes, fissure


def _right_lung_voxels(lab: np.ndarray) -> int:
    """Voxels of the right lung including its lesions.

    The lungs never cross the midline (a mediastinal band of +-15 mm is kept free), so a
    lesion voxel belongs to the right lung when it lies at x < 0 (the left half of the
    columns, LPS).
    """
    nx = lab.shape[2]
    lesion = (lab == Label.GGO) | (lab == Label.CONSOLIDATION)
    return int(np.count_nonzero(lab == Label.RIGHT_LUNG) + np.count_nonzero(lesion[..., : nx // 2]))


def _paint_anatomy(grid: Grid, rng, s, contrast, table, height_mm, burden, ggo_fraction,
                   crazy_paving, consolidation_in_ggo, pattern_pct, lesions=None):
    """Paint HU and labels on the coarse grid. Returns (hu float32, labels uint8)."""
    x, y, z = grid.x, grid.y, grid.z
    shape = grid.shape
    hu = np.full(shape, AIR, np.float32)
    labels = np.zeros(shape, np.uint8)
    blood = CONTRAST_BLOOD if contrast else BLOOD

    # vertical placement: lungs (apex to posterior recess ~250 mm) centred in the volume
    lung_len = 265.0 * s
    z_apex = height_mm / 2.0 + lung_len / 2.0 + 5.0
    t = z_apex - z  # depth below apex, (Z,1,1)

    # --- body outline, fat, muscle --------------------------------------------------------
    a_body = 162.0 * s + 14.0 * s * np.clip((40.0 * s - t) / (60.0 * s), 0, 1)  # shoulders
    b_ant, b_post = 118.0 * s, 112.0 * s
    y0 = -6.0 * s
    yb = y - y0
    b_body = np.where(yb < 0, b_ant, b_post)
    p_body = np.where(yb < 0, 2.2, 3.2)  # flat back
    rho_body = superellipse(x, yb, a_body, b_body, p_body)
    body = rho_body <= 1.0
    fat_mm = float(np.clip(12.0 + 25.0 * (s - 1.0), 5.0, 40.0))
    r_body = np.sqrt(x**2 + yb**2) + 1e-3
    depth_body = (1.0 - rho_body) * r_body / np.maximum(rho_body, 1e-3)  # ~mm from skin
    wobble = 3.0 * smooth_field(shape, rng, (20.0 / grid.spacing_zyx[0], 8.0, 8.0))
    hu[body] = FAT
    muscle = body & (depth_body > fat_mm + wobble)
    hu[muscle] = MUSCLE

    # --- thoracic cavity (inner surface of the ribs) ----------------------------------------
    # the chest widens from the apex (narrow thoracic inlet) to the bases: a bell shape
    widen = 0.62 + 0.38 * np.clip(t / (150.0 * s), 0.0, 1.0) ** 0.7
    ac = (a_body - fat_mm - 24.0 * s) * np.where(t > 0, widen, 0.62)
    bc_ant = b_ant - fat_mm - 20.0 * s
    bc_post = b_post - fat_mm - 26.0 * s
    bc = np.where(yb < 0, bc_ant, bc_post)
    rho_cav = superellipse(x, yb, ac, bc, 2.2)
    r_ray = np.sqrt(x**2 + yb**2) + 1e-3
    d_out = (rho_cav - 1.0) * r_ray / np.maximum(rho_cav, 1e-3)  # mm outside cavity
    cavity = rho_cav <= 1.0
    chest_z = (t > -20.0 * s) & (t < 300.0 * s)

    # ribs: oblique bands (anterior ends lower), ~12 mm bone in a 26 mm pitch
    pitch = 26.0 * s
    # a rib runs around the chest falling ~45 mm from its posterior to its anterior end,
    # so an axial slice cuts each rib in short arcs, as on a real CT
    sin_theta = yb / r_ray
    phase = np.mod((z - 45.0 * s * sin_theta) / pitch, 1.0)
    rib_band = (phase < 0.42) & (d_out > 0.0) & (d_out < 11.0 * s) & chest_z & (t < 235 * s)
    rib_core = rib_band & (d_out > 2.5) & (d_out < 11.0 * s - 2.5) & (phase > 0.07) & (
        phase < 0.35)
    anterior = (yb < -0.55 * bc_ant) & (np.abs(x) < 75.0 * s)
    hu[rib_band & ~anterior] = CORTICAL
    hu[rib_core & ~anterior] = MARROW
    hu[rib_band & anterior] = CARTILAGE
    # intercostal muscles fill the rest of the rib ring
    ring = (d_out > 0.0) & (d_out < 11.0 * s) & ~rib_band & chest_z
    hu[ring & body] = MUSCLE

    # scapulae: thin bony plates behind the upper posterior ribs
    scap = (t < 120.0 * s) & (t > -10.0 * s) & (yb > 0.05 * bc_post) & (np.abs(x) > 0.42 * ac) \
        & (d_out > 18.0 * s) & (d_out < 24.0 * s)
    hu[scap & body] = 600.0

    # --- mediastinum, spine, sternum ---------------------------------------------------------
    hu[cavity & chest_z] = -90.0  # mediastinal fat as the default inside the chest
    yv = y0 + bc_post - 8.0 * s  # vertebral body centre
    vb = ((x / (19.0 * s)) ** 2 + ((y - yv) / (17.0 * s)) ** 2) <= 1.0
    vb_in = ((x / (16.0 * s)) ** 2 + ((y - yv) / (14.0 * s)) ** 2) <= 1.0
    disc = np.mod(z / (28.0 * s), 1.0) < 0.2
    canal = ((x / (8.0 * s)) ** 2 + ((y - yv - 27.0 * s) / (8.0 * s)) ** 2) <= 1.0
    arch = ((x / (22.0 * s)) ** 2 + ((y - yv - 33.0 * s) / (13.0 * s)) ** 2) <= 1.0
    spinous = ((x / (5.0 * s)) ** 2 + ((y - yv - 50.0 * s) / (13.0 * s)) ** 2) <= 1.0
    transverse = (((np.abs(x) - 27.0 * s) / (12.0 * s)) ** 2
                  + ((y - yv - 28.0 * s) / (6.0 * s)) ** 2) <= 1.0
    paraspinal = (((np.abs(x) - 38.0 * s) / (30.0 * s)) ** 2
                  + ((y - yv - 45.0 * s) / (22.0 * s)) ** 2) <= 1.0
    hu[paraspinal & body] = MUSCLE
    bone_shell = (vb & ~vb_in) | arch | spinous | transverse
    hu[bone_shell & body] = CORTICAL * 0.8
    hu[vb_in & body] = np.where(np.broadcast_to(disc, shape)[vb_in & body], DISC, MARROW)
    hu[(arch | spinous | transverse) & ~canal & body] = 450.0
    hu[canal & body] = CSF
    spine_block = vb | ((x / (30.0 * s)) ** 2 + ((y - yv - 8.0 * s) / (22.0 * s)) ** 2 <= 1.0)

    sternum = ((x / (17.0 * s)) ** 2 + ((yb + bc_ant + 5.0 * s) / (8.0 * s)) ** 2 <= 1.0) & (
        t > 20.0 * s) & (t < 200.0 * s)
    sternum_in = ((x / (13.0 * s)) ** 2 + ((yb + bc_ant + 5.0 * s) / (5.0 * s)) ** 2 <= 1.0)
    hu[sternum] = CORTICAL * 0.8
    hu[sternum & sternum_in] = MARROW

    # heart (ellipsoid, shifted left and anterior) in epicardial fat
    hc = (30.0 * s, -32.0 * s + y0, 165.0 * s)
    # long axis towards the left, front and feet: rotate 35 degrees in the axial plane
    cos_h, sin_h = np.cos(np.deg2rad(35.0)), np.sin(np.deg2rad(35.0))
    u_h = (x - hc[0]) * cos_h - (y - hc[1]) * sin_h  # along the long axis (left-anterior)
    v_h = (x - hc[0]) * sin_h + (y - hc[1]) * cos_h
    heart_r = (u_h / (62.0 * s)) ** 2 + (v_h / (42.0 * s)) ** 2 + (
        (t - hc[2] - 0.15 * u_h) / (50.0 * s)) ** 2
    heart_fat = heart_r <= 1.25
    heart = heart_r <= 1.0
    hu[heart_fat & cavity] = FAT
    hu[heart] = MUSCLE if not contrast else blood
    if contrast:  # myocardium of the left ventricle as a darker ring
        lv = ((x - hc[0] - 18 * s) / (30.0 * s)) ** 2 + ((y - hc[1]) / (26.0 * s)) ** 2 + (
            (t - hc[2] - 8 * s) / (35.0 * s)) ** 2
        hu[(lv > 0.55) & (lv <= 1.0) & heart] = MUSCLE

    # great vessels, esophagus, trachea and main bronchi (capsule chains), t -> z
    def zyx(xv, yv_, tv):
        return (z_apex - tv, yv_ + y0, xv)

    ytr = yv - y0 - 42.0 * s  # trachea anterior to the spine
    vessels = [
        # ascending aorta, arch, descending aorta
        ([zyx(4 * s, -22 * s, 128 * s), zyx(2 * s, -24 * s, 60 * s), zyx(8 * s, -5 * s, 42 * s),
          zyx(20 * s, ytr + 20 * s, 52 * s), zyx(22 * s, ytr + 26 * s, 120 * s),
          zyx(14 * s, ytr + 30 * s, 320 * s)], 14.0 * s, blood),
        # pulmonary trunk and arteries
        ([zyx(18 * s, -44 * s, 138 * s), zyx(14 * s, -26 * s, 100 * s)], 13.0 * s, blood),
        ([zyx(14 * s, -26 * s, 100 * s), zyx(-42 * s, -6 * s, 98 * s)], 10.0 * s, blood),
        ([zyx(14 * s, -26 * s, 100 * s), zyx(44 * s, 2 * s, 92 * s)], 10.0 * s, blood),
        # superior vena cava and brachiocephalic veins / arteries
        ([zyx(-24 * s, -20 * s, -30 * s), zyx(-24 * s, -18 * s, 132 * s)], 10.0 * s, blood),
        ([zyx(20 * s, -30 * s, -30 * s), zyx(-20 * s, -22 * s, 45 * s)], 7.0 * s, blood),
        ([zyx(-12 * s, -10 * s, -30 * s), zyx(0 * s, -16 * s, 45 * s)], 6.0 * s, blood),
        ([zyx(16 * s, 0 * s, -30 * s), zyx(14 * s, -6 * s, 45 * s)], 5.5 * s, blood),
        # esophagus
        ([zyx(6 * s, ytr + 16 * s, -30 * s), zyx(10 * s, ytr + 14 * s, 320 * s)], 7.0 * s,
         MUSCLE),
    ]
    vessel_mask = np.zeros(shape, bool)
    for line, radius, val in vessels:
        for box, dist in paint_tubes(grid, line, radius):
            m = dist <= radius
            hu[box][m] = val
            vessel_mask[box] |= dist <= radius + 3.0

    carina = zyx(0.0, ytr, 75 * s)
    hil_r = zyx(-40 * s, ytr + 6 * s, 96 * s)
    hil_l = zyx(42 * s, ytr + 10 * s, 106 * s)
    airway_lines = [([zyx(0.0, ytr - 4 * s, -40 * s), carina], 9.0 * s),
                    ([carina, hil_r], 6.5 * s), ([carina, hil_l], 5.8 * s)]
    airway_mask = np.zeros(shape, bool)
    for line, radius in airway_lines:
        for box, dist in paint_tubes(grid, line, radius, margin_mm=2.5):
            wall = dist <= radius + 2.0 * s
            lumen = dist <= radius
            hu[box][wall & ~lumen] = MUSCLE
            hu[box][lumen] = AIR
            labels[box][lumen] = Label.AIRWAY
            airway_mask[box] |= wall

    # --- lungs -------------------------------------------------------------------------------
    lungs = np.zeros(shape, np.uint8)
    for side, sign in ((Label.RIGHT_LUNG, -1.0), (Label.LEFT_LUNG, 1.0)):  # right: x < 0 (LPS)
        xl = sign * 0.50 * ac
        u = np.clip(t / (70.0 * s), 0.0, 1.0)
        apex_c = (u * (2.0 - u)) ** 0.5  # rounded apex (dome over ~70 mm)
        ap = apex_c * (0.85 + 0.15 * np.clip(t / (150.0 * s), 0.0, 1.0))  # deeper at the base
        lung_sec = superellipse(x - xl, yb - 0.1 * bc_post, 0.64 * ac * apex_c + 1e-3,
                                1.15 * bc_post * ap + 1e-3, 2.4) <= 1.0
        dome_top = (192.0 if side == Label.RIGHT_LUNG else 204.0) * s
        r2 = ((x - sign * 0.45 * ac) / ac) ** 2 + (yb / bc_post) ** 2 * 0.6
        # domes fall laterally and most posteriorly (deep posterior costophrenic recess);
        # v2: a rounder dome, ~50 mm from its top to the lateral costophrenic angle
        dome_k = 62.0 if lesions is None else 165.0
        t_dia = (dome_top + dome_k * s * r2 + 42.0 * s * np.clip(yb / bc_post, 0, 1) ** 1.5
                 - 8.0 * s * np.clip(-yb / bc_ant, 0, 1))
        mediast = (np.abs(x - 2.0 * s) < 15.0 * s) & (t > 0)
        region = lung_sec & cavity & (t > 0) & (t < t_dia) & ~mediast & ~spine_block \
            & ~heart_fat & ~vessel_mask & ~airway_mask & (d_out < -2.0)
        region &= (sign * x) > 2.0 * s
        lungs[region] = side
        below = lung_sec & cavity & (t >= t_dia) & (t < t_dia + 80 * s) & ~spine_block
        if side == Label.RIGHT_LUNG:
            hu[below & ~vessel_mask] = LIVER
        else:
            hu[below & ~vessel_mask] = SPLEEN
            fundus = below & (t < t_dia + 25 * s) & (yb < 0.1 * bc_post) & (x > 20 * s)
            hu[fundus & (t < t_dia + 8 * s)] = AIR  # gastric air bubble (not lung)
            hu[fundus & (t >= t_dia + 8 * s)] = 20.0
    below_all = cavity & chest_z & (lungs == 0) & (hu == -90.0) & (t > 200 * s)
    hu[below_all] = np.where(np.broadcast_to(x, shape)[below_all] < 0, LIVER, 10.0)
    lung_bool = lungs > 0

    # parenchyma with a dependent (posterior) gradient and faint texture
    ylo, yhi = float(y.min()), float(y.max())
    lung_y = np.nonzero(lung_bool.any(axis=(0, 2)))[0]
    if lung_y.size:
        ylo, yhi = float(grid.y[0, lung_y[0], 0]), float(grid.y[0, lung_y[-1], 0])
    post_n = np.clip((y - ylo) / max(yhi - ylo, 1.0), 0, 1)
    # fine texture (sub-resolution vessels and septa) plus slow regional variation
    tex = smooth_field(shape, rng, tuple(2.0 / np.array(grid.spacing_zyx)))
    tex_slow = smooth_field(shape, rng, tuple(12.0 / np.array(grid.spacing_zyx)))
    par = PARENCHYMA_HU + DEPENDENT_HU * post_n ** 1.5 + 8.0 * tex + 10.0 * tex_slow
    hu = np.where(lung_bool, par, hu).astype(np.float32)
    lobes = None
    if lesions is not None:  # v2 anatomy: fissures and lobes
        lobes, fissure = _lobes(grid, rng, lungs, t, yb, bc_ant, bc_post, s)
        hu = np.where(lung_bool, hu * (1.0 - fissure) + BLOOD * fissure, hu).astype(np.float32)

    # --- vessel and bronchial tree -----------------------------------------------------------
    roots = []
    vox_zyx = np.argwhere(lung_bool)
    phys = vox_zyx * np.array(grid.spacing_zyx) + np.array(grid.origin_xyz[::-1])
    sides = lungs[tuple(vox_zyx.T)] if lobes is None else lobes[tuple(vox_zyx.T)]
    units = ((Label.RIGHT_LUNG, hil_r), (Label.LEFT_LUNG, hil_l)) if lobes is None else (
        (1, hil_r), (2, hil_r), (3, hil_r), (4, hil_l), (5, hil_l))
    # v2: sparser, thinner trees; v1's put 10 % of the lung above -100 HU (real: ~3 %)
    per_litre, r_term = (1800, 0.5) if lobes is None else (900, 0.42)
    for side, hil in units:
        cand = phys[sides == side]
        if cand.shape[0] == 0:
            continue
        for art, dz in ((True, 0.0), (False, -15.0 * s)):
            # vessel density per volume is fixed: 1800 terminals per litre, at most 3500
            side_l = cand.shape[0] * float(np.prod(grid.spacing_zyx)) / 1e6
            n_term = int(min(3500, max(50, per_litre * side_l), cand.shape[0]))
            pick = cand[rng.choice(cand.shape[0], size=n_term, replace=False)]
            pick = pick + rng.uniform(-0.5, 0.5, pick.shape) * np.array(grid.spacing_zyx)
            roots.append(((hil[0] + dz, hil[1] + (0.0 if art else -10.0 * s), hil[2]),
                          pick, art))
    tree = grow_tree(roots, rng, step_mm=0.5 * min(grid.spacing_zyx), r_terminal_mm=r_term)
    region = lung_bool | vessel_mask
    tissue, lumen = rasterise_tree(grid, tree, region)
    in_chest = lung_bool | ((hu < -50) & cavity & chest_z)
    tissue = np.where(in_chest, tissue, 0.0)
    lumen = np.where(in_chest, lumen, 0.0)
    bronchus_lumen = lumen > 0.5
    hu = hu * (1.0 - tissue) + BLOOD * tissue
    hu = hu * (1.0 - lumen) + AIR * lumen
    labels[lung_bool] = lungs[lung_bool]

    # --- lesions -------------------------------------------------------------------------------
    if lesions is not None:
        dis = make_disease(lungs, grid.spacing_zyx, rng, lesions,
                           lower_lobe=np.isin(lobes, (3, 5)), airway=bronchus_lumen)
        hu = apply_fill(hu, dis.fill)
        eff = dis.classes == 3
        hu[eff] = EFFUSION_HU
        labels[dis.classes == 1] = Label.GGO
        labels[dis.classes == 2] = Label.CONSOLIDATION
        labels[eff] = Label.EFFUSION
    elif burden > 0:
        les = make_lesions(lungs, grid.spacing_zyx, rng, target_lesion_pct=burden,
                           ggo_fraction=ggo_fraction, crazy_paving=crazy_paving,
                           consolidation_in_ggo=consolidation_in_ggo, bronchograms=False,
                           pattern_pct=pattern_pct)
        fill = les.fill
        # air bronchograms: the real bronchi inside consolidation keep their air
        fill = np.where(bronchus_lumen & (les.classes == 2), 0.0, fill)
        hu = apply_fill(hu, fill)
        labels[les.classes == 1] = Label.GGO
        labels[les.classes == 2] = Label.CONSOLIDATION

    # --- table (carbon-fibre shells around foam), under the back --------------------------------
    if table:
        y_top = y0 + b_post + 2.0
        curve = y_top - 0.00035 * x**2  # slightly concave cradle
        shell = ((y >= curve) & (y < curve + 2.5)) | ((y >= curve + 22.0) & (y < curve + 25.0))
        core = (y >= curve + 2.5) & (y < curve + 22.0)
        width = np.abs(x) < 230.0
        hu[np.broadcast_to(core & width, shape)] = -920.0
        hu[np.broadcast_to(shell & width, shape)] = 250.0
    return hu, labels
