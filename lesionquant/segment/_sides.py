"""Reading lesion label maps back as lung sides (1 right, 2 left), for every method and
for the measurements (public as :func:`lesionquant.segment.lesion_sides`)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["lesion_sides"]

#: The nearest-side search looks this many voxels around the lesions' bounding box.
_MARGIN_VOX = 8


def lesion_sides(labels: np.ndarray) -> np.ndarray:
    """Labels 3 and above become the side (1 right, 2 left) of the nearest lung voxel.

    Used wherever a label map with lesions (labels 3-4) must be read as lung sides: the
    lesion stage given a previous result, the measurements given no lung map. The two
    lungs often touch (anterior junction), so a lesion's side is decided voxel by voxel,
    not per connected component.

    Parameters
    ----------
    labels : (Z, Y, X) ndarray of uint8
        Label map in LPS index order (x grows towards the patient's left).

    Returns
    -------
    ndarray of uint8
        A copy with labels 3 and above replaced by 1 or 2. The search for the nearest
        side voxel is limited to the lesions' bounding box plus :data:`_MARGIN_VOX`
        (bounded memory); with no side voxel there, the side is that of the voxel's x
        relative to the middle of the lung's extent.
    """
    out = labels.copy()
    extra = labels > 2
    if not extra.any():
        return out
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        nz = np.flatnonzero(extra.any(axis=other))
        box.append(slice(max(0, nz[0] - _MARGIN_VOX),
                         min(labels.shape[axis], nz[-1] + 1 + _MARGIN_VOX)))
    box = tuple(box)
    sub = labels[box]
    side = np.where(sub <= 2, sub, 0).astype(np.uint8)
    if (side > 0).any():
        inds = ndimage.distance_transform_edt(side == 0, return_distances=False,
                                              return_indices=True)
        sub_extra = sub > 2
        side[sub_extra] = side[tuple(i[sub_extra] for i in inds)]
    else:
        xs = np.flatnonzero((labels > 0).any(axis=(0, 1)))
        mid = 0.5 * (xs[0] + xs[-1])
        x = np.arange(box[2].start, box[2].stop)
        side = np.broadcast_to(np.where(x > mid, 2, 1).astype(np.uint8), sub.shape)
    sub_out = out[box]
    sub_out[sub > 2] = side[sub > 2]
    return out
