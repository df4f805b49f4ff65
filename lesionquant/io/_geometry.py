"""Slice geometry: sort, spacing, gaps, duplicates, gantry tilt -> an orthogonal grid.

Conventions: LPS, mm. A slice's row direction ``r`` and column direction ``c`` come from
ImageOrientationPatient, its normal is ``n = r x c``. Slices are sorted by the projection of
ImagePositionPatient on ``n`` (never by InstanceNumber or file name).

The output grid always has the direction ``(r, c, n)`` (orthonormal), spacing
``(PixelSpacing[1], PixelSpacing[0], dz)`` and the first slice's position as origin, so voxel
``(i, j, k)`` sits at ``origin + i*dx*r + j*dy*c + k*dz*n``.

* **Uniform spacing** (every gap within :data:`UNIFORM_TOL_FRACTION` of the mean, or
  :data:`UNIFORM_TOL_MM`): ``dz`` is the mean gap; no resampling.
* **Irregular spacing** (largest gap at most :data:`MAX_GAP_RATIO` x the median gap):
  resampled along the slice stack onto a uniform grid with dcm2niix's rule (the smallest gap,
  but never more than twice the original slice count), linear interpolation, with a warning.
* **Missing slices** (:func:`missing_slice_gaps`: a gap close to 2, 3, ... times the median
  gap and more than :data:`MISSING_SLICE_RATIO` x each neighbouring gap):
  :class:`~lesionquant.errors.IncompleteSeriesError` naming the positions, unless
  ``allow_gaps`` (then interpolated as irregular spacing, with an ``incomplete series:``
  warning). A gap above :data:`MAX_GAP_RATIO` x the median is refused even then:
  interpolating across it would invent anatomy.
* **Plausible spacing**: PixelSpacing in :data:`PIXEL_SPACING_RANGE_MM`, the slice spacing in
  :data:`SLICE_SPACING_RANGE_MM`, else :class:`~lesionquant.errors.ImplausibleValueError`.
* **Gantry tilt** (slice positions drift in-plane along the stack): each slice is shifted in
  its plane by its drift (bilinear), the dcm2niix correction; the result is an orthogonal grid
  where every voxel sits at its true physical position. A warning names the angle.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lesionquant.errors import GeometryError, ImplausibleValueError, IncompleteSeriesError
from lesionquant.io._header import SliceHeader
from lesionquant.io._pixels import MAX_VOLUME_VOXELS, new_volume

__all__ = [
    "DUPLICATE_TOL_MM",
    "MAX_GAP_RATIO",
    "MISSING_SLICE_RATIO",
    "PIXEL_SPACING_RANGE_MM",
    "SLICE_SPACING_RANGE_MM",
    "StackPlan",
    "build_image",
    "missing_slice_gaps",
    "orientation_key",
    "plan_stack",
]

logger = logging.getLogger(__name__)

DUPLICATE_TOL_MM = 0.01
"""Slices whose positions on the normal differ by less than this are the same position."""
UNIFORM_TOL_MM = 0.01
UNIFORM_TOL_FRACTION = 0.01
"""Gaps within this fraction of the mean gap (or UNIFORM_TOL_MM) count as uniform."""
MAX_GAP_RATIO = 3.0
"""A gap larger than this multiple of the median gap is refused, even with ``allow_gaps``."""
MISSING_SLICE_RATIO = 1.5
"""A gap this many times larger than each neighbouring gap (and close to a multiple of the
median gap) is one or more missing slices, not a change of spacing."""
_MULTIPLE_TOL = 0.15
"""How close (fraction of the median gap) a gap must be to k x median to count as k - 1
missing slices."""
PIXEL_SPACING_RANGE_MM = (0.05, 10.0)
"""Plausible PixelSpacing of a CT image, mm: a 50-500 mm field of view on a 256-1024 matrix
is 0.05-2 mm; 10 mm leaves room for heavily downsampled research exports and coarse test
phantoms (5.6 x 7 mm)."""
SLICE_SPACING_RANGE_MM = (0.05, 20.0)
"""Plausible distance between reconstructed CT slices (and SliceThickness), mm: clinical
reconstructions are 0.5-10 mm apart; no chest CT reconstructs slices more than 20 mm apart."""
TILT_TOL_VOXELS = 0.1
"""In-plane drift across the whole stack below this (in voxels) is not treated as tilt."""
MAX_TILT_DEG = 45.0
"""Steeper apparent tilts are not a gantry tilt but inconsistent positions: refused."""


def orientation_key(orientation: Sequence[float] | None) -> tuple[float, ...] | None:
    """ImageOrientationPatient rounded for grouping slices of one stack."""
    if orientation is None:
        return None
    return tuple(round(float(v), 3) + 0.0 for v in orientation)


def _axes(h: SliceHeader, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    o = np.asarray(h.orientation, dtype=np.float64)
    r, c = o[:3], o[3:]
    nr, nc = np.linalg.norm(r), np.linalg.norm(c)
    if not (abs(nr - 1) < 0.01 and abs(nc - 1) < 0.01 and abs(float(r @ c)) < 0.01):
        raise GeometryError(f"ImageOrientationPatient {tuple(o)} is not two orthogonal unit "
                            "vectors", source=source)
    r = r / nr
    c = c - (r @ c) * r
    c /= np.linalg.norm(c)
    return r, c, np.cross(r, c)


@dataclass(frozen=True)
class StackPlan:
    """How the sorted slices of one series map onto the output grid.

    Attributes
    ----------
    order : tuple of int
        Header indices, one per distinct position, sorted along the normal.
    duplicates : tuple of (int, tuple of int)
        For each position with several files: (kept index, other indices).
    positions_mm : ndarray (N,)
        Distance of each kept slice along the normal from the first, mm.
    drift_mm : ndarray (N, 2)
        In-plane offset (along r, along c) of each slice's position from the first, mm.
    axes : ndarray (3, 3)
        Rows r, c, n.
    origin_mm : ndarray (3,)
        Position of the first sorted slice, LPS.
    spacing_xy_mm : tuple of float
        (dx, dy): spacing along r (between columns) and along c (between rows).
    slice_spacing_mm : float
        Output spacing along n.
    n_out : int
        Output slice count.
    resample_z : bool
        Irregular spacing: interpolate along the stack.
    tilt_deg : float
        Angle between the stack direction and the normal (0 when untilted).
    correct_tilt : bool
        Shift slices in-plane to undo the drift.
    warnings : tuple of str
    """

    order: tuple[int, ...]
    duplicates: tuple[tuple[int, tuple[int, ...]], ...]
    positions_mm: np.ndarray
    drift_mm: np.ndarray
    axes: np.ndarray
    origin_mm: np.ndarray
    spacing_xy_mm: tuple[float, float]
    slice_spacing_mm: float
    n_out: int
    resample_z: bool
    tilt_deg: float
    correct_tilt: bool
    warnings: tuple[str, ...]


def missing_slice_gaps(gaps_mm: np.ndarray) -> np.ndarray:
    """Indices of the gaps that are missing slices (see the module docstring).

    A gap is a missing slice when it is close to ``k`` times the median gap (``k >= 2``,
    within :data:`_MULTIPLE_TOL` x k) and larger than :data:`MISSING_SLICE_RATIO` x every
    neighbouring gap. A change of spacing (a run of larger gaps, as in the dcm_qa variable
    spacing head: 4.0 mm then 7.0 mm) is not a missing slice.

    Examples
    --------
    >>> missing_slice_gaps(np.array([2.0, 2.0, 4.0, 2.0])).tolist()
    [2]
    >>> missing_slice_gaps(np.array([4.0, 4.0, 1.1, 7.0, 7.0])).tolist()
    []
    """
    gaps = np.asarray(gaps_mm, dtype=np.float64)
    if gaps.size < 2:
        return np.zeros(0, dtype=int)
    median = float(np.median(gaps))
    ratio = gaps / median
    k = np.rint(ratio)
    multiple = (k >= 2) & (np.abs(ratio - k) <= _MULTIPLE_TOL * k)
    left = np.r_[np.nan, gaps[:-1]]
    right = np.r_[gaps[1:], np.nan]
    neighbour = np.fmax(left, right)  # the larger existing neighbour
    return np.flatnonzero(multiple & (gaps > MISSING_SLICE_RATIO * neighbour))


def _check_range(name: str, value: float, bounds: tuple[float, float], source: str) -> None:
    lo, hi = bounds
    if not lo <= value <= hi:
        raise ImplausibleValueError(f"{name} {value:g} mm outside the plausible range "
                                    f"{lo:g}-{hi:g} mm for CT", source=source)


def plan_stack(headers: Sequence[SliceHeader], source: str, *,
               allow_gaps: bool = False) -> StackPlan:
    """Sort the slices of one series and decide spacing, duplicates and tilt handling.

    Parameters
    ----------
    headers : sequence of SliceHeader
        Single-frame slices of one series with one size and orientation.
    source : str
        Named in messages (the folder).
    allow_gaps : bool
        Interpolate over missing slices (gaps up to :data:`MAX_GAP_RATIO` x the median) with
        a warning instead of raising :class:`IncompleteSeriesError`.

    Returns
    -------
    StackPlan

    Raises
    ------
    GeometryError
        Missing PixelSpacing, missing positions in a multi-slice series, non-collinear slice
        positions, or a gap above :data:`MAX_GAP_RATIO` x the median.
    IncompleteSeriesError
        Missing slices (without ``allow_gaps``); the message gives their positions.
    ImplausibleValueError
        PixelSpacing or slice spacing outside the plausible range.
    """
    warns: list[str] = []
    first = headers[0]
    if first.pixel_spacing is None:
        raise GeometryError("no valid PixelSpacing (0028,0030); cannot measure in mm",
                            source=source)
    dy, dx = first.pixel_spacing
    for value in (dy, dx):
        _check_range("PixelSpacing", value, PIXEL_SPACING_RANGE_MM, source)
    n_files = len(headers)
    if first.orientation is None or any(h.position is None for h in headers):
        if n_files > 1:
            raise GeometryError(f"{n_files} slices but ImagePositionPatient/"
                                "ImageOrientationPatient missing; cannot order slices",
                                source=source)
        warns.append(f"{source}: no ImagePositionPatient/ImageOrientationPatient; assuming an "
                     "axial slice at the origin")
        axes = np.eye(3)
        pos = np.zeros((1, 3))
    else:
        axes = np.stack(_axes(first, source))
        pos = np.array([h.position for h in headers], dtype=np.float64)
    r, c, n = axes
    along = pos @ n
    order = np.argsort(along, kind="stable")
    along = along[order]
    # Duplicate positions: group runs closer than the tolerance.
    groups: list[list[int]] = [[int(order[0])]]
    for k in range(1, n_files):
        if along[k] - along[k - 1] < DUPLICATE_TOL_MM:
            groups[-1].append(int(order[k]))
        else:
            groups.append([int(order[k])])
    kept = [g[0] for g in groups]
    dups = tuple((g[0], tuple(g[1:])) for g in groups if len(g) > 1)
    rel = pos[kept] - pos[kept[0]]
    positions = rel @ n
    drift = np.stack([rel @ r, rel @ c], axis=1)
    thickness = first.slice_thickness_mm
    n_slices = len(kept)
    if thickness is not None:
        _check_range("SliceThickness", thickness, SLICE_SPACING_RANGE_MM, source)
    if n_slices == 1:
        dz = thickness if thickness and thickness > 0 else 1.0
        warns.append(f"{source}: single slice; loaded as a 3D volume of one slice with z "
                     f"spacing {dz:g} mm ({'SliceThickness' if thickness else 'assumed'})")
        return StackPlan(tuple(kept), dups, positions, drift, axes, pos[kept[0]], (dx, dy),
                         float(dz), 1, False, 0.0, False, tuple(warns))
    gaps = np.diff(positions)
    median_gap = float(np.median(gaps))
    worst = int(np.argmax(gaps))
    if gaps[worst] > MAX_GAP_RATIO * median_gap:
        raise GeometryError(
            f"missing slices: gap of {gaps[worst]:.2f} mm between slices {worst} and "
            f"{worst + 1} (median spacing {median_gap:.2f} mm, limit {MAX_GAP_RATIO:g}x); "
            "refusing to invent anatomy", source=source)
    _check_range("slice spacing", median_gap, SLICE_SPACING_RANGE_MM, source)
    along0 = float(pos[kept[0]] @ n)
    holes = [
        f"{gaps[i]:.2f} mm gap between slices at {along0 + positions[i]:.2f} and "
        f"{along0 + positions[i + 1]:.2f} mm along the normal ({round(gaps[i] / median_gap) - 1}"
        f" slice(s) missing; files {os.path.basename(headers[kept[i]].label)} and "
        f"{os.path.basename(headers[kept[i + 1]].label)})"
        for i in missing_slice_gaps(gaps)]
    if holes and not allow_gaps:
        raise IncompleteSeriesError(
            f"missing slice(s): {'; '.join(holes)}; median spacing {median_gap:.2f} mm; not "
            "quantified (allow_incomplete / --allow-incomplete-series interpolates over it)",
            source=source)
    warns.extend(f"incomplete series: {source}: {hole}; interpolated" for hole in holes)
    total = float(positions[-1])
    mean_gap = total / (n_slices - 1)
    tol = max(UNIFORM_TOL_MM, UNIFORM_TOL_FRACTION * mean_gap)
    uniform = bool(np.all(np.abs(gaps - mean_gap) <= tol))
    if uniform:
        dz, n_out = mean_gap, n_slices
    else:
        n_out = max(2, math.ceil(total / float(gaps.min()) - 0.5) + 1)
        n_out = min(n_out, 2 * n_slices)
        dz = total / (n_out - 1)
        warns.append(
            f"{source}: irregular slice spacing ({gaps.min():.2f} to {gaps.max():.2f} mm, "
            f"median {median_gap:.2f}); resampled linearly to {n_out} slices at {dz:.3f} mm")
    # Gantry tilt: in-plane drift of the positions along the stack.
    coef, *_ = np.linalg.lstsq(positions[:, None], drift, rcond=None)  # drift per mm, (1, 2)
    residual = np.abs(drift - positions[:, None] * coef).max(axis=0)
    if np.any(residual > 0.5 * np.array([dx, dy])):
        raise GeometryError(f"slice positions are not on a straight line (deviation "
                            f"{residual.max():.2f} mm); cannot build a volume", source=source)
    drift_vox = np.abs(drift[-1]) / np.array([dx, dy])
    tilt = math.degrees(math.atan(float(np.hypot(*coef[0]))))
    correct_tilt = bool(np.any(drift_vox > TILT_TOL_VOXELS))
    if tilt > MAX_TILT_DEG:
        raise GeometryError(f"slice positions step mostly within the slice plane (tilt "
                            f"{tilt:.0f} deg > {MAX_TILT_DEG:g}); not a stack of slices",
                            source=source)
    if correct_tilt:
        stated = first.gantry_tilt_deg
        warns.append(
            f"{source}: gantry tilt {tilt:.1f} deg (GantryDetectorTilt "
            f"{'absent' if stated is None else f'{stated:g}'}) corrected: slices shifted "
            "in-plane onto an orthogonal grid (dcm2niix method)")
    return StackPlan(tuple(kept), dups, positions, drift, axes, pos[kept[0]], (dx, dy),
                     float(dz), n_out, not uniform, tilt, correct_tilt, tuple(warns))


def _resample_stack(volume: np.ndarray, plan: StackPlan) -> np.ndarray:
    """Linear interpolation along the normal onto ``plan.n_out`` uniform positions.

    Loops over output slices so that memory stays at one float32 output volume (a single
    vectorised call would need float64 copies of the whole volume).
    """
    target = np.arange(plan.n_out) * plan.slice_spacing_mm
    target[-1] = plan.positions_mm[-1]
    k0 = np.clip(np.searchsorted(plan.positions_mm, target, side="right") - 1, 0,
                 len(plan.positions_mm) - 2)
    p0, p1 = plan.positions_mm[k0], plan.positions_mm[k0 + 1]
    w = np.clip((target - p0) / (p1 - p0), 0.0, 1.0).astype(np.float32)
    out = np.empty((plan.n_out, *volume.shape[1:]), dtype=np.float32)
    for j in range(plan.n_out):  # one blended slice at a time: bounded memory
        np.multiply(volume[k0[j]], 1.0 - w[j], out=out[j], casting="unsafe")
        out[j] += w[j] * volume[k0[j] + 1]
    return out


def build_image(volume: np.ndarray, plan: StackPlan, *, fill_hu: float = -1024.0,
                image=None, source: str | None = None):
    """Turn the sorted slice stack into a SimpleITK image on an orthogonal grid.

    Tilt is corrected first (each acquired slice shifted in its plane), then irregular
    spacing is resampled along the normal, the order dcm2niix uses: interpolation between
    slices then runs along the slice normal, the direction of the slice sensitivity profile.

    Parameters
    ----------
    volume : (N, Y, X) ndarray
        HU slices in ``plan.order``.
    plan : StackPlan
    fill_hu : float
        Value of voxels outside the acquired field after tilt correction.
    image : SimpleITK.Image, optional
        The image whose buffer ``volume`` is (see :func:`lesionquant.io._pixels.new_volume`);
        returned with its geometry set when no resampling is needed (no copy).
    source : str, optional
        Named in error messages.

    Returns
    -------
    SimpleITK.Image
        LPS, direction ``(r, c, n)``; the dtype of ``volume`` (int16 results of
        interpolation are rounded to the nearest integer HU).
    """
    import SimpleITK as sitk

    dx, dy = plan.spacing_xy_mm
    dz = plan.slice_spacing_mm
    out_dtype = volume.dtype
    data = volume
    origin_frame = np.zeros(3)
    if plan.correct_tilt:
        data, origin_frame = _shear_correct(data, plan.drift_mm, dx, dy, fill_hu, source)
    if plan.resample_z:
        data = _resample_stack(data, plan)
    if data is not volume:  # resampled: write into a new image's buffer (no extra copy)
        if out_dtype.kind == "i":
            np.rint(data, out=data)
        image, view = new_volume(data.shape, out_dtype)
        view[...] = data
        del view, data
    elif image is None:
        image = sitk.GetImageFromArray(data)
    r, c, n = plan.axes
    image.SetSpacing((float(dx), float(dy), float(dz)))
    origin = plan.origin_mm + origin_frame[0] * r + origin_frame[1] * c + origin_frame[2] * n
    image.SetOrigin(tuple(float(v) for v in origin))
    image.SetDirection(tuple(float(v) for v in np.stack([r, c, n], axis=1).ravel()))
    return image


def _shear_correct(data: np.ndarray, drift: np.ndarray, dx: float, dy: float,
                   fill_hu: float, source: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Shift every slice in its plane by its drift (bilinear), onto one covering grid.

    In the slice frame ``(r, c, n)`` relative to the first slice, stored pixel ``(i, j)`` of
    slice ``k`` lies at ``(i*dx + a_k, j*dy + b_k)`` with the drift ``(a_k, b_k)``; the output
    grid is axis-aligned in that frame, on the first slice's pixel lattice, and covers every
    slice.
    One ``scipy.ndimage.affine_transform`` per slice (each slice has its own shift) keeps the
    memory at one float32 output volume.
    """
    from scipy import ndimage

    n_z, n_y, n_x = data.shape
    step = np.array([dx, dy])
    # Grid aligned with the first slice's pixels (whole-pixel offset, as dcm2niix does): the
    # first slice is copied without interpolation.
    lo = np.floor(np.minimum(drift.min(axis=0), 0.0) / step + 1e-6) * step
    hi = drift.max(axis=0) + np.array([(n_x - 1) * dx, (n_y - 1) * dy])
    size_x = math.ceil((hi[0] - lo[0]) / dx - 1e-6) + 1
    size_y = math.ceil((hi[1] - lo[1]) / dy - 1e-6) + 1
    if n_z * size_y * size_x > MAX_VOLUME_VOXELS:
        raise GeometryError(f"tilt correction would need a {size_x} x {size_y} x {n_z} grid "
                            "(beyond the size limit)", source=source)
    out = np.empty((n_z, size_y, size_x), dtype=np.float32)
    for k in range(n_z):
        offset = ((lo[1] - drift[k, 1]) / dy, (lo[0] - drift[k, 0]) / dx)
        ndimage.affine_transform(data[k].astype(np.float32, copy=False), np.ones(2),
                                 offset=offset, output_shape=(size_y, size_x), output=out[k],
                                 order=1, mode="constant", cval=fill_hu, prefilter=False)
    return out, np.array([lo[0], lo[1], 0.0])
