"""Trajectory plots: lesion, GGO and consolidation % of lung against days since baseline.

* :func:`render_patient_plot` - one patient: the three percentages at each dated visit.
* :func:`render_cohort_plot` - every patient: change from baseline (percentage points) of
  the three measures, one line per patient (the endpoint table as a picture).

The x axis is *days since baseline*, never a calendar date, so a picture carries no date.
matplotlib is imported inside the functions and draws on an Agg canvas without pyplot state
(safe in threads, ``import lesionquant`` stays light), as :mod:`lesionquant.qa._overlays`.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping, Sequence
from typing import Any

from lesionquant.qa._display import COLOURS

__all__ = ["MEASURES", "render_cohort_plot", "render_patient_plot"]

#: (key prefix in the endpoint rows, label, colour, marker, line style) of the three curves.
#: Lesion (= GGO + consolidation) is black, the parts keep the montage's colours.
MEASURES: tuple[tuple[str, str, str, str, str], ...] = (
    ("lesion", "lesion", "#1d1d1f", "o", "-"),
    ("ggo", "GGO", COLOURS["ggo"], "s", "--"),
    ("consolidation", "consolidation", COLOURS["consolidation"], "^", ":"),
)

_DPI = 100
_SCALE = 2  # drawn at twice the CSS size: sharp on high-density screens and when zoomed


def _figure(width_px: int, height_px: int) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI * _SCALE,
                 facecolor="white")
    return fig, FigureCanvasAgg(fig)


def _png(fig: Any, canvas: Any) -> bytes:
    canvas.draw()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI * _SCALE, facecolor="white")
    return buf.getvalue()


def _style(ax: Any) -> None:
    ax.grid(True, color="#e3e3e6", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8, colors="#333")


def _dated(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted((r for r in rows if r.get("days_since_baseline") is not None),
                  key=lambda r: r["days_since_baseline"])


def _x_range(days: Sequence[float]) -> tuple[float, float]:
    lo, hi = min([0.0, *days]), max([0.0, *days])
    pad = max(2.0, 0.06 * (hi - lo))
    return lo - pad, hi + pad


_PLOT_KEYS = ("scan_id", "days_since_baseline", "is_baseline",
              *(f"{m[0]}_{s}" for m in MEASURES for s in ("pct", "change_pp")))


def _frozen(rows: Sequence[Mapping[str, Any]]) -> tuple[tuple[Any, ...], ...]:
    """The plotted values of ``rows`` as a hashable key (plots are cached: the index is
    rebuilt after every QA verdict and its plots do not change)."""
    return tuple(tuple(r.get(k) for k in _PLOT_KEYS) for r in rows)


def _thawed(key: tuple[tuple[Any, ...], ...]) -> list[dict[str, Any]]:
    return [dict(zip(_PLOT_KEYS, values, strict=True)) for values in key]


def render_patient_plot(rows: Sequence[Mapping[str, Any]], *, highlight: str | None = None,
                        size_px: tuple[int, int] = (440, 250)) -> bytes:
    """One patient's lesion, GGO and consolidation % of lung at each dated visit.

    Parameters
    ----------
    rows : sequence of mapping
        The patient's endpoint rows (:func:`lesionquant.batch.endpoint_rows`): keys
        ``days_since_baseline``, ``lesion_pct``, ``ggo_pct``, ``consolidation_pct``,
        ``is_baseline``, ``scan_id``. Visits without a date are not drawn.
    highlight : str, optional
        Scan id of the visit to mark (the report's own visit).
    size_px : (int, int)
        Width and height on the page, CSS pixels (the PNG has twice as many).

    Returns
    -------
    bytes
        The PNG.
    """
    return _patient_plot(_frozen(rows), highlight, tuple(size_px))


@functools.lru_cache(maxsize=256)
def _patient_plot(key: tuple[tuple[Any, ...], ...], highlight: str | None,
                  size_px: tuple[int, int]) -> bytes:
    rows = _thawed(key)
    fig, canvas = _figure(*size_px)
    ax = fig.add_axes((0.12, 0.2, 0.86, 0.62))
    _style(ax)
    dated = _dated(rows)
    days = [float(r["days_since_baseline"]) for r in dated]
    top = 0.0
    for key, label, colour, marker, style in MEASURES:
        ys = [r.get(f"{key}_pct") for r in dated]
        pts = [(d, y) for d, y in zip(days, ys, strict=True) if y is not None]
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour, marker=marker,
                linestyle=style, linewidth=1.8, markersize=5.5, label=label, clip_on=False)
        top = max(top, *(p[1] for p in pts))
    if highlight is not None:
        for r in dated:
            if r.get("scan_id") == highlight:
                day = float(r["days_since_baseline"])
                ax.axvline(day, color="#8a8a8e", linewidth=1.0, zorder=0)
                right_half = day > (min(days) + max(days)) / 2
                ax.annotate("this scan", (day, 1.0), xycoords=("data", "axes fraction"),
                            xytext=(-3 if right_half else 3, -2), textcoords="offset points",
                            fontsize=7.5, color="#555", va="top",
                            ha="right" if right_half else "left")
    if days:
        ax.set_xlim(*_x_range(days))
        ax.set_xticks(sorted(set(days)))
        ax.set_xticklabels([f"{d:g}" for d in sorted(set(days))])
    ax.set_ylim(0, max(1.0, top * 1.15))
    ax.set_xlabel("days since baseline", fontsize=8.5, color="#333")
    ax.set_ylabel("% of lung volume", fontsize=8.5, color="#333")
    if not days:
        ax.text(0.5, 0.5, "no dated visit", ha="center", va="center", transform=ax.transAxes,
                fontsize=9, color="#777")
    fig.legend(*ax.get_legend_handles_labels(), loc="upper center", ncol=3, frameon=False,
               fontsize=8.5, bbox_to_anchor=(0.55, 1.0), handlelength=2.6)
    return _png(fig, canvas)


def render_cohort_plot(by_patient: Mapping[str, Sequence[Mapping[str, Any]]], *,
                       size_px: tuple[int, int] = (960, 300)) -> bytes:
    """Change from baseline of lesion, GGO and consolidation % (percentage points) against
    days since baseline: one panel per measure, one line per patient.

    Parameters
    ----------
    by_patient : mapping of str to sequence of mapping
        Endpoint rows grouped by patient pseudonym (keys ``days_since_baseline`` and
        ``<m>_change_pp``).
    size_px : (int, int)
        Width and height on the page, CSS pixels.

    Returns
    -------
    bytes
        The PNG.
    """
    key = tuple((p, _frozen(by_patient[p])) for p in sorted(by_patient))
    return _cohort_plot(key, tuple(size_px))


@functools.lru_cache(maxsize=8)
def _cohort_plot(key: tuple[tuple[str, Any], ...], size_px: tuple[int, int]) -> bytes:
    from matplotlib import colormaps

    # Only patients with a dated follow-up have a change to draw.
    by_patient = {p: _thawed(rows) for p, rows in key}
    n_all = len(by_patient)
    by_patient = {p: rows for p, rows in by_patient.items() if len(_dated(rows)) > 1}
    fig, canvas = _figure(*size_px)
    many = len(by_patient) > 10
    palette = colormaps["tab10"].colors
    left, gap, width = 0.065, 0.075, 0.25
    handles: list[Any] = []
    all_days = [float(r["days_since_baseline"]) for rows in by_patient.values()
                for r in _dated(rows)]
    for n, (measure, label, *_) in enumerate(MEASURES):
        ax = fig.add_axes((left + n * (width + gap), 0.17, width, 0.62))
        _style(ax)
        ax.axhline(0.0, color="#8a8a8e", linewidth=1.0, zorder=1)
        lo = hi = 0.0
        for i, (patient, rows) in enumerate(sorted(by_patient.items())):
            pts = [(float(r["days_since_baseline"]), r.get(f"{measure}_change_pp"))
                   for r in _dated(rows)]
            pts = [p for p in pts if p[1] is not None]
            if not pts:
                continue
            colour = "#6e6e73" if many else palette[i % len(palette)]
            (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour,
                              marker="o", markersize=4, linewidth=1.4 if not many else 0.9,
                              alpha=0.6 if many else 1.0, label=patient, clip_on=False)
            if n == 0:
                handles.append(line)
            lo, hi = min(lo, *(p[1] for p in pts)), max(hi, *(p[1] for p in pts))
        span = max(1.0, hi - lo)
        ax.set_ylim(lo - 0.08 * span, hi + 0.08 * span)
        if all_days:
            ax.set_xlim(*_x_range(all_days))
        ax.set_title(f"{label}: change from baseline", fontsize=9.5, color="#1d1d1f")
        ax.set_xlabel("days since baseline", fontsize=8.5, color="#333")
        if n == 0:
            ax.set_ylabel("percentage points", fontsize=8.5, color="#333")
    if not many and handles:
        fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 6),
                   frameon=False, fontsize=8, bbox_to_anchor=(0.5, 1.0))
    if many or not handles:
        fig.text(0.5, 0.97, f"{len(by_patient)} of {n_all} patients have a dated follow-up"
                 + (", one grey line each" if many else ""), ha="center", va="top",
                 fontsize=8.5, color="#555")
    return _png(fig, canvas)
