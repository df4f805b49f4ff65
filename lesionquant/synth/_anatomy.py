"""Procedural chest anatomy on a coarse voxel grid (the phantom's geometry model).

All shapes are written in patient millimetres, LPS: ``x`` towards the patient's left,
``y`` towards the back (posterior), ``z`` towards the head. ``t`` is the depth below the
lung apex (mm, positive caudal), which is how the landmarks are placed:

========================  ==========================================================
landmark                  depth below apex (adult, ``patient_scale=1``)
========================  ==========================================================
lung apex                 0 mm
carina                    75 mm
heart centre              165 mm (centre 30 mm to the patient's left, 32 mm anterior)
right / left dome top     192 / 204 mm (the right hemidiaphragm is higher: liver)
posterior recesses        ~265 mm (costophrenic recesses lowest dorsally)
========================  ==========================================================

The model is deliberately simple (superellipses, ellipsoids, capsules, a random
branching tree) but keeps what matters for lung quantification: lung shape and volume,
the mediastinum and heart indent (left lung smaller), airways that are not lung, vessels
that are lung, bones and fat/muscle that a threshold must reject.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grid:
    """Voxel-centre coordinates of a grid, mm, as broadcastable arrays (z, y, x)."""

    x: np.ndarray  # (1, 1, X)
    y: np.ndarray  # (1, Y, 1)
    z: np.ndarray  # (Z, 1, 1)
    spacing_zyx: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.z.shape[0], self.y.shape[1], self.x.shape[2])

    def index_of(self, pts_zyx_mm: np.ndarray) -> np.ndarray:
        """Nearest voxel index (N, 3) for physical points given in (z, y, x) mm."""
        org = np.array(self.origin_xyz[::-1])
        return np.rint((pts_zyx_mm - org) / np.array(self.spacing_zyx)).astype(int)


def superellipse(x, y, ax, ay, p=2.0):
    """Normalised radius ``(|x/ax|^p + |y/ay|^p)^(1/p)`` (1 on the boundary)."""
    return (np.abs(x / ax) ** p + np.abs(y / ay) ** p) ** (1.0 / p)


def capsule_distance(grid: Grid, a_zyx, b_zyx, box) -> np.ndarray:
    """Distance (mm) from voxels in ``box`` to the segment a-b (points in z, y, x mm)."""
    zs, ys, xs = box
    z = grid.z[zs]
    y = grid.y[:, ys]
    x = grid.x[:, :, xs]
    a = np.asarray(a_zyx, float)
    ab = np.asarray(b_zyx, float) - a
    denom = float(ab @ ab) or 1.0
    t = ((z - a[0]) * ab[0] + (y - a[1]) * ab[1] + (x - a[2]) * ab[2]) / denom
    t = np.clip(t, 0.0, 1.0)
    return np.sqrt((z - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2
                   + (x - a[2] - t * ab[2]) ** 2)


def paint_tubes(grid: Grid, polyline_zyx, radius_mm, margin_mm=0.0):
    """Yield ``(box, distance_mm)`` for each segment of a polyline (for painting tubes)."""
    pts = np.asarray(polyline_zyx, float)
    org = np.array(grid.origin_xyz[::-1])
    sp = np.array(grid.spacing_zyx)
    shape = np.array(grid.shape)
    for a, b in itertools.pairwise(pts):
        lo = np.floor((np.minimum(a, b) - radius_mm - margin_mm - org) / sp).astype(int) - 1
        hi = np.ceil((np.maximum(a, b) + radius_mm + margin_mm - org) / sp).astype(int) + 2
        lo = np.clip(lo, 0, shape)
        hi = np.clip(hi, 0, shape)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(int(u), int(v)) for u, v in zip(lo, hi, strict=False))
        yield box, capsule_distance(grid, a, b, box)


@dataclass
class TreeSegments:
    """Centreline points of a branching tree: positions (N, 3) z,y,x mm, radius, kind."""

    points: np.ndarray
    radius: np.ndarray
    kind: np.ndarray  # 0 vessel, 1 bronchus


def grow_tree(
    roots,
    rng: np.random.Generator,
    *,
    step_mm: float,
    r_terminal_mm: float = 0.35,
    bronchus_min_mm: float = 1.6,
) -> TreeSegments:
    """Grow space-filling branching trees (pulmonary arteries, veins, bronchi).

    Each root owns a cloud of terminal points sampled uniformly in its lung. A branch runs
    from its start half-way towards the centroid of its cloud and bifurcates there; the
    cloud is split in two along its principal axis and each half feeds one child. Radii
    follow Murray's law with equal terminals (``r = r_terminal * n_terminals ** (1/3)``),
    so vessels taper from ~6 mm at the hilum to sub-millimetre near the pleura and the
    tree fills the whole lung evenly, as the real vasculature does. Arteries thicker than
    ``bronchus_min_mm`` get a companion bronchus (lumen 0.75 r, wall ~0.25 r) beside
    them; those make the air bronchograms inside consolidation.

    Parameters
    ----------
    roots : list of (start_zyx_mm, terminals (N, 3) zyx mm, is_artery)
    rng : numpy.random.Generator
    step_mm : float
        Sampling step of the centreline points, mm.
    r_terminal_mm : float
        Radius of a terminal branch, mm.
    bronchus_min_mm : float
        Arteries at least this thick get a bronchus.

    Returns
    -------
    TreeSegments
    """
    pts: list[np.ndarray] = []
    rads: list[np.ndarray] = []
    kinds: list[np.ndarray] = []
    ref = np.array([0.0, 0.0, 1.0])

    def emit(a, b, r, artery):
        length = float(np.linalg.norm(b - a))
        n = max(2, int(np.ceil(length / step_mm)) + 1)
        seg = a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)
        pts.append(seg)
        rads.append(np.full(n, r))
        kinds.append(np.zeros(n, np.uint8))
        if artery and r >= bronchus_min_mm and length > 0:
            d = (b - a) / length
            side = np.cross(d, ref)
            if np.linalg.norm(side) < 0.3:
                side = np.cross(d, np.array([1.0, 0.0, 0.0]))
            side /= np.linalg.norm(side)
            rb = 0.75 * r
            pts.append(seg + side * (r + rb + 0.6))
            rads.append(np.full(n, rb))
            kinds.append(np.ones(n, np.uint8))

    for start, terminals, artery in roots:
        stack = [(np.asarray(start, float), np.asarray(terminals, float))]
        while stack:
            a, cloud = stack.pop()
            n = cloud.shape[0]
            r = r_terminal_mm * n ** (1.0 / 3.0)  # Murray: r^3 = r1^3 + r2^3
            if n == 1:
                emit(a, cloud[0], r, artery)
                continue
            c = cloud.mean(axis=0)
            gap = c - a
            bif = a + gap * rng.uniform(0.35, 0.6) + rng.normal(0, 0.04, 3) * np.linalg.norm(gap)
            emit(a, bif, r, artery)
            centred = cloud - c
            # principal axis by power iteration (cheap, deterministic given rng)
            v = centred[rng.integers(n)] + 1e-6
            for _ in range(4):
                v = centred.T @ (centred @ v)
                v /= np.linalg.norm(v) + 1e-12
            proj = centred @ v
            order = np.argsort(proj, kind="stable")
            k = n // 2
            stack.append((bif, cloud[order[:k]]))
            stack.append((bif, cloud[order[k:]]))
    if not pts:
        empty = np.zeros((0, 3))
        return TreeSegments(empty, np.zeros(0), np.zeros(0, np.uint8))
    logger.debug("vessel trees: %d centreline points", sum(p.shape[0] for p in pts))
    return TreeSegments(np.concatenate(pts), np.concatenate(rads), np.concatenate(kinds))


def rasterise_tree(grid: Grid, tree: TreeSegments, region: np.ndarray):
    """Tube occupancies of a tree: tissue (wall or vessel) and lumen, 0..1 per voxel.

    One Euclidean distance transform to the centreline points (with the index of the
    nearest point) gives, per voxel, the distance to the nearest centreline and that
    point's radius and kind; occupancy is a one-voxel linear partial-volume ramp.

    Returns
    -------
    tissue, lumen : (Z, Y, X) ndarray of float32
    """
    shape = grid.shape
    tissue = np.zeros(shape, np.float32)
    lumen = np.zeros(shape, np.float32)
    if tree.points.shape[0] == 0:
        return tissue, lumen
    idx = grid.index_of(tree.points)
    keep = np.all((idx >= 0) & (idx < np.array(shape)), axis=1)
    idx, rad, kind = idx[keep], tree.radius[keep], tree.kind[keep]
    # restrict the transform to the region's bounding box (the lungs and hila)
    nz = np.argwhere(region)
    lo = np.maximum(nz.min(0) - 2, 0)
    hi = np.minimum(nz.max(0) + 3, shape)
    inb = np.all((idx >= lo) & (idx < hi), axis=1)
    idx, rad, kind = idx[inb] - lo, rad[inb], kind[inb]
    sub = tuple(int(h - lo_) for h, lo_ in zip(hi, lo, strict=False))
    rad_vol = np.zeros(sub, np.float32)
    kind_vol = np.zeros(sub, np.uint8)
    order = np.argsort(rad)  # thick last, so they win shared voxels
    flat = np.ravel_multi_index(tuple(idx[order].T), sub)
    rad_vol.ravel()[flat] = rad[order]
    kind_vol.ravel()[flat] = kind[order]
    dist, ind = ndi.distance_transform_edt(rad_vol == 0, sampling=grid.spacing_zyx,
                                           return_indices=True)
    near = np.ravel_multi_index(tuple(ind), sub)
    del ind
    r_at = rad_vol.ravel()[near].reshape(sub)
    k_at = kind_vol.ravel()[near].reshape(sub)
    vox = float(min(grid.spacing_zyx[1:]))
    wall = np.maximum(0.25 * r_at, 0.6)
    outer = np.where(k_at == 1, r_at + wall, r_at)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=False))
    tissue[box] = _occupancy(outer, dist, vox)
    lumen[box] = np.where(k_at == 1, _occupancy(r_at, dist, vox), 0.0)
    return tissue, lumen


def _occupancy(radius, dist, vox):
    """Partial-volume fraction of a tube of ``radius`` at ``dist`` for voxel size ``vox``.

    A one-voxel linear ramp at the tube surface; tubes thinner than a voxel keep their
    cross-section area (``(2 r / vox)^2`` of a one-voxel ramp), so sub-voxel vessels are
    faint dots rather than voxel-sized ones and the lung's mean density stays right.
    """
    half = 0.5 * vox
    r_eff = np.maximum(radius, half)
    ramp = np.clip((r_eff - dist) / vox + 0.5, 0.0, 1.0)
    return (ramp * np.minimum(1.0, (radius / half) ** 2)).astype(np.float32)
