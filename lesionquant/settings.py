"""Settings of the measuring pipeline: one frozen, validated object.

Every result stores the settings it was made with (``Settings.to_dict``), so a number in
the endpoint table can always be traced back to the exact configuration.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class Settings:
    """Configuration of :func:`lesionquant.quantify`.

    Density bands follow the Fleischner Society glossary (Hansell et al., Radiology
    2008;246:697-722) and the quantitative COVID-19 CT literature (e.g. Lessmann et al.,
    Radiology 2021; Chaganti et al., Radiol Artif Intell 2020), see ``docs/method.md``.

    Attributes
    ----------
    method : Method or str
        ``"classical"`` (default) or ``"model"``.
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda[:N]"``.
    ggo_hu : tuple of float
        Half-open HU band ``[lo, hi)`` of ground-glass opacity. Default ``(-750, -300)``.
    consolidation_hu : tuple of float
        Half-open HU band ``[lo, hi)`` of consolidation. Default ``(-300, 150)``; denser
        voxels (calcification, contrast-filled vessels) are not lesion.
    min_lesion_volume_ml : float
        Connected lesion components smaller than this are dropped, mL. Default 0.05 mL.
    lung_threshold_hu : float
        Voxels below this (on the ~2 mm working grid) are air-like: the aerated lung seed.
        Default -300 HU (the top of the GGO band, so ground glass counts as aerated).
    gas_mean_hu : float
        An air component whose mean is below this is gas (outside air, trachea, bowel or
        stomach gas), not lung parenchyma (mean about -850 HU); also the airway-growing
        threshold. Default -950 HU.
    work_spacing_mm : float
        Spacing of the working grid for the heavy lung morphology, mm. Default 2 mm.
    lung_closing_mm : float
        Radius of the rolling-ball closing that brings dense lung (consolidation touching
        the pleura, dependent atelectasis) back into the lung mask, mm. Default 20 mm.
    dense_lung_max_hu : float
        Voxels recovered by the closing must be below this (bone, contrast vessels are not
        lung), HU. Default 150 HU.
    min_lung_area_cm2 : float
        :class:`~lesionquant.errors.NoLungError` when the largest axial lung cross-section
        is smaller than this, cm^2. Default 30 cm^2.
    lesion_opening_mm : float
        Half-width of the box opening that removes thin structures (vessels, fissures,
        airway walls) from the lesion candidates, mm. Default 1.5 mm.
    rim_mm : float
        Depth of the lung-surface shell whose partial-volume voxels are not lesion unless
        the density continues inward, mm. Default 5 mm (partial volume of oblique
        surfaces in thick slices).
    vessel_sigma_mm : tuple of float
        Gaussian scales of the Hessian vesselness that removes dense tubular structures
        (vessels) from consolidation, mm; empty disables it. Default (3.0,); thinner vessels
        are caught by the top-hat.
    vessel_threshold : float
        Vesselness above which a dense voxel is vessel, in [0, 1]. Default 0.3.
    background_mm : float
        Width of the box over which the background density (mean HU of the surrounding
        lung without vessels) is taken; a voxel is lesion only when its background is in
        a lesion band, mm. Default 6 mm.
    tophat_mm : float
        Width of the box of the white top-hat that marks thin bright structures (vessels,
        fissures) in normal lung; structures and lesions narrower than about this are not
        lesion, mm. Default 6 mm.
    lesion_grow_mm : float
        Lesion cores (after the opening, background and rim tests) are grown back, for
        at most this distance, through connected lung whose own density is in a lesion
        band: restores lesion margins and thin parts, mm; 0 disables. Default 3 mm.
    dependent_correction_max_hu : float
        Largest anterior-to-posterior density gradient correction applied before the GGO
        threshold (normal dependent density is not GGO), HU; 0 disables. Default 150 HU.
    """

    method: Method = Method.CLASSICAL
    device: str = "auto"
    ggo_hu: tuple[float, float] = (-750.0, -300.0)
    consolidation_hu: tuple[float, float] = (-300.0, 150.0)
    min_lesion_volume_ml: float = 0.05
    lung_threshold_hu: float = -300.0
    gas_mean_hu: float = -950.0
    work_spacing_mm: float = 2.0
    lung_closing_mm: float = 20.0
    dense_lung_max_hu: float = 150.0
    min_lung_area_cm2: float = 30.0
    lesion_opening_mm: float = 1.5
    rim_mm: float = 5.0
    vessel_sigma_mm: tuple[float, ...] = (3.0,)
    vessel_threshold: float = 0.3
    background_mm: float = 6.0
    tophat_mm: float = 6.0
    lesion_grow_mm: float = 3.0
    dependent_correction_max_hu: float = 150.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", Method(self.method))
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
        object.__setattr__(
            self, "vessel_sigma_mm", tuple(float(v) for v in self.vessel_sigma_mm)
        )
        for name in ("work_spacing_mm", "lung_closing_mm", "min_lung_area_cm2",
                     "background_mm", "tophat_mm"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"Settings.{name} must be > 0")
        for name in ("lesion_opening_mm", "rim_mm", "lesion_grow_mm",
                     "dependent_correction_max_hu"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"Settings.{name} must be >= 0")
        if any(v <= 0 for v in self.vessel_sigma_mm):
            raise ValueError("Settings.vessel_sigma_mm values must be > 0")
        if not 0.0 <= self.vessel_threshold <= 1.0:
            raise ValueError("Settings.vessel_threshold must be in [0, 1]")
        if not self.gas_mean_hu < self.lung_threshold_hu:
            raise ValueError("Settings.gas_mean_hu must be below lung_threshold_hu")
        dev = str(self.device).lower()
        if not (dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:")):
            raise ValueError(
                f"Settings.device must be 'auto', 'cpu' or 'cuda[:N]', not {self.device!r}"
            )
        object.__setattr__(self, "device", dev)

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every setting (enums as strings, tuples as lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, enum.Enum):
                v = v.value
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """Build settings from a dict (e.g. a TOML table); unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)
