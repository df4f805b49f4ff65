"""Random fields and resampling helpers shared by the phantom and the lesion inserter.

Everything here is vectorised: smooth random fields are drawn on a coarse grid and
upsampled (trilinear), which is how a few seconds suffice for a 512x512x300 volume.
Arrays are numpy ``(z, y, x)`` views; sizes in voxels unless a name says ``_mm``.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.ndimage as ndi

logger = logging.getLogger(__name__)

__all__ = ["correlated_noise", "gaussian_blob", "random_rotation", "resize", "smooth_field"]


def resize(array: np.ndarray, shape: tuple[int, int, int], *, order: int = 1) -> np.ndarray:
    """Resample a 3D array to ``shape`` with voxel centres aligned (grid mode).

    Parameters
    ----------
    array : (Z, Y, X) ndarray
        Input; float for ``order=1``, integer labels for ``order=0``.
    shape : tuple of int
        Output ``(Z, Y, X)``.
    order : {0, 1}
        0 nearest (labels), 1 trilinear (continuous fields).

    Returns
    -------
    (Z, Y, X) ndarray
        float32 for ``order=1``, the input dtype for ``order=0``.
    """
    if tuple(array.shape) == tuple(shape):
        return array.astype(np.float32) if order == 1 else array.copy()
    import torch  # heavy import, only when resampling is needed

    with torch.no_grad():
        if order == 0:
            t = torch.from_numpy(np.ascontiguousarray(array).astype(np.uint8))[None, None]
            out = torch.nn.functional.interpolate(t, size=tuple(shape), mode="nearest-exact")
            return out[0, 0].numpy().astype(array.dtype)
        t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
        out = torch.nn.functional.interpolate(
            t, size=tuple(shape), mode="trilinear", align_corners=False
        )
        return out[0, 0].numpy()


def smooth_field(
    shape: tuple[int, ...],
    rng: np.random.Generator,
    scale_vox: float | tuple[float, ...],
) -> np.ndarray:
    """A smooth Gaussian random field with zero mean and unit standard deviation.

    White noise is drawn on a grid about ``scale_vox / 2`` times coarser than ``shape``,
    smoothed with a Gaussian of one coarse voxel and upsampled trilinearly, so the cost
    does not depend on the correlation length.

    Parameters
    ----------
    shape : tuple of int
        Output shape (2D or 3D).
    rng : numpy.random.Generator
        Source of randomness (seeded by the caller).
    scale_vox : float or tuple of float
        Correlation length in voxels, per axis or for all axes.

    Returns
    -------
    ndarray of float32
    """
    scale = np.broadcast_to(np.asarray(scale_vox, dtype=float), (len(shape),))
    factor = np.maximum(scale / 2.0, 1.0)
    coarse = tuple(int(max(2, np.ceil(n / f)) + 2) for n, f in zip(shape, factor, strict=False))
    white = rng.standard_normal(coarse, dtype=np.float32)
    field = ndi.gaussian_filter(white, 1.0, mode="wrap")
    if len(shape) == 3:
        big = resize(field, tuple(int(np.rint(c * f)) for c, f in zip(coarse, factor,
                                                                      strict=True)))
    else:
        big = ndi.zoom(field, list(factor), order=1)
    big = big[tuple(slice(0, n) for n in shape)]
    std = float(big.std())
    return ((big - big.mean()) / (std if std > 0 else 1.0)).astype(np.float32)


def correlated_noise(
    shape: tuple[int, ...],
    rng: np.random.Generator,
    *,
    sigma_vox: float = 0.7,
) -> np.ndarray:
    """CT-like noise: white noise smoothed in-plane, rescaled to unit standard deviation.

    Reconstruction kernels correlate CT noise over about a voxel in-plane, so smoothed
    rather than white noise gives the grain of a real scan.

    Parameters
    ----------
    shape : tuple of int
        ``(Z, Y, X)`` (or ``(Y, X)``).
    rng : numpy.random.Generator
    sigma_vox : float
        In-plane Gaussian correlation, voxels.

    Returns
    -------
    ndarray of float32, unit standard deviation.
    """
    white = rng.standard_normal(shape, dtype=np.float32)
    axes = (len(shape) - 2, len(shape) - 1)
    smooth = ndi.gaussian_filter(white, sigma_vox, axes=axes, truncate=3.0)
    # analytic std of smoothed unit white noise: sqrt(sum of squared kernel weights)
    x = np.arange(-int(3 * sigma_vox + 0.5), int(3 * sigma_vox + 0.5) + 1)
    k = np.exp(-0.5 * (x / sigma_vox) ** 2)
    k /= k.sum()
    smooth /= float(np.sqrt((k**2).sum()) ** 2)
    return smooth


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def gaussian_blob(
    centre: np.ndarray,
    sigma_mm: np.ndarray,
    rot: np.ndarray,
    spacing_zyx: np.ndarray,
    shape: tuple[int, int, int],
) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """An anisotropic, rotated Gaussian blob rasterised in its own bounding box.

    Parameters
    ----------
    centre : (3,) ndarray
        Centre, voxel index (z, y, x).
    sigma_mm : (3,) ndarray
        Standard deviations along the blob's own axes, mm.
    rot : (3, 3) ndarray
        Rotation; column ``k`` is the blob's axis ``k`` in (z, y, x).
    spacing_zyx : (3,) ndarray
        Voxel size, mm.
    shape : tuple of int
        Shape of the volume the box is clipped to.

    Returns
    -------
    (box, g) or None
        ``box`` the slices of the +-3 sigma bounding box (clipped to the volume) and ``g``
        the float32 profile ``exp(-|R^T d / sigma|^2 / 2)`` on it (``d`` in mm); ``None``
        when the box falls outside the volume.
    """
    half = np.ceil(3.0 * sigma_mm.max() / spacing_zyx).astype(int)
    lo = np.maximum(centre.astype(int) - half, 0)
    hi = np.minimum(centre.astype(int) + half + 1, shape)
    if np.any(hi <= lo):
        return None
    grids = np.meshgrid(*[(np.arange(a, b) - cc) * s for a, b, cc, s in
                          zip(lo, hi, centre, spacing_zyx, strict=False)],
                        indexing="ij", sparse=True)
    # q = |R^T d / sigma|^2, evaluated with broadcasting
    q = 0.0
    for k in range(3):
        comp = rot[0, k] * grids[0] + rot[1, k] * grids[1] + rot[2, k] * grids[2]
        q = q + (comp / sigma_mm[k]) ** 2
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=False))
    return box, np.exp(-0.5 * q).astype(np.float32)
