"""The learned method (``Method.MODEL``): where the torch model plugs in.

Empty until the model lands. What goes here (one module each):

* a weights registry: the weights shipped inside the package (a few MB, e.g.
  ``lesionquant/segment/model/weights/*.pt``) with their sha256, found without network;
* device handling: :func:`lesionquant.segment.resolve_device` resolves
  ``Settings.device`` (``"auto" | "cpu" | "cuda[:N]"``) once; torch is imported only here;
* inference: a lung stage and/or a lesion stage following the contract of
  :mod:`lesionquant.segment` (:class:`~lesionquant.segment.LungStage`,
  :class:`~lesionquant.segment.LesionStage`):

  - lungs ``(image, settings) -> sitk.Image`` uint8 0 / 1 right / 2 left, in the
    geometry of ``image``;
  - lesions ``(image, lungs, settings) -> LesionOutput(mask, classes=None)``: a binary
    lesion mask, and optionally a learned GGO / consolidation class map
    (``Label.GGO`` / ``Label.CONSOLIDATION``); without one, the common step splits the
    mask by the HU bands. Minimum lesion size, restriction to the lungs and the label
    map are the common steps, not the model's.

  Then set ``IMPLEMENTATION = Implementation(lungs=..., lesions=...,
  weights_sha256=...)`` below. A stage not learned yet may reuse the classical one
  (``lesionquant.segment.classical.lung_stage``); ``Settings(lung_method=...,
  lesion_method=...)`` already mixes methods per stage.

Until then both stages raise :class:`~lesionquant.errors.WeightsError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from lesionquant.errors import WeightsError
from lesionquant.segment._contract import Implementation

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from lesionquant.segment._settings import Settings

__all__ = ["IMPLEMENTATION"]


def _no_weights(settings: Settings) -> NoReturn:
    raise WeightsError(
        "no learned model weights are shipped yet; use method='classical'",
        source="lesionquant.segment.model",
    )


def _lung_stage(image: sitk.Image, settings: Settings) -> sitk.Image:
    _no_weights(settings)


def _lesion_stage(image: sitk.Image, lungs: sitk.Image, settings: Settings) -> NoReturn:
    _no_weights(settings)


#: The learned method's stages (both raise WeightsError until weights ship).
IMPLEMENTATION = Implementation(lungs=_lung_stage, lesions=_lesion_stage)
