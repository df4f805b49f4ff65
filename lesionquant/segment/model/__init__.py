"""The learned segmentation model: a 2D U-Net with a lung head and a lesion head.

* :func:`segment_lungs_model`, :func:`segment_lesions_model`: the stages of
  ``method="model"`` (same contract as the classical stages).
* :func:`load_model`: the shipped weights (sha256-checked, ``weights_only=True``), loaded
  once per process and device.
* :class:`LesionNet`, :func:`normalise_hu`: the network and its input.

Training code and the model card: ``models/`` in the source repository.
"""

from __future__ import annotations

from lesionquant.segment.model._net import HU_WINDOW, SPACING_MM, LesionNet, normalise_hu
from lesionquant.segment.model._stages import (
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

__all__ = [
    "DEFAULT_WEIGHTS",
    "HU_WINDOW",
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
