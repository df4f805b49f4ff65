"""Settings of the measuring pipeline: one frozen, validated, nested object.

Every result stores the settings it was made with (:meth:`Settings.to_dict`), every number
of it, so a number in the endpoint table can always be traced back to the exact
configuration; :meth:`Settings.from_dict` reads such a dict back.

The classes live in :mod:`lesionquant.segment` because everything they configure is
segmentation; :mod:`lesionquant.settings` re-exports them (``lesionquant.Settings``).
Pure Python: the classical method's configs are imported when a ``Settings`` is first made.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lesionquant.segment._config import Config

if TYPE_CHECKING:  # pragma: no cover
    from lesionquant.segment.classical import ClassicalLesions, ClassicalLungs

__all__ = ["Method", "Settings"]


class Method(str, enum.Enum):
    """Segmentation method. Accepts its string value (``Method("classical")``)."""

    CLASSICAL = "classical"
    """Thresholds, morphology and connected components (the baseline and fallback)."""
    MODEL = "model"
    """The learned torch model shipped in the package."""


def _check_range(name: str, lo: float, hi: float) -> None:
    if not lo < hi:
        raise ValueError(f"Settings.{name}: lower bound {lo} must be below upper bound {hi}")


def _classical_lungs() -> ClassicalLungs:
    from lesionquant.segment.classical import ClassicalLungs

    return ClassicalLungs()


def _classical_lesions() -> ClassicalLesions:
    from lesionquant.segment.classical import ClassicalLesions

    return ClassicalLesions()


#: Flat names of earlier versions (result.json files, TOML configs, ``quantify(**overrides)``)
#: -> their place now.
LEGACY_NAMES = {
    "lung_threshold_hu": "classical_lungs.lung_threshold_hu",
    "gas_mean_hu": "classical_lungs.gas_mean_hu",
    "work_spacing_mm": "classical_lungs.work_spacing_mm",
    "lung_closing_mm": "classical_lungs.dense.closing_mm",
    "dense_lung_max_hu": "classical_lungs.dense.max_hu",
    "lesion_opening_mm": "classical_lesions.filters.opening_mm",
    "rim_mm": "classical_lesions.filters.rim_mm",
    "vessel_sigma_mm": "classical_lesions.filters.vessel_sigma_mm",
    "vessel_threshold": "classical_lesions.filters.vessel_threshold",
    "background_mm": "classical_lesions.filters.background_mm",
    "tophat_mm": "classical_lesions.filters.tophat_mm",
    "lesion_grow_mm": "classical_lesions.filters.grow_mm",
    "dependent_correction_max_hu": "classical_lesions.filters.dependent_correction_max_hu",
}


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Turn dotted keys into nested dicts (``{"a.b": 1}`` -> ``{"a": {"b": 1}}``)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *heads, last = key.split(".")
        node = out
        for h in heads:
            node = node.setdefault(h, {})
        if isinstance(node.get(last), dict) and isinstance(value, dict):
            node[last].update(value)
        else:
            node[last] = value
    return out


@dataclass(frozen=True)
class Settings(Config):
    """Configuration of :func:`lesionquant.quantify`.

    Density bands follow the Fleischner Society glossary (Hansell et al., Radiology
    2008;246:697-722) and the quantitative COVID-19 CT literature (e.g. Lessmann et al.,
    Radiology 2021; Chaganti et al., Radiol Artif Intell 2020), see ``docs/method.md``.

    Attributes
    ----------
    method : Method or str
        ``"classical"`` (default) or ``"model"``: the method of both stages unless
        ``lung_method`` / ``lesion_method`` say otherwise.
    lung_method, lesion_method : Method or str or None
        Method of the lung stage / the lesion stage; ``None`` (default) follows ``method``.
        ``Settings(lung_method="model")`` is learned lungs with classical lesions.
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda[:N]"`` (the
        learned model; the classical method always runs on the CPU).
    ggo_hu : tuple of float
        Half-open HU band ``[lo, hi)`` of ground-glass opacity. Default ``(-750, -300)``.
    consolidation_hu : tuple of float
        Half-open HU band ``[lo, hi)`` of consolidation. Default ``(-300, 150)``. A lesion
        voxel at or above its lower bound is consolidation, below it GGO (every method).
    min_lesion_volume_ml : float
        Connected lesion components (26-connected) smaller than this are dropped, mL
        (every method). Default 0.05 mL.
    min_lung_area_cm2 : float
        :class:`~lesionquant.errors.NoLungError` when the largest axial cross-section of
        the lung mask is smaller than this, cm^2 (every method). Default 30 cm^2.
    bases_only_max_ml, bases_only_max_z_fraction : float
        :class:`~lesionquant.errors.NoLungError` when the lung mask is smaller than
        ``bases_only_max_ml`` (mL) *and* spans less than ``bases_only_max_z_fraction`` of
        the scanned length: the lung bases of an abdominal scan (every method). Defaults
        1000 mL and 0.25.
    classical_lungs : ClassicalLungs
        Every tuned number of the classical lung stage
        (:class:`lesionquant.segment.classical.ClassicalLungs`, one reason per field).
    classical_lesions : ClassicalLesions
        Every tuned number of the classical lesion stage
        (:class:`lesionquant.segment.classical.ClassicalLesions`).

    Examples
    --------
    >>> s = Settings(lung_method="model")
    >>> s.stage_methods()
    (<Method.MODEL: 'model'>, <Method.CLASSICAL: 'classical'>)
    >>> s.replace(**{"classical_lungs.dense.closing_mm": 15}).classical_lungs.dense.closing_mm
    15
    >>> Settings.from_dict(s.to_dict()) == s
    True
    """

    method: Method = Method.CLASSICAL
    lung_method: Method | None = None
    lesion_method: Method | None = None
    device: str = "auto"
    ggo_hu: tuple[float, float] = (-750.0, -300.0)
    consolidation_hu: tuple[float, float] = (-300.0, 150.0)
    min_lesion_volume_ml: float = 0.05
    min_lung_area_cm2: float = 30.0
    bases_only_max_ml: float = 1000.0
    bases_only_max_z_fraction: float = 0.25
    classical_lungs: ClassicalLungs = field(default_factory=_classical_lungs)
    classical_lesions: ClassicalLesions = field(default_factory=_classical_lesions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", Method(self.method))
        for name in ("lung_method", "lesion_method"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Method(value))
        object.__setattr__(self, "ggo_hu", tuple(float(v) for v in self.ggo_hu))
        object.__setattr__(
            self, "consolidation_hu", tuple(float(v) for v in self.consolidation_hu)
        )
        _check_range("ggo_hu", *self.ggo_hu)
        _check_range("consolidation_hu", *self.consolidation_hu)
        if self.ggo_hu[1] > self.consolidation_hu[0]:
            raise ValueError("Settings: ggo_hu must end at or below the start of consolidation_hu")
        if self.min_lesion_volume_ml < 0:
            raise ValueError("Settings.min_lesion_volume_ml must be >= 0")
        if not float(self.min_lung_area_cm2) > 0:
            raise ValueError("Settings.min_lung_area_cm2 must be > 0")
        if self.bases_only_max_ml < 0 or not 0 <= self.bases_only_max_z_fraction <= 1:
            raise ValueError("Settings: bases_only_max_ml must be >= 0 and "
                             "bases_only_max_z_fraction in [0, 1]")
        dev = str(self.device).lower()
        if not (dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:")):
            raise ValueError(
                f"Settings.device must be 'auto', 'cpu' or 'cuda[:N]', not {self.device!r}"
            )
        object.__setattr__(self, "device", dev)

    def stage_methods(self) -> tuple[Method, Method]:
        """The methods ``(lungs, lesions)`` that run (``method`` where a stage has none)."""
        return (self.lung_method or self.method, self.lesion_method or self.method)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (validated again). ``"a.b"`` keys (as
        ``**{"classical_lungs.dense.closing_mm": 15}``) reach into the nested configs;
        the flat names of earlier versions (``lung_closing_mm``) still work."""
        return super().replace(**{LEGACY_NAMES.get(k, k): v for k, v in changes.items()})

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, _path: str = "") -> Settings:
        """Settings from a dict as :meth:`to_dict` writes it (or a TOML table): missing
        keys keep their defaults, unknown keys raise ``ValueError``; the flat names of
        earlier versions are read into their nested place."""
        if not isinstance(data, dict):
            raise ValueError(f"settings must be a table, not {data!r}")
        return super().from_dict(_nest({LEGACY_NAMES.get(k, k): v for k, v in data.items()}),
                                 _path=_path)
