"""The learned method (``Method.MODEL``): a 2D U-Net with a lung head and a lesion head.

* :data:`IMPLEMENTATION`: the lung and lesion stages of the segment contract
  (:mod:`lesionquant.segment`), run on ``Settings.device`` (resolved once by
  :func:`lesionquant.segment.resolve_device`). The lung stage returns the network's lungs
  (0 / 1 right / 2 left); the lesion stage returns the network's lesion mask, which the
  method-independent steps restrict to the lungs, clean of small parts and split into GGO
  and consolidation by the HU bands (the reproducible default for the endpoint).
* :func:`segment_lungs_model`, :func:`segment_lesions_model`: the same stages as plain
  functions with an explicit device; ``segment_lesions_model(..., classes="learned")``
  uses the network's own GGO / consolidation class (the experts' definition).
* :func:`load_model`: the shipped weights (sha256-checked, ``weights_only=True``), loaded
  once per process and device; :func:`weights_info` reads the registry without loading.
* :class:`LesionNet`, :func:`normalise_hu`: the network and its input.

Training code and the model card: ``models/`` in the source repository.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lesionquant.segment._contract import Implementation, LesionOutput
from lesionquant.segment._device import resolve_device
from lesionquant.segment.model._net import HU_WINDOW, SPACING_MM, LesionNet, normalise_hu
from lesionquant.segment.model._stages import (
    lesion_mask_model,
    model_labels,
    segment_lesions_model,
    segment_lungs_model,
)
from lesionquant.segment.model._weights import (
    DEFAULT_WEIGHTS,
    LoadedModel,
    load_model,
    weights_info,
    weights_path,
)

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from lesionquant.segment._settings import Settings

__all__ = [
    "DEFAULT_WEIGHTS",
    "HU_WINDOW",
    "IMPLEMENTATION",
    "SPACING_MM",
    "LesionNet",
    "LoadedModel",
    "load_model",
    "model_labels",
    "normalise_hu",
    "segment_lesions_model",
    "segment_lungs_model",
    "weights_info",
    "weights_path",
]


def _lung_stage(image: sitk.Image, settings: Settings) -> sitk.Image:
    return segment_lungs_model(image, settings, device=resolve_device(settings.device))


def _lesion_stage(image: sitk.Image, lungs: sitk.Image, settings: Settings) -> LesionOutput:
    return LesionOutput(mask=lesion_mask_model(image, device=resolve_device(settings.device),
                                               lungs=lungs))


def _weights_sha256(settings: Settings) -> str:
    # Checks the file against the registry (WeightsError when it differs) and loads it
    # once per process: the hash recorded is the one of the weights that ran.
    return load_model(resolve_device(settings.device)).sha256


#: The learned method's stages.
IMPLEMENTATION = Implementation(lungs=_lung_stage, lesions=_lesion_stage,
                                weights_sha256=_weights_sha256)
