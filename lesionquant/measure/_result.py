"""The per-scan result: numbers, label map, input scan and provenance (frozen)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import SimpleITK as sitk

from lesionquant.segment import LESION_LABELS, LUNG_LABELS, Label

if TYPE_CHECKING:  # pragma: no cover
    from lesionquant.scan import Scan

__all__ = ["Provenance", "Result"]


@dataclass(frozen=True)
class Provenance:
    """How a result was made.

    Attributes
    ----------
    version : str
        lesionquant version.
    method : str
        ``"classical"`` or ``"model"``.
    device : str
        Device the segmentation ran on (``"cpu"``, ``"cuda:0"``).
    settings : Mapping
        :meth:`lesionquant.Settings.to_dict` of the settings used.
    timings_s : Mapping
        Wall time per stage (``load``, ``lungs``, ``lesions``, ``measure``, ``total``), s.
    warnings : tuple of str
        Loader and pipeline warnings, one line each.
    series_uid : str
        SeriesInstanceUID (0020,000E) of the scan; ``""`` when unknown.
    weights_sha256 : str or None
        sha256 of the model weights; ``None`` for the classical method.
    """

    version: str
    method: str
    device: str
    settings: Mapping[str, Any]
    timings_s: Mapping[str, float]
    warnings: tuple[str, ...] = ()
    series_uid: str = ""
    weights_sha256: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))
        object.__setattr__(self, "timings_s", MappingProxyType(dict(self.timings_s)))
        object.__setattr__(self, "warnings", tuple(self.warnings))

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready provenance (settings as a compact JSON string)."""
        out: dict[str, Any] = {
            "lesionquant_version": self.version,
            "method": self.method,
            "device": self.device,
            "series_uid": self.series_uid,
            "weights_sha256": self.weights_sha256,
            "settings_json": json.dumps(dict(self.settings), sort_keys=True),
            "warnings": " | ".join(self.warnings),
            "n_warnings": len(self.warnings),
        }
        for stage, seconds in self.timings_s.items():
            out[f"time_{stage}_s"] = round(float(seconds), 4)
        return out


@dataclass(frozen=True, eq=False)
class Result:
    """Lesion quantification of one scan.

    Attributes
    ----------
    measurements : Mapping[str, float | int]
        Flat numbers with units in their names (``lung_ml``, ``lesion_pct``, ...; the full
        list is in ``docs/method.md``).
    labelmap : SimpleITK.Image
        ``uint8`` label map in the scan's geometry: 0 background, 1 right lung, 2 left
        lung, 3 GGO, 4 consolidation.
    lungs : SimpleITK.Image
        ``uint8`` lung sides (0, 1 right, 2 left) including lesion voxels.
    scan : Scan
        The input scan (holds identifiers in memory; they are not in :meth:`to_dict`).
    provenance : Provenance
        Version, method, device, settings, timings, warnings, series UID.
    """

    measurements: Mapping[str, float | int]
    labelmap: sitk.Image = field(repr=False)
    lungs: sitk.Image = field(repr=False)
    scan: Scan = field(repr=False)
    provenance: Provenance = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "measurements", MappingProxyType(dict(self.measurements)))

    def __getitem__(self, key: str) -> float | int:
        """``result["lesion_pct"]`` is ``result.measurements["lesion_pct"]``."""
        return self.measurements[key]

    @property
    def lung_ml(self) -> float:
        """Total lung volume (labels 1-4), mL."""
        return float(self.measurements["lung_ml"])

    @property
    def lesion_pct(self) -> float:
        """Lesion (GGO + consolidation) volume as % of the total lung volume."""
        return float(self.measurements["lesion_pct"])

    def mask(self, *labels: int) -> sitk.Image:
        """Binary ``uint8`` mask (0/1) of the given label values of :attr:`labelmap`."""
        out = None
        for value in labels:
            m = sitk.Equal(self.labelmap, int(value))
            out = m if out is None else sitk.Or(out, m)
        if out is None:
            raise ValueError("mask() needs at least one label value")
        return sitk.Cast(out, sitk.sitkUInt8)

    @property
    def lung_mask(self) -> sitk.Image:
        """Both lungs including lesions (labels 1-4), 0/1."""
        return self.mask(*LUNG_LABELS)

    @property
    def lesion_mask(self) -> sitk.Image:
        """GGO and consolidation (labels 3-4), 0/1."""
        return self.mask(*LESION_LABELS)

    @property
    def ggo_mask(self) -> sitk.Image:
        """Ground-glass opacity (label 3), 0/1."""
        return self.mask(Label.GGO)

    @property
    def consolidation_mask(self) -> sitk.Image:
        """Consolidation (label 4), 0/1."""
        return self.mask(Label.CONSOLIDATION)

    def to_dict(self) -> dict[str, Any]:
        """Flat, JSON-ready dict: the measurements then the provenance.

        Non-finite numbers become ``None``. Patient identifiers are never included.
        """
        out: dict[str, Any] = {}
        for key, value in self.measurements.items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            out[key] = value
        out.update(self.provenance.to_dict())
        return out
