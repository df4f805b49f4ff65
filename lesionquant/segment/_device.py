"""Resolve the compute device once: ``"auto" | "cpu" | "cuda[:N]"``.

torch is imported here, lazily, and only when a device other than ``"cpu"`` has to be
checked, so the classical pipeline never pays for importing it.
"""

from __future__ import annotations

import logging

from lesionquant.errors import LesionQuantError

__all__ = ["DeviceError", "resolve_device"]

logger = logging.getLogger(__name__)


class DeviceError(LesionQuantError):
    """An explicitly requested device is not available."""


def resolve_device(spec: str = "auto") -> str:
    """Return the device string to run on.

    Parameters
    ----------
    spec : str
        ``"auto"`` (CUDA device 0 when torch sees one, else CPU), ``"cpu"`` or
        ``"cuda"`` / ``"cuda:N"``.

    Returns
    -------
    str
        ``"cpu"`` or ``"cuda:N"``.

    Raises
    ------
    DeviceError
        ``spec`` names a CUDA device that torch cannot see (or torch is missing).

    Examples
    --------
    >>> resolve_device("cpu")
    'cpu'
    """
    dev = str(spec).strip().lower()
    if dev == "cpu":
        return "cpu"
    if not (dev in ("auto", "cuda") or dev.startswith("cuda:")):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', not {spec!r}")
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        if dev == "auto":
            logger.info("device auto: torch not importable, using cpu")
            return "cpu"
        raise DeviceError(f"torch is not importable ({exc})", source=f"device {spec!r}") from exc
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if dev == "auto":
        chosen = "cuda:0" if n > 0 else "cpu"
        logger.info("device auto: chose %s (%d CUDA device(s) visible)", chosen, n)
        return chosen
    index = 0 if dev == "cuda" else int(dev.split(":", 1)[1])
    if index >= n:
        raise DeviceError(
            f"CUDA device {index} requested but {n} visible; use device='cpu' or 'auto'",
            source=f"device {spec!r}",
        )
    return f"cuda:{index}"
