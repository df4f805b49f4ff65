"""Boxes and distances on 3D masks, shared by the segmentation and measurement stages
(numpy arrays in LPS index order, spacings in mm): the padded bounding box of a mask
(:func:`bbox`), the voxels within a distance of a mask computed in that box only
(:func:`within`), and the voxels that cover a distance (:func:`pad_voxels`)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["bbox", "pad_voxels", "within"]


def bbox(mask: np.ndarray, pad: tuple[int, ...] | list[int]) -> tuple[slice, slice, slice]:
    """Bounding box of the non-empty 3D ``mask``, grown by ``pad`` voxels per axis and
    clipped to the array."""
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        nz = np.flatnonzero(mask.any(axis=other))
        out.append(slice(max(0, int(nz[0]) - pad[axis]),
                         min(mask.shape[axis], int(nz[-1]) + 1 + pad[axis])))
    return tuple(out)  # type: ignore[return-value]


def within(mask: np.ndarray, mm: float, spacing_zyx: tuple[float, ...]) -> np.ndarray:
    """Voxels within ``mm`` of ``mask`` (3D Euclidean distance, ``spacing_zyx`` in mm); the
    distance map is computed only in the mask's box padded by ``mm``. All False when
    ``mask`` is empty."""
    out = np.zeros(mask.shape, bool)
    if mask.any():
        box = bbox(mask, pad_voxels(mm, spacing_zyx))
        out[box] = ndimage.distance_transform_edt(~mask[box], sampling=spacing_zyx) <= mm
    return out


def pad_voxels(mm: float, spacing_zyx: tuple[float, ...]) -> list[int]:
    """Voxels per axis that cover ``mm`` (rounded up): the padding of a box around a mask
    for a distance computation of reach ``mm``."""
    return [int(np.ceil(mm / v)) for v in spacing_zyx]
