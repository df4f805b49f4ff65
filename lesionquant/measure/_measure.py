"""Image-level entry of the measurement stage (SimpleITK in, flat numbers out)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from lesionquant.errors import InvalidInputError
from lesionquant.measure._outside import dense_outside_lung_ml
from lesionquant.measure._quantify import measure_labels
from lesionquant.segment import lesion_sides, to_lps

__all__ = ["measure"]


def measure(
    image: sitk.Image, labelmap: sitk.Image, lungs: sitk.Image | None = None
) -> dict[str, float | int]:
    """Measure volumes, percentages, zones, densities and the severity score.

    Parameters
    ----------
    image : SimpleITK.Image
        CT in HU.
    labelmap : SimpleITK.Image
        Label map (0-4) in the geometry of ``image``.
    lungs : SimpleITK.Image, optional
        Lung sides (1 right, 2 left) covering the lesion voxels too. Without it, each
        lesion voxel takes the side of its nearest lung voxel
        (:func:`lesionquant.segment.lesion_sides`).

    Returns
    -------
    dict
        Flat measurements, units in the names (see ``docs/method.md``).
    """
    if image.GetSize() != labelmap.GetSize():
        raise InvalidInputError(
            f"label map size {labelmap.GetSize()} differs from image size {image.GetSize()}",
            source="measure",
        )
    img, _ = to_lps(image)
    lab_img, _ = to_lps(labelmap)
    hu = sitk.GetArrayViewFromImage(img)
    labels = sitk.GetArrayViewFromImage(lab_img)
    if lungs is not None:
        side = sitk.GetArrayViewFromImage(to_lps(lungs)[0])
    else:
        side = lesion_sides(np.asarray(labels))
    sx, sy, sz = img.GetSpacing()
    out = measure_labels(np.asarray(labels), np.asarray(side), hu, sx * sy * sz / 1000.0)
    # QA flag: dense tissue between the lung mask and the rib cage (consolidation the
    # lung mask may have left out), a review prompt rather than a measurement
    out["qa_dense_outside_lung_ml"] = dense_outside_lung_ml(
        hu, np.asarray(labels), (sx, sy, sz))
    return out
