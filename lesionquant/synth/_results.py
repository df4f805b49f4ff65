"""Frozen result objects of the generators (what a caller gets back, with the truth)."""

from __future__ import annotations

from dataclasses import dataclass, field

import SimpleITK as sitk

__all__ = ["Insertion", "Phantom"]


@dataclass(frozen=True)
class Phantom:
    """A procedural chest CT and its exact truth.

    Attributes
    ----------
    image : SimpleITK.Image
        CT in HU, ``sitkInt16``, LPS (identity direction), spacing in mm.
    labels : SimpleITK.Image
        ``sitkUInt8`` label map in the image's geometry: 0 background, 1 right lung,
        2 left lung, 3 GGO, 4 consolidation, 5 airway (trachea and main bronchi),
        6 pleural effusion (v2 generator; fluid that is not lung).
    lung_ml, right_lung_ml, left_lung_ml : float
        Lung volume (labels 1-4), mL; per side (lesions counted with their lung).
    lesion_ml, ggo_ml, consolidation_ml : float
        Lesion volumes (labels 3+4, 3, 4), mL.
    lesion_pct : float
        ``100 * lesion_ml / lung_ml``.
    airway_ml : float
        Trachea and main bronchi lumen (label 5), mL.
    noise_hu : float
        Standard deviation of the added image noise, HU.
    seed : int
        Seed that reproduces the phantom exactly.
    params : dict
        All generator parameters (JSON-ready), for provenance.
    effusion_ml : float
        Pleural effusion (label 6, v2 generator only; not lung), mL.
    """

    image: sitk.Image = field(repr=False)
    labels: sitk.Image = field(repr=False)
    lung_ml: float
    right_lung_ml: float
    left_lung_ml: float
    lesion_ml: float
    ggo_ml: float
    consolidation_ml: float
    lesion_pct: float
    airway_ml: float
    noise_hu: float
    seed: int
    params: dict = field(default_factory=dict, repr=False)
    effusion_ml: float = 0.0

    def truth(self) -> dict[str, float]:
        """The true volumes as a flat JSON-ready dict (units in the keys)."""
        return {k: getattr(self, k) for k in (
            "lung_ml", "right_lung_ml", "left_lung_ml", "lesion_ml", "ggo_ml",
            "consolidation_ml", "lesion_pct", "airway_ml", "effusion_ml")}


@dataclass(frozen=True)
class Insertion:
    """A real CT with inserted COVID-19-pattern lesions and their exact truth.

    Attributes
    ----------
    image : SimpleITK.Image
        The host CT with lesions, HU, same pixel type and geometry as the input.
    labels : SimpleITK.Image
        ``sitkUInt8``: the input lung labels (1 right, 2 left) with 3 GGO and
        4 consolidation written over the lesion voxels, 6 pleural effusion (v2).
    lung_ml : float
        Lung volume of the mask, mL.
    lesion_ml, ggo_ml, consolidation_ml : float
        Inserted volumes (label counts times voxel volume), mL.
    lesion_pct : float
        ``100 * lesion_ml / lung_ml``.
    host_noise_hu : float
        Noise level estimated on the host and matched inside the lesions, HU.
    seed : int
    params : dict
    effusion_ml : float
        Pleural effusion inserted (label 6, v2 model only; not lung), mL.
    """

    image: sitk.Image = field(repr=False)
    labels: sitk.Image = field(repr=False)
    lung_ml: float
    lesion_ml: float
    ggo_ml: float
    consolidation_ml: float
    lesion_pct: float
    host_noise_hu: float
    seed: int
    params: dict = field(default_factory=dict, repr=False)
    effusion_ml: float = 0.0

    def truth(self) -> dict[str, float]:
        """The true volumes as a flat JSON-ready dict (units in the keys)."""
        return {k: getattr(self, k) for k in (
            "lung_ml", "lesion_ml", "ggo_ml", "consolidation_ml", "lesion_pct",
            "effusion_ml")}
