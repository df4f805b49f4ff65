"""lesionquant: lung lesion (GGO / consolidation) quantification on chest CT.

The public API is small and lazily imported, so ``import lesionquant`` stays fast:

>>> import lesionquant
>>> lesionquant.Settings().ggo_hu
(-750.0, -300.0)
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from lesionquant._version import __version__
from lesionquant.errors import (
    InvalidInputError,
    LesionQuantError,
    NoLungError,
    NotCTError,
)
from lesionquant.settings import Method, Settings

logging.getLogger(__name__).addHandler(logging.NullHandler())

# name -> module that defines it; imported on first access (PEP 562).
_LAZY = {
    "Scan": "lesionquant.scan",
    "load_scan": "lesionquant.io",
    "quantify": "lesionquant.api",
    "Result": "lesionquant.measure",
    "run_batch": "lesionquant.batch",
}

__all__ = [
    "InvalidInputError",
    "LesionQuantError",
    "Method",
    "NoLungError",
    "NotCTError",
    "Result",
    "Scan",
    "Settings",
    "__version__",
    "load_scan",
    "quantify",
    "run_batch",
]

if TYPE_CHECKING:  # pragma: no cover
    from lesionquant.api import quantify
    from lesionquant.batch import run_batch
    from lesionquant.io import load_scan
    from lesionquant.measure import Result
    from lesionquant.scan import Scan


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lesionquant' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
