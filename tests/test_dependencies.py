"""Every runtime dependency declared in pyproject.toml is used by the package."""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Distribution -> the module the package imports (or, for the pydicom pixel-data
#: plugins, the decoder name pydicom reaches them by).
_MODULE = {"scikit-image": "skimage", "pillow": "PIL", "SimpleITK": "SimpleITK"}
_PYDICOM_PLUGINS = {"pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle"}


def _runtime_dependencies() -> list[str]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return [re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0] for d in data["project"]["dependencies"]]


def test_every_declared_dependency_is_imported_by_the_package():
    source = "\n".join(p.read_text(encoding="utf-8")
                       for p in (REPO / "lesionquant").rglob("*.py"))
    unused = []
    for dist in _runtime_dependencies():
        if dist in _PYDICOM_PLUGINS:
            continue  # checked below: pydicom decodes compressed pixel data through them
        module = _MODULE.get(dist, dist.replace("-", "_"))
        if not re.search(rf"^\s*(import|from) {re.escape(module)}\b", source, re.M):
            unused.append(dist)
    assert unused == []


def test_pydicom_decodes_through_the_pylibjpeg_plugins():
    from pydicom.pixels.decoders import (
        JPEG2000LosslessDecoder,
        JPEGBaseline8BitDecoder,
        RLELosslessDecoder,
    )

    for decoder in (JPEG2000LosslessDecoder, JPEGBaseline8BitDecoder, RLELosslessDecoder):
        assert "pylibjpeg" in decoder.available_plugins, decoder.UID.name
