"""The public stages: the chosen method's stage between the method-independent steps."""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk

from lesionquant.errors import InvalidInputError
from lesionquant.segment._common import (
    assemble,
    check_image,
    check_lungs,
    drop_small,
    split_by_hu,
)
from lesionquant.segment._contract import implementation
from lesionquant.segment._orient import from_lps, orientation, to_lps
from lesionquant.segment._settings import Settings
from lesionquant.segment._sides import lesion_sides

__all__ = ["method_name", "segment_lesions", "segment_lungs", "weights_sha256"]

logger = logging.getLogger(__name__)


def segment_lungs(image: sitk.Image, settings: Settings | None = None) -> sitk.Image:
    """Segment the right and left lungs, keeping dense (consolidated) lung.

    Parameters
    ----------
    image : SimpleITK.Image
        3D CT in HU (any orientation; spacing in mm).
    settings : Settings, optional
        ``Settings.stage_methods()[0]`` picks the method; its config (e.g.
        ``classical_lungs``), ``min_lung_area_cm2`` and ``bases_only_*`` apply.

    Returns
    -------
    SimpleITK.Image
        ``sitkUInt8`` in the geometry of ``image``: 0 background, 1 right lung, 2 left lung.

    Raises
    ------
    NoLungError
        The scan holds no lung (or less than ``min_lung_area_cm2`` in every slice, or only
        the lung bases of an abdominal scan).
    InvalidInputError
        ``image`` is not a 3D scalar image.
    WeightsError
        A learned method was asked for and its weights are missing.
    """
    s = settings or Settings()
    check_image(image, "segment_lungs")
    lungs = implementation(s.stage_methods()[0]).lungs(image, s)
    check_lungs(lungs, s)
    return lungs


def segment_lesions(
    image: sitk.Image, lungs: sitk.Image, settings: Settings | None = None
) -> sitk.Image:
    """Find GGO and consolidation inside the lungs.

    Parameters
    ----------
    image : SimpleITK.Image
        3D CT in HU.
    lungs : SimpleITK.Image
        Lung labels in the geometry of ``image`` (0 background, 1 right, 2 left; a label
        map with lesions is read back as lung sides first, each lesion voxel taking the
        side of the nearest lung voxel).
    settings : Settings, optional
        ``Settings.stage_methods()[1]`` picks the method; its config (e.g.
        ``classical_lesions``), the density bands and ``min_lesion_volume_ml`` apply.

    Returns
    -------
    SimpleITK.Image
        ``sitkUInt8`` label map in the geometry of ``image``: 0 background, 1 right lung,
        2 left lung, 3 GGO, 4 consolidation (:class:`~lesionquant.segment.Label`).
    """
    s = settings or Settings()
    if image.GetSize() != lungs.GetSize():
        raise InvalidInputError(
            f"lung mask size {lungs.GetSize()} differs from image size {image.GetSize()}",
            source="segment_lesions",
        )
    sides_img = _sides(lungs, image)
    out = implementation(s.stage_methods()[1]).lesions(image, sides_img, s)
    sides = sitk.GetArrayViewFromImage(sides_img)
    mask = (sitk.GetArrayViewFromImage(out.mask) > 0) & (sides > 0)
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    mask = drop_small(mask, voxel_ml, s.min_lesion_volume_ml)
    hu = sitk.GetArrayViewFromImage(image)
    if out.classes is None:
        classes = split_by_hu(mask, hu, s)
    else:
        classes = np.where(mask, sitk.GetArrayViewFromImage(out.classes), 0).astype(np.uint8)
        missing = mask & (classes == 0)
        if missing.any():
            classes[missing] = split_by_hu(missing, hu, s)[missing]
    labels = sitk.GetImageFromArray(assemble(sides, classes))
    labels.CopyInformation(image)
    logger.debug("lesions: %d lesion voxels", int(mask.sum()))
    return labels


def _sides(lungs: sitk.Image, image: sitk.Image) -> sitk.Image:
    """``lungs`` as ``uint8`` lung sides 0/1/2 in the voxel order of ``image`` (lesion
    labels read back as sides on the LPS-oriented map; a map stored in another
    orientation than the scan re-oriented to the scan's)."""
    same_order = orientation(lungs) == orientation(image)
    oriented, _ = to_lps(lungs)
    labels = sitk.GetArrayFromImage(oriented).astype(np.uint8)
    if (labels > 2).any():
        labels = lesion_sides(labels)
    elif lungs.GetPixelID() == sitk.sitkUInt8 and same_order:
        return lungs
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(oriented)
    return from_lps(out, orientation(image), lungs if same_order else image)


def method_name(settings: Settings) -> str:
    """The segmentation method as one word: ``"classical"``, ``"model"``, or
    ``"lungs:model+lesions:classical"`` when the stages differ (no ``,`` or ``=``: it goes
    into the DICOM SEG's algorithm parameters)."""
    lungs, lesions = settings.stage_methods()
    if lungs is lesions:
        return lungs.value
    return f"lungs:{lungs.value}+lesions:{lesions.value}"


def weights_sha256(settings: Settings) -> str | None:
    """sha256 of the learned weights the settings' stages use (``None`` for none; several
    joined by ``,``)."""
    shas = []
    for method in dict.fromkeys(settings.stage_methods()):
        fn = implementation(method).weights_sha256
        sha = fn(settings) if fn is not None else None
        if sha:
            shas.append(sha)
    return ",".join(shas) or None
