"""Air and body on the working grid; which air components are lung.

Arrays are ``(z, y, x)`` in LPS index order on the ~2 mm working grid; spacings in mm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lesionquant.segment._config import Config

__all__ = ["CROSS", "INPLANE", "AirConfig", "body_inside", "is_cropped", "largest_component",
           "lung_components"]

logger = logging.getLogger(__name__)

#: 6-connectivity in 3D, and 4-connectivity within a slice.
CROSS = ndimage.generate_binary_structure(3, 1)
INPLANE = np.zeros((3, 3, 3), bool)
INPLANE[1] = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class AirConfig(Config):
    """Which air-like components are lung parenchyma (``docs/method.md``, step 3)."""

    max_gas_share: float = 0.5
    """A component with more than this share of its blocks below the gas threshold is gas
    (bowel gas with stool, stomach): lung, even emphysematous, is mostly above it."""
    min_in_body: float = 0.5
    """A component with less than this share inside the filled body is outside air."""
    min_share_of_largest: float = 0.05
    """Components smaller than this share of the largest kept one are dropped."""
    min_component_ml: float = 0.2
    """Components smaller than this are dropped, mL."""
    cropped_frame_share: float = 0.25
    """The FOV is cropped to the chest when the body covers more than this share of the
    image frame (the body outline is then not closed; outside air is not searched)."""


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of ``mask`` (``mask`` itself when empty)."""
    lab, n = ndimage.label(mask, structure=CROSS)
    if n == 0:
        return mask
    count = np.bincount(lab.ravel())
    count[0] = 0
    return lab == int(count.argmax())


def is_cropped(body: np.ndarray, cfg: AirConfig) -> bool:
    """True when the body fills much of the in-plane image frame (FOV cropped to the chest)."""
    frame = np.concatenate(
        [body[:, 0, :], body[:, -1, :], body[:, :, 0], body[:, :, -1]], axis=1
    )
    return bool(frame.mean() > cfg.cropped_frame_share)


def body_inside(tissue: np.ndarray, in_fov: np.ndarray,
                cfg: AirConfig) -> tuple[np.ndarray, np.ndarray, bool]:
    """The body and where air may be lung.

    Parameters
    ----------
    tissue : (Z, Y, X) ndarray of bool
        Non-air blocks inside the field of view.
    in_fov : (Z, Y, X) ndarray of bool
        Blocks inside the field of view.
    cfg : AirConfig
        ``cropped_frame_share``.

    Returns
    -------
    body_filled : ndarray of bool
        The largest tissue component, filled slice by slice.
    inside : ndarray of bool
        ``body_filled``, or the whole field of view when the body fills the image frame
        (a FOV cropped to the chest: the body outline is not closed).
    cropped : bool
        Whether the FOV is cropped so.
    """
    body = largest_component(tissue)
    body_filled = ndimage.binary_fill_holes(body, structure=INPLANE)
    cropped = is_cropped(body, cfg)
    return body_filled, (in_fov if cropped else body_filled), cropped


def lung_components(lab: np.ndarray, n: int, low: np.ndarray, inside: np.ndarray,
                    voxel_ml: float, gas_mean_hu: float, cfg: AirConfig) -> np.ndarray:
    """Per component of ``lab`` (index 0 is background): True when it is lung.

    Gas (mean below ``gas_mean_hu`` or mostly gas blocks), air outside the body, small
    components and components entirely above or below the largest one (pelvic or bowel
    gas below the diaphragm) are not lung.
    """
    idx = lab.ravel()
    count = np.bincount(idx, minlength=n + 1).astype(np.float64)
    mean = np.bincount(idx, weights=low.ravel(), minlength=n + 1) / np.maximum(count, 1)
    in_body = np.bincount(idx, weights=inside.ravel(), minlength=n + 1) / np.maximum(count, 1)
    gas_frac = np.bincount(idx, weights=(low < gas_mean_hu).ravel(), minlength=n + 1)
    gas_frac /= np.maximum(count, 1)
    keep = (mean >= gas_mean_hu) & (gas_frac <= cfg.max_gas_share) & (in_body >= cfg.min_in_body)
    keep[0] = False
    if keep.any():
        biggest = count[keep].max()
        keep &= count >= max(cfg.min_share_of_largest * biggest, cfg.min_component_ml / voxel_ml)
        objs = ndimage.find_objects(lab)
        main = objs[int(np.argmax(np.where(keep, count, 0))) - 1][0]
        for i in np.flatnonzero(keep):
            zsl = objs[i - 1][0]
            if zsl.stop <= main.start or zsl.start >= main.stop:
                keep[i] = False
    return keep
