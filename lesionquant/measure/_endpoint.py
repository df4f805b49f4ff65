"""The trial endpoint: per patient, change from baseline of lesion / GGO / consolidation %.

A pure function over ``result.json`` records (no files): the batch writes it as
``endpoint.csv`` (:func:`lesionquant.batch.compute_endpoint`), the QA pages and the viewer
show it; both read it from here, so neither imports the other for it.

Definitions (also in ``docs/batch.md``), per patient (pseudonym):

* Visits are the patient's completed scans, ordered by study date, study time, slice thickness
  (thinner first) and scan id. Scans without a study date come last and have no days.
* The baseline is the scan chosen by the user (``baseline=[scan_id, ...]``) or else the first
  dated visit (the first visit when none is dated).
* ``days_since_baseline`` = study date of the visit - study date of the baseline, in calendar
  days (negative for a visit before a user-chosen baseline).
* For ``m`` in lesion, GGO, consolidation: ``<m>_pct`` is the % of the full lung volume;
  ``<m>_change_pp = <m>_pct - <m>_pct(baseline)`` (percentage points) and
  ``<m>_change_rel_pct = 100 * (<m>_pct - <m>_pct(baseline)) / <m>_pct(baseline)`` (relative
  change in %, empty when the baseline value is 0).
* ``lung_change_rel_pct`` is the relative change of the full lung volume: a large value flags a
  difference of inspiration between visits, which changes lesion % by itself.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

from lesionquant.errors import InvalidInputError

__all__ = ["ENDPOINT_COLUMNS", "endpoint_rows"]

logger = logging.getLogger(__name__)

_MEASURES = ("lesion", "ggo", "consolidation")

#: Columns of ``endpoint.csv``, in order.
ENDPOINT_COLUMNS: tuple[str, ...] = (
    "patient", "visit", "scan_id", "study", "study_date", "baseline_scan_id", "is_baseline",
    "days_since_baseline", "lung_ml", "lung_change_rel_pct",
    *(f"{m}_{s}" for m in _MEASURES for s in ("pct", "change_pp", "change_rel_pct")),
    "series_uid", "method", "qa_verdict",
)


def _date(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _num(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _visit_key(rec: dict[str, Any]) -> tuple[Any, ...]:
    date = _date(rec.get("study_date"))
    thick = _num((rec.get("acquisition") or {}).get("slice_thickness_mm"))
    return (date is None, date or dt.date.min, rec.get("study_time") or "",
            thick if thick is not None else math.inf, rec.get("scan_id", ""))


def endpoint_rows(records: Iterable[dict[str, Any]], *, baseline: Sequence[str] = (),
                  verdicts: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Endpoint rows from ``result.json`` records (pure function, no files).

    Parameters
    ----------
    records : iterable of dict
        ``result.json`` contents (keys ``scan_id``, ``patient``, ``study_date``, ``measures``).
    baseline : sequence of str
        Scan ids chosen as baselines (at most one per patient).
    verdicts : dict, optional
        QA verdicts by scan id (copied into ``qa_verdict``, not used for selection).

    Returns
    -------
    list of dict
        One row per visit, patients in pseudonym order, visits in visit order.

    Raises
    ------
    InvalidInputError
        A chosen baseline is not a completed scan, or two are chosen for one patient.
    """
    verdicts = verdicts or {}
    by_patient: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_patient.setdefault(str(rec.get("patient", "")), []).append(rec)
    known = {rec["scan_id"]: p for p, recs in by_patient.items() for rec in recs}
    chosen: dict[str, str] = {}
    for scan_id in baseline:
        if scan_id not in known:
            raise InvalidInputError(f"baseline {scan_id!r} is not a completed scan of this "
                                    "output folder", source="--baseline")
        patient = known[scan_id]
        if chosen.get(patient, scan_id) != scan_id:
            raise InvalidInputError(f"two baselines chosen for patient {patient}: "
                                    f"{chosen[patient]} and {scan_id}", source="--baseline")
        chosen[patient] = scan_id
    rows: list[dict[str, Any]] = []
    for patient in sorted(by_patient):
        visits = sorted(by_patient[patient], key=_visit_key)
        base = next((r for r in visits if r["scan_id"] == chosen.get(patient)), visits[0])
        base_m = base.get("measures", {})
        base_date = _date(base.get("study_date"))
        for i, rec in enumerate(visits):
            m = rec.get("measures", {})
            date = _date(rec.get("study_date"))
            row: dict[str, Any] = {
                "patient": patient, "visit": i, "scan_id": rec["scan_id"],
                "study": rec.get("study"), "study_date": rec.get("study_date"),
                "baseline_scan_id": base["scan_id"], "is_baseline": rec is base,
                "days_since_baseline": (date - base_date).days if date and base_date else None,
                "lung_ml": _num(m.get("lung_ml")),
                "lung_change_rel_pct": _rel(_num(m.get("lung_ml")), _num(base_m.get("lung_ml"))),
                "series_uid": rec.get("series_uid"),
                "method": rec.get("provenance", {}).get("settings", {}).get("method"),
                "qa_verdict": verdicts.get(rec["scan_id"], {}).get("verdict", ""),
            }
            for name in _MEASURES:
                now, then = _num(m.get(f"{name}_pct")), _num(base_m.get(f"{name}_pct"))
                row[f"{name}_pct"] = now
                row[f"{name}_change_pp"] = now - then if now is not None and then is not None \
                    else None
                row[f"{name}_change_rel_pct"] = _rel(now, then)
            rows.append(row)
    return rows


def _rel(now: float | None, then: float | None) -> float | None:
    if now is None or then is None or then == 0:
        return None
    return 100.0 * (now - then) / then
