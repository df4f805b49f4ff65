"""QA flag: dense tissue next to the lung, inside the rib cage, but outside the lung mask.

A lung mask that stops at the edge of aerated lung leaves a consolidated dependent lobe
out, and the lesion % is then too low with no warning. This flag measures what a reader
should look at: voxels of -500..+150 HU (consolidation, atelectasis, effusion) within
``NEAR_MM`` of the lung mask, outside it, inside the bony rib cage of their slice and
outside each lung's convex hull and outside the mediastinum (per image row, the span
between the two lungs' medial edges): the shell between the lung mask and the chest
wall, where a dependent consolidation that the mask left out lies. It is a review
prompt, not a measurement: it also counts pleural effusion, atelectasis, partial volume,
a large heart bulging beside one lung and the liver or spleen dome where an axial slice
cuts it next to the lung base (TCIA single slices: 0.8-3.2 mL on the near-normal ones,
7.2-9.8 mL on A046441's consolidated ones; ``docs/accuracy.md``).

Rib cage: per axial slice, the convex hull of bone (> 300 HU) voxels, shrunk by
``WALL_MM`` (rib cortex, intercostal muscle, parietal pleura, extrapleural fat).

The flag is computed on a grid of about ``GRID_MM`` (every n-th voxel along each axis
finer than that; each coarse voxel stands for its n voxels): bounded time and memory on a
512 x 512 x 300 scan (on the full grid its distance maps took 3.7 GB and a minute of
CPU), at the precision a review prompt needs (the ten TCIA slices moved by 0.03-0.8 mL).
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from lesionquant._box import bbox, pad_voxels, within
from lesionquant._hull import slice_hulls as _hulls
from lesionquant.segment import LESION_LABELS, LUNG_LABELS, Label

__all__ = ["dense_outside_lung_ml"]

NEAR_MM = 10.0
WALL_MM = 15.0
DENSE_HU = (-500.0, 150.0)
BONE_HU = 300.0
GRID_MM = 2.0


def dense_outside_lung_ml(hu: np.ndarray, labels: np.ndarray,
                          spacing_xyz: tuple[float, float, float]) -> float:
    """Dense tissue inside the rib cage, next to the lung, outside the lung mask, mL.

    Parameters
    ----------
    hu : (Z, Y, X) ndarray
        CT in HU, LPS array order (x towards the patient's left).
    labels : (Z, Y, X) ndarray
        Label map: 1 right lung, 2 left lung, 3 GGO, 4 consolidation (1-4 lung).
    spacing_xyz : tuple of float
        Voxel size, mm.

    Returns
    -------
    float
        Volume, mL (0 when there is no lung).
    """
    lung = np.isin(labels, LUNG_LABELS)
    if not lung.any():
        return 0.0
    step = [max(1, int(GRID_MM // float(v))) for v in spacing_xyz]  # x, y, z
    sx, sy, sz = (float(v) * k for v, k in zip(spacing_xyz, step, strict=True))
    zs = np.flatnonzero(lung.any(axis=(1, 2)))
    sub = (slice(int(zs[0]), int(zs[-1]) + 1, step[2]), slice(None, None, step[1]),
           slice(None, None, step[0]))
    lu_all = lung[sub]
    # Only voxels within NEAR_MM of the lung can be flagged: the work runs in the lung's
    # box padded by NEAR_MM (z) and NEAR_MM + WALL_MM (in-plane), where the rib cage's
    # inner distance is exact for every voxel that can be flagged (a cage edge within
    # WALL_MM of it lies in the box). The cage hull is of whole slices (the ribs reach
    # beyond the box); the row-wise mediastinum and the midline use absolute columns.
    near_vox = pad_voxels(NEAR_MM, (sz, sy, sx))
    wall_vox = pad_voxels(NEAR_MM + WALL_MM, (sz, sy, sx))
    zb, yb, xb = bbox(lu_all, (near_vox[0], wall_vox[1], wall_vox[2]))
    a_full = np.asarray(hu[sub][zb], np.float32)
    cage = _hulls(a_full > BONE_HU)[:, yb, xb]
    a = a_full[:, yb, xb]
    lu = lu_all[zb, yb, xb]
    inner = ndi.distance_transform_edt(cage, sampling=(1e3, sy, sx)) > WALL_MM
    near = within(lu, NEAR_MM, (sz, sy, sx))
    # each lung's own hull (its hilum and fissures), and per image row the span between
    # the right lung's medial edge and the left lung's (mediastinum, heart, spine)
    lab = labels[sub][zb, yb, xb]
    nx = lu.shape[2]
    xs = np.arange(nx)
    mid = lu_all.shape[2] // 2 - xb.start  # the image's midline, in the box's columns
    right = (lab == Label.RIGHT_LUNG) | (np.isin(lab, LESION_LABELS) & (xs < mid))
    left = lu & ~right
    r_max = np.where(right.any(axis=2), nx - 1 - np.argmax(right[..., ::-1], axis=2), -1)
    l_min = np.where(left.any(axis=2), np.argmax(left, axis=2), nx)
    both = (r_max >= 0) & (l_min < nx)
    mediast = both[..., None] & (xs > r_max[..., None]) & (xs < l_min[..., None])
    between = _hulls(right) | _hulls(left) | mediast
    dense = (a >= DENSE_HU[0]) & (a <= DENSE_HU[1])
    flag = dense & ~lu & near & inner & ~between
    return float(flag.sum()) * sx * sy * sz / 1000.0
