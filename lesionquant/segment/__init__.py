"""Segmentation: scan image -> lung sides -> lesion label map. One contract, several methods.

Both stages take and return :class:`SimpleITK.Image` objects in the scan's geometry:

* :func:`segment_lungs` ``(image, settings) -> uint8`` 0 background, 1 right lung,
  2 left lung;
* :func:`segment_lesions` ``(image, lungs, settings) -> uint8`` label map
  (:class:`Label`: 0 background, 1 right lung, 2 left lung, 3 GGO, 4 consolidation;
  lesion voxels are lung voxels).

Each stage runs the method the settings name for it (``Settings.method``, or per stage
``Settings.lung_method`` / ``Settings.lesion_method``), so learned lungs with classical
lesions is ``Settings(lung_method="model")``. Around the method's stage, the
method-independent steps run once for every method (:mod:`._common`): the input check
and the lung mask's size checks; lesion labels read back as lung sides; lesions kept
inside the lungs, components below ``min_lesion_volume_ml`` dropped, GGO / consolidation
by the HU bands (unless the method gives a class map), the label map assembled.

Layout::

    segment/
      __init__.py   this contract (public names below; other packages import only these)
      labels.py     Label (the label codes) and the coded concepts of the DICOM SEG
      _settings.py  Settings and Method (re-exported by lesionquant.settings)
      _contract.py  LungStage, LesionStage, LesionOutput; the method registry
      _stages.py    segment_lungs / segment_lesions: method stage + common steps
      _common.py    the method-independent steps
      _config.py    frozen nested config base (to_dict / from_dict / dotted replace)
      _grid.py, _orient.py, _sides.py, _device.py   shared helpers
      classical/    Method.CLASSICAL (one module per concern, each with its config)
      model/        Method.MODEL (weights registry, device, inference)

**A new method plugs in** by (1) a value of :class:`Method`, (2) a module exposing
``IMPLEMENTATION = Implementation(lungs=..., lesions=..., weights_sha256=...)`` named in
``_contract._BUILTIN`` (or :func:`register` at run time), (3) its config, if it has
tuned numbers, as a frozen :class:`Config` field of :class:`Settings`. The stages follow
:class:`LungStage` / :class:`LesionStage`; a lesion stage returns a
:class:`LesionOutput` (mask, optional class map) and leaves the common steps to this
package. The learned model goes to :mod:`lesionquant.segment.model`.

Light to import: SimpleITK and the classical method load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lesionquant.segment._config import Config
from lesionquant.segment._contract import (
    Implementation,
    LesionOutput,
    LesionStage,
    LungStage,
    implementation,
    register,
)
from lesionquant.segment._device import DeviceError, resolve_device
from lesionquant.segment._settings import Method, Settings
from lesionquant.segment.labels import LESION_LABELS, LUNG_LABELS, SIDE_LABELS, Label

if TYPE_CHECKING:  # pragma: no cover
    from lesionquant.segment._orient import from_lps, to_lps
    from lesionquant.segment._sides import lesion_sides
    from lesionquant.segment._stages import (
        method_name,
        segment_lesions,
        segment_lungs,
        weights_sha256,
    )
    from lesionquant.segment.classical import ClassicalLesions, ClassicalLungs

# name -> module that defines it; imported on first access (PEP 562).
_LAZY = {
    "segment_lungs": "lesionquant.segment._stages",
    "segment_lesions": "lesionquant.segment._stages",
    "method_name": "lesionquant.segment._stages",
    "weights_sha256": "lesionquant.segment._stages",
    "lesion_sides": "lesionquant.segment._sides",
    "to_lps": "lesionquant.segment._orient",
    "from_lps": "lesionquant.segment._orient",
    "ClassicalLungs": "lesionquant.segment.classical",
    "ClassicalLesions": "lesionquant.segment.classical",
}

__all__ = [
    "LESION_LABELS",
    "LUNG_LABELS",
    "SIDE_LABELS",
    "ClassicalLesions",
    "ClassicalLungs",
    "Config",
    "DeviceError",
    "Implementation",
    "Label",
    "LesionOutput",
    "LesionStage",
    "LungStage",
    "Method",
    "Settings",
    "from_lps",
    "implementation",
    "lesion_sides",
    "method_name",
    "register",
    "resolve_device",
    "segment_lesions",
    "segment_lungs",
    "to_lps",
    "weights_sha256",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lesionquant.segment' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
