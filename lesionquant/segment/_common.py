"""The method-independent steps, applied to every method's output.

* lungs: the input check, then the size checks of the lung mask (``min_lung_area_cm2``;
  lung bases of an abdominal scan);
* lesions: a label map with lesions read back as lung sides before the stage; after it,
  lesions outside the lungs dropped, connected lesions below ``min_lesion_volume_ml``
  dropped, GGO / consolidation by the HU bands (or the stage's class map), label assembly.

Arrays are numpy views ``(z, y, x)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lesionquant.errors import InvalidInputError, NoLungError
from lesionquant.segment._grid import bbox
from lesionquant.segment._orient import to_lps
from lesionquant.segment.labels import Label

if TYPE_CHECKING:  # pragma: no cover
    from lesionquant.segment._settings import Settings

__all__ = ["assemble", "check_image", "check_lungs", "drop_small", "split_by_hu"]

#: Lesions are 26-connected: a lesion continues through a voxel's corner.
_FULL = ndimage.generate_binary_structure(3, 3)


def check_image(image: sitk.Image, source: str) -> None:
    """TypeError / InvalidInputError unless ``image`` is a 3D scalar SimpleITK image."""
    if not isinstance(image, sitk.Image):
        raise TypeError(f"image must be a SimpleITK.Image, not {type(image).__name__}")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidInputError(
            f"expected a 3D scalar CT image, got {image.GetDimension()}D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s)",
            source=source,
        )


def check_lungs(lungs: sitk.Image, settings: Settings) -> None:
    """NoLungError when the lung mask does not cover the lungs.

    The largest axial cross-section (on the LPS-oriented mask) must reach
    ``min_lung_area_cm2``; a mask smaller than ``bases_only_max_ml`` spanning less than
    ``bases_only_max_z_fraction`` of the scanned length is the lung bases of an abdominal
    scan.
    """
    oriented, _ = to_lps(lungs)
    labels = sitk.GetArrayViewFromImage(oriented)
    spacing = tuple(float(v) for v in oriented.GetSpacing()[::-1])
    area_cm2 = np.count_nonzero(labels.reshape(labels.shape[0], -1), axis=1).max() * (
        spacing[1] * spacing[2] / 100.0
    )
    if area_cm2 < settings.min_lung_area_cm2:
        raise NoLungError(
            f"largest axial lung cross-section is {area_cm2:.1f} cm^2, below "
            f"min_lung_area_cm2={settings.min_lung_area_cm2:g}: the scan does not cover "
            "the lungs",
            source="segment_lungs",
        )
    zs = np.flatnonzero(labels.any(axis=(1, 2)))
    volume_ml = np.count_nonzero(labels) * float(np.prod(spacing)) / 1000.0
    coverage = (zs[-1] - zs[0] + 1) / labels.shape[0]
    if volume_ml < settings.bases_only_max_ml and coverage < settings.bases_only_max_z_fraction:
        raise NoLungError(
            f"only {volume_ml:.0f} mL of lung in {100 * coverage:.0f} % of the scanned length "
            "(lung bases of an abdominal scan?): the scan does not cover the lungs",
            source="segment_lungs",
        )


def drop_small(mask: np.ndarray, voxel_ml: float, min_ml: float) -> np.ndarray:
    """``mask`` without its 26-connected components smaller than ``min_ml`` (mL)."""
    min_vox = min_ml / voxel_ml
    if not (min_vox > 1 and mask.any()):
        return mask
    box = bbox(mask, [0, 0, 0])
    lab, n = ndimage.label(mask[box], structure=_FULL)
    count = np.bincount(lab.ravel(), minlength=n + 1)
    big = count >= min_vox
    big[0] = False
    out = np.zeros_like(mask)
    out[box] = big[lab]
    return out


def split_by_hu(mask: np.ndarray, hu: np.ndarray, settings: Settings) -> np.ndarray:
    """GGO / consolidation classes (``uint8``, 0 outside ``mask``) by the voxel's HU
    (``hu``: the scan's, or a density the method reads the class from): consolidation at
    or above ``consolidation_hu[0]``, GGO below."""
    cons = mask & (hu >= settings.consolidation_hu[0])
    out = np.zeros(mask.shape, np.uint8)
    out[mask] = Label.GGO
    out[cons] = Label.CONSOLIDATION
    return out


def assemble(sides: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The label map: lung sides with the lesion classes over them (``uint8``)."""
    out = sides.astype(np.uint8, copy=True)
    lesion = classes > 0
    out[lesion] = classes[lesion]
    return out
