"""Small synthetic chests with known geometry for the segmentation unit tests."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lesionquant.synth import make_phantom


def toy_chest(
    shape_zyx: tuple[int, int, int] = (40, 96, 128),
    spacing_zyx: tuple[float, float, float] = (5.0, 3.0, 3.0),
    lung_hu: float = -850.0,
    noise_hu: float = 10.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A body (40 HU) in air (-1000 HU) with two ellipsoidal lungs.

    Returns the HU array and the truth labels (1 right = low x, 2 left), (z, y, x).
    The lungs fill z 4..35; the body is a cylinder filling every slice.
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape_zyx
    sz, sy, sx = spacing_zyx
    z, y, x = np.meshgrid(np.arange(nz) * sz, np.arange(ny) * sy, np.arange(nx) * sx,
                          indexing="ij")
    cy, cx = ny * sy / 2, nx * sx / 2
    hu = np.full(shape_zyx, -1000.0, np.float32)
    body = ((y - cy) / (0.45 * ny * sy)) ** 2 + ((x - cx) / (0.46 * nx * sx)) ** 2 <= 1
    hu[body] = 40.0
    labels = np.zeros(shape_zyx, np.uint8)
    cz = nz * sz / 2
    for value, side in ((1, -1), (2, 1)):
        lx = cx + side * 0.21 * nx * sx
        lung = (((z - cz) / (0.40 * nz * sz)) ** 2 + ((y - cy) / (0.33 * ny * sy)) ** 2
                + ((x - lx) / (0.16 * nx * sx)) ** 2) <= 1
        hu[lung] = lung_hu
        labels[lung] = value
    hu += rng.normal(0, noise_hu, shape_zyx).astype(np.float32)
    return hu, labels


def to_image(arr: np.ndarray, spacing_zyx: tuple[float, float, float]) -> sitk.Image:
    img = sitk.GetImageFromArray(np.round(arr).astype(np.int16))
    img.SetSpacing(tuple(float(v) for v in spacing_zyx[::-1]))
    img.SetOrigin((-150.0, -150.0, -100.0))
    return img


@pytest.fixture(scope="session")
def toy() -> tuple[sitk.Image, np.ndarray]:
    hu, labels = toy_chest()
    return to_image(hu, (5.0, 3.0, 3.0)), labels


@pytest.fixture(scope="session")
def small_phantom():
    """A small full-chest phantom from lesionquant.synth with 10 % lesions."""
    return make_phantom(size_xyz=(160, 160, 80), spacing_mm=(2.2, 2.2, 4.0), seed=3,
                              lesion_burden_pct=10.0)
