"""Case families of the evaluation: tuning, report and shifted (``family_cases``).

A method is changed while looking at the **tuning** family only. The **report** family
draws its lesion parameters from the same ranges but with seeds (and therefore parameter
values) that nobody looks at while changing the method; its numbers are the ones quoted.
The **shifted** family draws parameters *outside* the tuning ranges (fainter GGO, more
solid and lobar disease, larger effusions, smaller foci, denser crazy paving, other
patient sizes and noise), to show how a method degrades off its tuning distribution.

The ranges (``TUNING_RANGES``) and the shift (``SHIFTED_RANGES``) are part of the
documented API (``docs/synth.md``); a case is a :class:`SynthCase` (seed, lesion
parameters and acquisition), reproducible from ``(family, index)`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lesionquant.synth._disease import LesionParams

__all__ = ["FAMILIES", "SHIFTED_RANGES", "TUNING_RANGES", "SynthCase", "family_cases"]

FAMILIES = ("tuning", "report", "shifted")

#: Seed offsets: the families never share a seed.
_SEED_BASE = {"tuning": 10_000, "report": 20_000, "shifted": 30_000}

#: Uniform ranges of the tuning (and report) family.
TUNING_RANGES: dict[str, tuple[float, float]] = {
    "burden_pct": (2.0, 35.0),
    "ggo_fraction": (0.45, 0.9),
    "ggo_fill": (0.36, 0.46),
    "lobar_share": (0.0, 0.3),  # lobar_pct as a share of the burden (half the cases)
    "effusion_ml": (0.0, 150.0),  # half the cases with lobar disease
    "radius_min_mm": (2.5, 4.0),
    "patient_scale": (0.9, 1.1),
    "dose_factor": (0.7, 1.5),
}
#: Ranges of the shifted family (outside the tuning ranges where the parameter allows).
SHIFTED_RANGES: dict[str, tuple[float, float]] = {
    "burden_pct": (35.0, 55.0),
    "ggo_fraction": (0.2, 0.45),
    "ggo_fill": (0.14, 0.22),
    "lobar_share": (0.3, 0.5),
    "effusion_ml": (150.0, 400.0),
    "radius_min_mm": (2.5, 2.5),
    "patient_scale": (1.12, 1.25),
    "dose_factor": (0.3, 0.5),
}


@dataclass(frozen=True)
class SynthCase:
    """One evaluation case: what to generate and how to acquire it.

    Attributes
    ----------
    family : str
        ``tuning``, ``report`` or ``shifted``.
    index : int
        Position in the family.
    seed : int
        Generator seed (families never share one).
    lesions : LesionParams
    patient_scale, dose_factor : float
        Passed to :func:`lesionquant.synth.make_phantom`.
    """

    family: str
    index: int
    seed: int
    lesions: LesionParams
    patient_scale: float
    dose_factor: float

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"family": self.family, "index": self.index, "seed": self.seed,
                "patient_scale": self.patient_scale, "dose_factor": self.dose_factor,
                "lesions": self.lesions.to_dict()}


def family_cases(family: str, n: int) -> list[SynthCase]:
    """The first ``n`` cases of a family (deterministic).

    Parameters
    ----------
    family : {"tuning", "report", "shifted"}
    n : int
        Number of cases.

    Returns
    -------
    list of SynthCase
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, not {family!r}")
    ranges = SHIFTED_RANGES if family == "shifted" else TUNING_RANGES
    out = []
    for i in range(n):
        seed = _SEED_BASE[family] + i
        rng = np.random.default_rng(seed)

        def u(name: str, rng=rng) -> float:
            lo, hi = ranges[name]
            return float(rng.uniform(lo, hi))

        burden = round(u("burden_pct"), 1)
        ggo_fraction = round(u("ggo_fraction"), 2)
        ggo_fill = round(u("ggo_fill"), 3)
        lobar = rng.uniform() < 0.5 or family == "shifted"
        lobar_pct = round(burden * u("lobar_share"), 1) if lobar else 0.0
        effusion = round(u("effusion_ml")) if lobar else 0.0
        r_min = round(u("radius_min_mm"), 1)
        scale = round(u("patient_scale"), 2)
        dose = round(u("dose_factor"), 2)
        if family == "shifted":  # more solid and crazy-paving disease, fewer patchy
            weights = (0.25, 0.2, 0.2, 0.25, 0.1)
        else:
            weights = LesionParams().kind_weights
        params = LesionParams(burden_pct=burden, ggo_fraction=ggo_fraction, ggo_fill=ggo_fill,
                              lobar_pct=lobar_pct, effusion_ml=effusion,
                              radius_mm=(r_min, 45.0), kind_weights=weights)
        out.append(SynthCase(family, i, seed, params, scale, dose))
    return out
