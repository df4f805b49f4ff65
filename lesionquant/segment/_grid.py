"""Grid helpers shared by the segmentation stages (numpy arrays in LPS index order).

* :func:`block_mean` / :func:`block_upsample`: the ~2 mm working grid of the heavy
  morphology, made by averaging integer blocks of voxels, and its exact inverse
  (every full-resolution voxel takes the value of its block).
* :func:`bbox`: the padded bounding box of a mask, where the stages crop their work.
* :func:`within` / :func:`within_inplane`: the voxels within a distance of a mask, in
  3D (computed in the mask's padded box only) or slice by slice.
* mm to voxels: :func:`pad_voxels` (enough voxels to cover a distance), :func:`half_width`
  (box half-widths), :func:`window` (odd box sizes), :func:`block_factors`.

:func:`bbox`, :func:`within` and :func:`pad_voxels` live in :mod:`lesionquant._box` (the
measurement's QA flag uses them too) and are re-exported here.

The re-orientation to LPS and back is :mod:`lesionquant.segment._orient`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lesionquant._box import bbox, pad_voxels, within

__all__ = ["PADDING_HU", "bbox", "block_factors", "block_mean", "block_upsample", "half_width",
           "pad_voxels", "window", "within", "within_inplane"]

#: HU below which a voxel is outside the scanner's field of view (padding -2048/-3024).
PADDING_HU = -1500.0


def block_factors(spacing_zyx: tuple[float, ...], target_mm: float) -> tuple[int, int, int]:
    """Integer block sizes ``(fz, fy, fx)`` that bring each axis close to ``target_mm``."""
    return tuple(max(1, round(target_mm / float(s))) for s in spacing_zyx)  # type: ignore[return-value]


def block_mean(
    hu: np.ndarray, factors: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Average ``hu`` over blocks of ``factors`` voxels.

    Parameters
    ----------
    hu : (Z, Y, X) ndarray
        HU values; padding below :data:`PADDING_HU` counts as air (-1000 HU).
    factors : tuple of int
        Block size ``(fz, fy, fx)``.

    Returns
    -------
    mean_hu : (Z', Y', X') ndarray of float32
        Block means (the last partial block along an axis repeats the edge voxels).
    fov_fraction : (Z', Y', X') ndarray of float32
        Fraction of each block inside the field of view.
    """
    z, y, x = hu.shape
    pads = ((0, -z % factors[0]), (0, -y % factors[1]), (0, -x % factors[2]))
    if any(p[1] for p in pads):
        hu = np.pad(hu, pads, mode="edge")
    n = float(np.prod(factors))
    # sums of integer HU are exact in float32, so the means are the plain block means to
    # the bit (float HU: to float32 rounding)
    total = _block_sum(hu, factors, lambda v: np.maximum(v.astype(np.float32), -1000.0))
    inside = _block_sum(hu, factors, lambda v: (v > PADDING_HU).astype(np.float32))
    return total / np.float32(n), inside / np.float32(n)


def _block_sum(a: np.ndarray, factors: tuple[int, int, int], first) -> np.ndarray:
    """Sums of ``first(a)`` over blocks of ``factors`` voxels (``a``'s shape a multiple of
    them); ``first`` maps a full-resolution slab to float32. The slabs along z are summed
    first (no full-size float copy), then the in-plane blocks of what is left."""
    fz, fy, fx = factors
    acc = first(a[0::fz])
    for k in range(1, fz):
        acc += first(a[k::fz])
    z, y, x = acc.shape
    return acc.reshape(z, y // fy, fy, x // fx, fx).sum(axis=(2, 4), dtype=np.float32)


def block_upsample(
    low: np.ndarray, factors: tuple[int, int, int], shape: tuple[int, int, int],
    offset: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """Nearest (block) upsampling of ``low`` onto a full-resolution box.

    ``offset`` is the full-resolution index of the box's first voxel; ``shape`` its size.
    """
    idx = [
        (np.arange(o, o + n) // f).clip(0, low.shape[i] - 1)
        for i, (o, n, f) in enumerate(zip(offset, shape, factors, strict=True))
    ]
    return low[np.ix_(*idx)]


def within_inplane(mask: np.ndarray, mm: float, spacing_zyx: tuple[float, ...]) -> np.ndarray:
    """Voxels within ``mm`` of ``mask`` in their own slice (in-plane Euclidean distance,
    ``spacing_zyx`` in mm); all False when ``mask`` is empty."""
    if not mask.any():
        return np.zeros(mask.shape, bool)
    return ndimage.distance_transform_edt(~mask, sampling=(1e6, *spacing_zyx[1:])) <= mm


def half_width(mm: float, spacing_zyx: tuple[float, ...]) -> tuple[int, ...]:
    """Box half-widths in voxels for ``mm`` along each axis.

    In-plane at least one voxel (partial volume spans a voxel whatever its size); along z
    zero when the slices are thicker than ``mm / 0.75``.
    """
    z = int(np.floor(mm / spacing_zyx[0] + 0.5)) if mm >= 0.75 * spacing_zyx[0] else 0
    return (z, *(max(1, int(np.floor(mm / sp + 0.5))) for sp in spacing_zyx[1:]))


def window(mm: float, spacing_zyx: tuple[float, ...]) -> tuple[int, ...]:
    """Odd box sizes (voxels) about ``mm`` wide; at least 3 in-plane, 1 along thick z."""
    z = 2 * int(mm / (2.0 * spacing_zyx[0])) + 1
    return (z, *(max(3, 2 * int(mm / (2.0 * sp) + 0.5) + 1) for sp in spacing_zyx[1:]))
