"""Rebuild ``OUT/results.csv`` and ``OUT/errors.csv`` from the committed per-scan files.

The tables are derived data: they are never appended to, only rebuilt (atomically) from
``OUT/<scan_id>/result.json``, ``OUT/.errors/*.json`` and ``OUT/verdicts.json``. Rebuilding
after a crash, a resume or a new QA verdict therefore always gives one row per scan.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lesionquant.batch import _outputs

__all__ = ["iter_results", "read_verdicts", "scan_flags", "scan_warnings", "write_tables"]

logger = logging.getLogger(__name__)

RESULTS_CSV = "results.csv"
ERRORS_CSV = "errors.csv"
VERDICTS_JSON = "verdicts.json"

_FRONT = ["scan_id", "patient", "study", "study_date", "study_time", "days_since_first_scan",
          "series_uid", "status", "reason", "flags", "warnings", "method", "device",
          "weights_sha256", "package_version", "seconds"]
#: Warning prefixes that flag a number to check before it enters an analysis.
FLAGS = {"incomplete series:": "incomplete_series",
         "lung volume implausible": "lung_volume_implausible"}


def scan_warnings(rec: Mapping[str, Any]) -> list[str]:
    """Loader, pipeline and batch warnings of a ``result.json`` record, each once."""
    prov = rec.get("provenance", {}) or {}
    found: list[str] = []
    for value in (prov.get("loader_warnings"), prov.get("warnings"), rec.get("warnings")):
        if isinstance(value, str):
            value = [w for w in value.split(" | ") if w]
        found.extend(str(w) for w in value or ())
    return list(dict.fromkeys(found))


def scan_flags(warnings: list[str]) -> list[str]:
    """Machine-readable flags (``incomplete_series``, ``lung_volume_implausible``)."""
    return sorted({flag for w in warnings for prefix, flag in FLAGS.items()
                   if w.startswith(prefix)})
_IDENTIFIERS = ["patient_id", "patient_name", "accession", "study_uid", "source"]
_QA = ["qa_verdict", "qa_comment", "qa_reader", "qa_time_utc"]


def iter_results(out_dir: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the ``result.json`` record of every committed scan folder of ``out_dir``."""
    out = Path(out_dir)
    if not out.is_dir():
        return
    for entry in sorted(out.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        path = entry / _outputs.RESULT_JSON
        if path.is_file():
            try:
                yield _outputs.read_json(path)
            except (OSError, ValueError, RecursionError) as exc:
                logger.warning("%s: unreadable, left out of the tables: %s", path, exc)


def _iter_errors(out: Path) -> Iterator[dict[str, Any]]:
    folder = out / _outputs.ERRORS_DIR
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            try:
                yield _outputs.read_json(path)
            except (OSError, ValueError, RecursionError) as exc:
                logger.warning("%s: unreadable error record: %s", path, exc)


def read_verdicts(out_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """QA verdicts of ``OUT/verdicts.json`` as ``{scan_id: {"verdict", "comment", "reader",
    "time_utc"}}``.

    The file is written by the QA viewer (``lesionquant review``; format in
    :mod:`lesionquant.qa`): ``{"verdicts": {scan_id: {"verdict", "comment", "reader",
    "time_utc", ...}}}``. A plain ``{scan_id: "accept"}`` mapping is accepted too. Absent or
    unreadable file: ``{}``.
    """
    path = Path(out_dir) / VERDICTS_JSON
    if not path.is_file():
        return {}
    try:
        data = _outputs.read_json(path)
    except (OSError, ValueError, RecursionError) as exc:
        logger.warning("%s: unreadable, verdicts left out: %s", path, exc)
        return {}
    if isinstance(data, Mapping) and "verdicts" in data:
        data = data["verdicts"]
    if isinstance(data, list):
        data = {str(v.get("scan_id", "")): v for v in data if isinstance(v, Mapping)}
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(data, Mapping):
        return out
    for scan_id, v in data.items():
        if isinstance(v, Mapping):
            out[str(scan_id)] = {
                "verdict": v.get("verdict", v.get("status", "")),
                "comment": v.get("comment", ""),
                "reader": v.get("reader", ""),
                "time_utc": v.get("time_utc", ""),
            }
        else:
            out[str(scan_id)] = {"verdict": str(v), "comment": "", "reader": "", "time_utc": ""}
    return out


def flatten_measures(measures: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Numeric scalars of a (nested) measures dict, nested keys joined with ``_``.

    Examples
    --------
    >>> flatten_measures({"lung_ml": 5000.0, "zones": {"right_upper": {"lesion_pct": 1.5}},
    ...                   "method": "classical", "hist": [1, 2]})
    {'lung_ml': 5000.0, 'zones_right_upper_lesion_pct': 1.5}
    """
    flat: dict[str, Any] = {}
    for key, value in measures.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_measures(value, f"{name}_"))
        elif (isinstance(value, (int, float)) and not isinstance(value, bool)) or value is None:
            flat[name] = value
    return flat


def _days(date: str, first: str) -> int | None:
    try:
        return (dt.date.fromisoformat(date) - dt.date.fromisoformat(first)).days
    except ValueError:
        return None


def write_tables(out_dir: str | os.PathLike[str]) -> Path:
    """(Re)build ``OUT/results.csv`` and ``OUT/errors.csv`` atomically; return results.csv.

    ``results.csv`` has one row per scan (completed or failed), pseudonymous ids, the visit
    date and days since the patient's first scan, the series UID, method, device, status, every
    numeric measure (units in the column names) and the QA verdict columns from
    ``OUT/verdicts.json``. Safe to call at any time, also while nothing else runs (the QA viewer
    calls it after each verdict). Columns are documented in ``docs/batch.md``.
    """
    out = Path(out_dir)
    verdicts = read_verdicts(out)
    rows: list[dict[str, Any]] = []
    measure_cols: dict[str, None] = {}
    keep_cols: dict[str, None] = {}
    done_ids = set()
    for rec in iter_results(out):
        prov = rec.get("provenance", {})
        settings = prov.get("settings", {})
        flat = flatten_measures(rec.get("measures", {}))
        measure_cols.update(dict.fromkeys(flat))
        row = {
            "scan_id": rec.get("scan_id"), "patient": rec.get("patient"),
            "study": rec.get("study"), "study_date": rec.get("study_date"),
            "study_time": rec.get("study_time"), "series_uid": rec.get("series_uid"),
            "status": "done", "reason": "; ".join(rec.get("warnings", [])),
            "flags": " ".join(scan_flags(scan_warnings(rec))),
            "warnings": " | ".join(scan_warnings(rec)),
            "method": prov.get("method", settings.get("method")),
            "device": prov.get("device", settings.get("device")),
            "weights_sha256": prov.get("weights_sha256"),
            "package_version": prov.get("package_version"),
            "seconds": sum(prov.get("batch", {}).get("timings", {}).values()) or None,
            **flat,
        }
        ident = rec.get("identifiers")
        if ident:
            row.update({k: ident.get(k, "") for k in _IDENTIFIERS})
            keep_cols.update(dict.fromkeys(_IDENTIFIERS))
        done_ids.add(row["scan_id"])
        rows.append(row)
    errors = list(_iter_errors(out))
    for err in errors:
        if err.get("scan_id") in done_ids:
            continue
        rows.append({"scan_id": err.get("scan_id"), "series_uid": err.get("series_uid"),
                     "status": "failed",
                     "reason": err.get("public_reason", err.get("reason"))})
    first = {}
    for row in rows:
        if row.get("patient") and row.get("study_date"):
            p = row["patient"]
            first[p] = min(first.get(p, row["study_date"]), row["study_date"])
    for row in rows:
        p = row.get("patient")
        if p in first and row.get("study_date"):
            row["days_since_first_scan"] = _days(row["study_date"], first[p])
        v = verdicts.get(str(row.get("scan_id")))
        if v:
            row.update({f"qa_{k}": val for k, val in v.items()})
    rows.sort(key=lambda r: (r.get("status") != "done", str(r.get("patient") or ""),
                             str(r.get("study_date") or ""), str(r.get("study_time") or ""),
                             str(r.get("scan_id"))))
    columns = _FRONT + list(keep_cols) + [c for c in measure_cols if c not in _FRONT] + _QA
    results = out / RESULTS_CSV
    _outputs.write_csv_atomic(results, columns, rows)
    _outputs.write_csv_atomic(out / ERRORS_CSV, ["scan_id", "series_uid", "reason", "source"],
                              errors)
    return results
