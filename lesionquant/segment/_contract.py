"""The contract every segmentation method implements, and the registry of methods.

A method is two stages (:class:`LungStage`, :class:`LesionStage`) registered under a
:class:`~lesionquant.segment.Method`. :func:`lesionquant.segment.segment_lungs` and
:func:`~lesionquant.segment.segment_lesions` pick the stage of the method the settings
name for it (``Settings.stage_methods()``), so any lung method combines with any lesion
method, and apply the method-independent steps (:mod:`lesionquant.segment._common`)
around it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from lesionquant.segment._settings import Method

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from lesionquant.segment._settings import Settings

__all__ = ["Implementation", "LesionOutput", "LesionStage", "LungStage", "implementation",
           "register"]


class LungStage(Protocol):
    """``(image, settings) -> lungs``.

    ``image`` is the scan (3D ``SimpleITK.Image`` in HU, any orientation, spacing in mm),
    already checked to be 3D scalar. Returns a ``sitkUInt8`` image in the geometry of
    ``image``: 0 background, 1 right lung, 2 left lung (dense, consolidated lung
    included; no airway, gas or padding). Raises
    :class:`~lesionquant.errors.NoLungError` when it finds no lung at all; the checks on
    the mask's size (``min_lung_area_cm2``, ``bases_only_*``) follow for every method.
    """

    def __call__(self, image: sitk.Image, settings: Settings) -> sitk.Image: ...


@dataclass(frozen=True)
class LesionOutput:
    """What a lesion stage finds, before the method-independent steps.

    Attributes
    ----------
    mask : SimpleITK.Image
        ``sitkUInt8`` 0/1 in the geometry of the scan: the lesion voxels (GGO or
        consolidation). Voxels outside the lungs are ignored; components smaller than
        ``min_lesion_volume_ml`` are dropped afterwards.
    classes : SimpleITK.Image or None
        Optional ``sitkUInt8`` map of :data:`Label.GGO <lesionquant.segment.Label>` /
        :data:`Label.CONSOLIDATION` over the mask (a learned class map, or the classical
        method's split that reads vessels inside a lesion by their background). ``None``:
        split by the voxel's HU, consolidation from ``Settings.consolidation_hu[0]`` up.
    """

    mask: sitk.Image
    classes: sitk.Image | None = None


class LesionStage(Protocol):
    """``(image, lungs, settings) -> LesionOutput``.

    ``lungs`` is ``sitkUInt8`` 0/1 right/2 left in the geometry of ``image`` (a label map
    with lesions has been read back as lung sides already).
    """

    def __call__(self, image: sitk.Image, lungs: sitk.Image,
                 settings: Settings) -> LesionOutput: ...


@dataclass(frozen=True)
class Implementation:
    """A segmentation method: its two stages and what identifies the algorithm.

    Attributes
    ----------
    lungs, lesions : LungStage, LesionStage
        The stages.
    weights_sha256 : callable or None
        ``(settings) -> str | None``: sha256 of the weights the stages use (learned
        methods), recorded in the result's provenance and the DICOM SEG.
    """

    lungs: LungStage
    lesions: LesionStage
    weights_sha256: Callable[[Settings], str | None] | None = None


#: Built-in methods: the module whose ``IMPLEMENTATION`` holds the stages (imported when
#: first used, so the classical pipeline never imports torch).
_BUILTIN = {
    Method.CLASSICAL: "lesionquant.segment.classical",
    Method.MODEL: "lesionquant.segment.model",
}
_REGISTERED: dict[Method, Implementation] = {}


def register(method: Method | str, impl: Implementation | None) -> None:
    """Use ``impl`` for ``method`` from now on (instead of the built-in module); ``None``
    goes back to the built-in one."""
    if impl is None:
        _REGISTERED.pop(Method(method), None)
    else:
        _REGISTERED[Method(method)] = impl


def implementation(method: Method | str) -> Implementation:
    """The stages of ``method``."""
    method = Method(method)
    impl = _REGISTERED.get(method)
    if impl is None:
        impl = importlib.import_module(_BUILTIN[method]).IMPLEMENTATION
    return impl
