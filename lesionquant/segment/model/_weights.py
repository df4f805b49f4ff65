"""Weights registry: the shipped network files, their sha256, loading once per process.

The weights are package data (``lesionquant/segment/model/weights/``), listed in
``weights/registry.json`` with their sha256; nothing is downloaded. A file whose sha256
differs from the registry's is refused (:class:`~lesionquant.errors.WeightsError`), and
files are read with ``torch.load(weights_only=True)`` (no code runs on load).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lesionquant.errors import WeightsError

__all__ = ["DEFAULT_WEIGHTS", "LoadedModel", "load_model", "weights_info", "weights_path"]

logger = logging.getLogger(__name__)

#: Name of the weights used when none is named.
DEFAULT_WEIGHTS = "lesionnet-v4"


@dataclass(frozen=True)
class LoadedModel:
    """A network ready to run: the module (eval mode, on ``device``), its identity,
    ``cons_bias``, the consolidation-vs-GGO logit bias of its learned class stored with
    the weights (``predict_labels(cons_bias=...)``; 0 when the file names none), and
    ``lesion_low``, the hysteresis of its lesion mask (``predict_labels(lesion_low=...)``;
    None, the argmax alone, when the file names none)."""

    net: object  # LesionNet or NetPair; typed loosely so this module imports without torch
    name: str
    sha256: str
    device: str
    cons_bias: float = 0.0
    lesion_low: float | None = None


def _folder() -> Path:
    return Path(str(resources.files("lesionquant.segment.model") / "weights"))


def _registry() -> dict[str, dict[str, str]]:
    path = _folder() / "registry.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read the weights registry ({exc})", source=path) from exc


def weights_info(name: str = DEFAULT_WEIGHTS) -> dict[str, str]:
    """Registry entry of ``name``: ``file``, ``sha256`` and a one-line ``description``."""
    reg = _registry()
    if name not in reg:
        raise WeightsError(f"unknown weights {name!r}; shipped: {sorted(reg)}",
                           source="registry.json")
    return reg[name]


def weights_path(name: str = DEFAULT_WEIGHTS) -> Path:
    """Path of the weights file of ``name`` inside the installed package."""
    return _folder() / weights_info(name)["file"]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_model(device: str = "cpu", name: str = DEFAULT_WEIGHTS) -> LoadedModel:
    """Load (once per process and device) the network ``name`` onto ``device``.

    Parameters
    ----------
    device : str
        A resolved device, ``"cpu"`` or ``"cuda:N"``
        (see :func:`lesionquant.segment.resolve_device`).
    name : str
        Registry name of the weights.

    Returns
    -------
    LoadedModel

    Raises
    ------
    WeightsError
        The file is missing, its sha256 differs from the registry's, or it does not load.
    """
    return _load(str(device), str(name))


@functools.lru_cache(maxsize=4)
def _load(device: str, name: str) -> LoadedModel:
    import torch

    from lesionquant.segment.model._net import build_net

    info = weights_info(name)
    path = weights_path(name)
    if not path.is_file():
        raise WeightsError("weights file missing from the installed package", source=path)
    digest = sha256_file(path)
    if digest != info["sha256"]:
        raise WeightsError(f"sha256 {digest[:12]}... differs from the registry's "
                           f"{info['sha256'][:12]}...", source=path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        net = build_net(blob["config"])
        net.load_state_dict(blob["state_dict"])
        cons_bias = float(blob.get("cons_bias", 0.0))
        lesion_low = blob.get("lesion_low")
        lesion_low = None if lesion_low is None else float(lesion_low)
    except Exception as exc:
        raise WeightsError(f"cannot load the weights ({exc})", source=path) from exc
    net.eval().to(device)
    logger.info("loaded weights %s (sha256 %s) on %s", name, digest[:12], device)
    return LoadedModel(net=net, name=name, sha256=digest, device=device, cons_bias=cons_bias,
                       lesion_low=lesion_low)
