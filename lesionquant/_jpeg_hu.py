"""8-bit windowed chest CT slices (JPEG) mapped back to HU by their own tissue peaks.

The MedSeg expert slices and the unlabelled COVID-19-CT-Seg slices are lung-window JPEGs
exported with unknown and varying windows (some saturate the soft tissue). A single
assumed window puts one slice's normal lung at -1250 HU and another's at -800 HU. Each
slice carries two references that do not depend on the disease, though: aerated lung and
soft tissue (chest wall muscle, heart, great vessels). :func:`jpeg_to_hu` finds both
peaks of the slice's own gray-level histogram and maps them linearly to
:data:`LUNG_HU` and :data:`SOFT_TISSUE_HU`:

* **lung peak**: the darkest prominent mode (at least 30 % of the tallest one) of the
  smoothed histogram of the pixels darker than the Otsu threshold, ignoring near-black
  padding (gray < 6); the darkest one, because a severe pneumonia can make its GGO the
  taller mode.
* **soft-tissue peak**: the tallest mode of the pixels brighter than the Otsu threshold
  below the saturation level (gray < 250). When more pixels sit at saturation
  (>= 250) than in that mode's +-8 gray levels, the window cuts through soft tissue and
  the peak is at most 255: the mapping then takes 255 as the soft-tissue level (an upper
  bound on the slope, i.e. the window's top is about soft tissue).
* a slope outside W900..W3000 (:data:`SLOPE_RANGE`; a lung without aerated parenchyma
  left, whose darkest mode is GGO) falls back to the W1500 slope through the soft-tissue
  peak.

No expert label is used, so the mapping is the same for evaluation and calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

__all__ = ["LUNG_HU", "SOFT_TISSUE_HU", "JpegHuMap", "jpeg_to_hu"]

#: Attenuation of normal aerated lung at inspiration (parenchyma with its small vessels), HU.
LUNG_HU = -860.0
#: The soft-tissue mode of a chest slice in a lung window (muscle, heart, vessels), HU.
SOFT_TISSUE_HU = 40.0
#: Plausible lung-window slopes, HU per gray level (windows W900 to W3000; the
#: COVID-19-CT-Seg JPEGs use about W2700).
SLOPE_RANGE = (900.0 / 255.0, 3000.0 / 255.0)
#: Slope of the common lung window W1500, used when the peaks give an implausible one.
DEFAULT_SLOPE = 1500.0 / 255.0


@dataclass(frozen=True)
class JpegHuMap:
    """Linear map of one slice's gray levels to HU.

    Attributes
    ----------
    slope : float
        HU per gray level.
    intercept : float
        HU at gray level 0.
    lung_gray, soft_gray : float
        The lung and soft-tissue peaks found (gray levels; 255 when saturated).
    saturated : bool
        The window cuts through soft tissue (its peak is at or above 255).
    """

    slope: float
    intercept: float
    lung_gray: float
    soft_gray: float
    saturated: bool

    def apply(self, gray: np.ndarray) -> np.ndarray:
        """HU of gray values (float32)."""
        return (np.asarray(gray, np.float32) * self.slope + self.intercept).astype(np.float32)


def _otsu(hist: np.ndarray) -> int:
    p = hist / max(hist.sum(), 1.0)
    levels = np.arange(p.size)
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * levels)
    mt = m0[-1]
    w1 = 1.0 - w0
    between = (mt * w0 - m0) ** 2 / np.maximum(w0 * w1, 1e-12)
    return int(np.argmax(between[:-1]))


def jpeg_to_hu(gray: np.ndarray) -> JpegHuMap:
    """Find a slice's lung and soft-tissue peaks and the linear map gray -> HU.

    Parameters
    ----------
    gray : (Y, X) ndarray
        8-bit gray levels (0..255) of one lung-window slice.

    Returns
    -------
    JpegHuMap
        ``slope`` (HU per gray level), ``intercept`` (HU at gray 0), the two peaks and
        whether the soft tissue is saturated; ``.apply(gray)`` gives HU.
    """
    g = np.clip(np.rint(np.asarray(gray, np.float32)), 0, 255).astype(np.int64)
    hist = np.bincount(g.ravel(), minlength=256).astype(float)
    hist[:6] = 0.0  # padding
    smooth = ndi.gaussian_filter1d(hist, 2.0)
    t = max(_otsu(hist), 20)
    dark = smooth[:t].copy()
    is_max = np.r_[False, (dark[1:-1] >= dark[:-2]) & (dark[1:-1] >= dark[2:]), False]
    cand = np.flatnonzero(is_max & (dark >= 0.3 * dark.max()))
    lung = int(cand[0]) if cand.size else int(np.argmax(dark))
    bright = smooth[t:250]
    soft = t + int(np.argmax(bright)) if bright.size else 255
    near = hist[max(soft - 8, 0):min(soft + 9, 250)].sum()
    saturated = bool(soft >= 245 or hist[250:].sum() > near)
    if saturated:
        soft = 255
    slope = (SOFT_TISSUE_HU - LUNG_HU) / max(soft - lung, 1)
    if not SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1]:
        # no aerated lung left (diffuse disease) or a freak histogram: keep the
        # soft-tissue anchor and assume the common lung window's width (W1500)
        slope = DEFAULT_SLOPE
    intercept = SOFT_TISSUE_HU - slope * soft
    return JpegHuMap(float(slope), float(intercept), float(lung), float(soft), saturated)
