"""lesion_sides: label maps with lesions read back as lung sides."""

from __future__ import annotations

import numpy as np

from lesionquant.segment import lesion_sides


def test_lesions_take_the_side_of_the_nearest_lung_voxel_when_the_lungs_touch():
    # Right lung x < 10, left lung x >= 10, touching (one connected component).
    labels = np.zeros((6, 8, 20), np.uint8)
    labels[:, :, :10] = 1
    labels[:, :, 10:] = 2
    labels[1:5, 2:6, 1:8] = 3  # a large right-lung lesion
    labels[2:4, 3:5, 16:18] = 4  # a small left-lung lesion
    out = lesion_sides(labels)
    assert (out[1:5, 2:6, 1:8] == 1).all()
    assert (out[2:4, 3:5, 16:18] == 2).all()
    assert set(np.unique(out)) == {1, 2}
    assert (labels[1:5, 2:6, 1:8] == 3).all()  # the input is not changed


def test_lesion_only_map_uses_the_midline_and_no_lesion_map_is_copied():
    labels = np.zeros((3, 4, 30), np.uint8)
    labels[:, :, 2:8] = 3
    labels[:, :, 22:28] = 4
    out = lesion_sides(labels)
    assert (out[:, :, 2:8] == 1).all() and (out[:, :, 22:28] == 2).all()
    plain = np.ones((2, 2, 2), np.uint8)
    assert np.array_equal(lesion_sides(plain), plain)
