"""Patients and visits in the QA pages: who, which visit, and the trajectory.

The visits of a patient, their order, the baseline and every change from baseline come
from :func:`lesionquant.batch.endpoint_rows`, the function behind ``endpoint.csv``, so the
pages and the endpoint table cannot disagree. The baseline a user chose with
``--baseline`` is read back from ``OUT/endpoint.csv``.

* :func:`visits_by_patient` - the endpoint rows of ``OUT`` grouped by patient pseudonym;
* :func:`patient_card_html` - one patient: trajectory plot beside the visit table with the
  change from baseline (index and report);
* :func:`cohort_html` - every patient's change from baseline (plot and endpoint table);
* :func:`update_report_patient_sections` - fill the patient section of every
  ``report.html`` once the batch knows all visits.

Privacy: the pages show the patient *pseudonym*, the study date and the days since baseline,
the same facts ``result.json`` and ``endpoint.csv`` of the same folder hold (docs/batch.md,
"Kept on purpose"); pictures carry days since baseline only, never a date.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lesionquant._atomic import write_text_atomic

__all__ = ["DELTA_NOTE", "PATIENT_SECTION_END", "PATIENT_SECTION_START", "cohort_html",
           "patient_card_html", "patient_section_html", "update_report_patient_sections",
           "visits_by_patient"]

logger = logging.getLogger(__name__)

#: Markers around the patient section of ``report.html`` (filled at the end of a batch).
PATIENT_SECTION_START = "<!--lq:patient-->"
PATIENT_SECTION_END = "<!--/lq:patient-->"

e = html.escape

#: CSS of the patient cards and the cohort view (added to the pages' style sheet).
PATIENT_CSS = """
.patients { display: flex; flex-direction: column; gap: 12px; }
.patient { border: 1px solid #e3e3e6; border-radius: 6px; padding: 10px 12px; }
.patient h3 { margin: 0 0 6px; font-size: 15px; }
.patient h3 .sub { font-weight: 400; color: #6e6e73; font-size: 12px; margin-left: 8px; }
.pat-body { display: grid; grid-template-columns: 440px minmax(0, 1fr); gap: 16px;
            align-items: start; }
.pat-body > div { overflow-x: auto; }
table.visits th, table.visits td { padding: 3px 6px; white-space: nowrap; font-size: 13px; }
table.visits th { font-size: 12px; color: #444; white-space: normal; vertical-align: bottom; }
table.visits td small { display: block; color: #6e6e73; font-size: 11px; }
.wide { overflow-x: auto; }
table#endpoint td, table#endpoint th { white-space: nowrap; padding: 3px 8px; }
table#endpoint th { white-space: normal; vertical-align: bottom; }
table.visits td, table#endpoint td { vertical-align: middle; }
table#endpoint tr.base td { background: #fafafa; }
table.visits tr.this td { background: #fff4d6; font-weight: 600; }
.dpos { color: #8a2c00; } .dneg { color: #00573d; }
.visit-facts { display: flex; gap: 14px; flex-wrap: wrap; margin-bottom: 8px; }
.visit-facts div { background: #f0f0f3; border-radius: 6px; padding: 6px 12px; }
.visit-facts b { display: block; font-size: 18px; }
nav.toc a { margin-right: 14px; }
.note { color: #6e6e73; font-size: 12px; }
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _chosen_baselines(out: Path) -> list[str]:
    """Baselines of the last ``endpoint.csv`` (they honour ``--baseline``)."""
    try:
        text = (out / "endpoint.csv").read_text(encoding="utf-8")
    except OSError:
        return []
    return [r["scan_id"] for r in csv.DictReader(io.StringIO(text))
            if r.get("is_baseline") == "true" and r.get("scan_id")]


def visits_by_patient(out_dir: str | os.PathLike[str],
                      records: Iterable[Mapping[str, Any]] | None = None
                      ) -> dict[str, list[dict[str, Any]]]:
    """The endpoint rows of a batch folder, grouped by patient pseudonym, in visit order.

    Parameters
    ----------
    out_dir : path
        The batch output folder.
    records : iterable of mapping, optional
        Its ``result.json`` records, when already read.

    Returns
    -------
    dict of str to list of dict
        ``{patient: [row, ...]}`` with the columns of ``endpoint.csv`` (``visit``,
        ``days_since_baseline``, ``study_date``, ``<m>_pct``, ``<m>_change_pp``, ...).
    """
    from lesionquant.batch import endpoint_rows, iter_results
    from lesionquant.errors import InvalidInputError

    out = Path(out_dir)
    recs = [dict(r) for r in (iter_results(out) if records is None else records)
            if r.get("scan_id")]
    try:
        rows = endpoint_rows(recs, baseline=_chosen_baselines(out))
    except InvalidInputError as exc:  # endpoint.csv is stale (a baseline has gone)
        logger.info("%s: default baselines used (%s)", out, exc)
        rows = endpoint_rows(recs)
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(str(row["patient"]), []).append(row)
    return grouped


def day_text(row: Mapping[str, Any]) -> str:
    """``day 28`` (days since baseline), ``day ?`` when the visit has no date."""
    day = row.get("days_since_baseline")
    return "day ?" if day is None else f"day {day:g}"


def _pct(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _delta(value: Any, *, baseline: bool, unit: str = "", coloured: bool = True) -> str:
    """A change from baseline: signed, red when the lesion grew, green when it shrank."""
    if baseline:
        return "<td class=\"num note\">baseline</td>"
    if value is None:
        return "<td class=\"num\">n/a</td>"
    cls = "" if not coloured else "dpos" if value > 0.005 else "dneg" if value < -0.005 else ""
    sign = "+" if value > 0 else "\u2212" if value < 0 else "\u00b1"
    return f"<td class=\"num {cls}\">{sign}{abs(value):.2f}{unit}</td>"


def _visit_table(rows: Sequence[Mapping[str, Any]], *, link: str, highlight: str | None,
                 verdicts: Mapping[str, str] | None) -> str:
    head = ("<tr><th>visit day<br><small>study date</small></th><th>scan</th>"
            "<th class=\"num\">lesion %</th><th class=\"num\">\u0394 pp</th>"
            "<th class=\"num\">GGO %</th><th class=\"num\">\u0394 pp</th>"
            "<th class=\"num\">consolidation %</th><th class=\"num\">\u0394 pp</th>"
            "<th class=\"num\">lung mL</th><th class=\"num\">\u0394 lung</th>"
            + ("<th>QA</th>" if verdicts is not None else "") + "</tr>")
    body = []
    for r in rows:
        base = bool(r.get("is_baseline"))
        sid = str(r["scan_id"])
        cls = " class=\"this\"" if sid == highlight else ""
        scan = (e(sid) if sid == highlight else
                f"<a href=\"{e(link.format(scan_id=sid))}\">{e(sid)}</a>")
        cells = [f"<td title=\"visit {int(r['visit']) + 1}\">{e(day_text(r))}"
                 f"<small>{e(str(r.get('study_date') or 'date unknown'))}</small></td>",
                 f"<td>{scan}</td>"]
        for m in ("lesion", "ggo", "consolidation"):
            cells.append(f"<td class=\"num\">{_pct(r.get(f'{m}_pct'))}</td>")
            cells.append(_delta(r.get(f"{m}_change_pp"), baseline=base))
        lung = r.get("lung_ml")
        cells.append(f"<td class=\"num\">{'n/a' if lung is None else f'{lung:,.0f}'}</td>")
        cells.append(_delta(r.get("lung_change_rel_pct"), baseline=base, unit=" %",
                            coloured=False))
        if verdicts is not None:
            v = verdicts.get(sid, "")
            cells.append(f"<td><span class=\"badge {e(v or 'none')}\">"
                         f"{e(v or 'not reviewed')}</span></td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table class=\"visits\"><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


#: What the change columns mean (under the table of a report, once above the index's cards).
DELTA_NOTE = ("\u0394 pp: change from baseline in percentage points of the lung volume (the "
              "trial's endpoint); \u0394 lung: relative change of the lung volume (a large "
              "value flags a different inspiration).")


def patient_card_html(patient: str, rows: Sequence[Mapping[str, Any]], *, link: str,
                      highlight: str | None = None,
                      verdicts: Mapping[str, str] | None = None, note: bool = True) -> str:
    """One patient: the trajectory plot beside the visits with their change from baseline.

    Parameters
    ----------
    patient : str
        Patient pseudonym.
    rows : sequence of mapping
        The patient's endpoint rows in visit order.
    link : str
        Link to a scan's report, with ``{scan_id}`` (``"{scan_id}/report.html"``).
    highlight : str, optional
        Scan id of the visit this page is about (marked, not linked).
    verdicts : mapping, optional
        QA verdict by scan id; when given (even empty) a QA column shows them.
    note : bool
        Explain the change columns under the table.
    """
    from lesionquant.qa._trajectory import render_patient_plot

    base = next((r for r in rows if r.get("is_baseline")), rows[0])
    n = len(rows)
    undated = sum(1 for r in rows if r.get("days_since_baseline") is None)
    sub = (f"{n} visit{'s' if n != 1 else ''}; baseline {e(str(base['scan_id']))} "
           f"({e(str(base.get('study_date') or 'undated'))})"
           + (f"; {undated} undated visit(s) not plotted" if undated else ""))
    png = render_patient_plot(rows, highlight=highlight)
    alt = (f"{patient}: lesion, GGO and consolidation % of lung against days since baseline")
    img = (f"<img src=\"{_data_uri(png)}\" width=\"440\" height=\"250\" alt=\"{e(alt)}\">")
    table = _visit_table(rows, link=link, highlight=highlight, verdicts=verdicts)
    return (f"<div class=\"patient\" id=\"{e(patient)}\"><h3>Patient {e(patient)}"
            f"<span class=\"sub\">{sub}</span></h3>"
            f"<div class=\"pat-body\">{img}<div>{table}"
            + (f"<p class=\"note\">{e(DELTA_NOTE)}</p>" if note else "")
            + "</div></div></div>")


def cohort_html(by_patient: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Every patient's change from baseline: a plot per measure and the endpoint table."""
    from lesionquant.qa._trajectory import render_cohort_plot

    rows = [r for p in sorted(by_patient) for r in by_patient[p]]
    n_follow = sum(1 for r in rows if not r.get("is_baseline"))
    if not rows:
        return "<p>No completed scans.</p>"
    png = render_cohort_plot(by_patient)
    img = (f"<img src=\"{_data_uri(png)}\" width=\"960\" height=\"300\" alt=\"change from "
           "baseline of lesion, GGO and consolidation % per patient\">")

    def num(value: Any, digits: int = 2, signed: bool = False, base: bool = False) -> str:
        if base:
            return "<td class=\"num note\" data-v=\"0\">baseline</td>"
        if value is None:
            return "<td class=\"num\" data-v=\"\">n/a</td>"
        text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
        return f"<td class=\"num\" data-v=\"{value!r}\">{text.replace('-', chr(0x2212))}</td>"

    head = ["patient", "visit", "day", "study date", "scan", "lesion %", "\u0394 lesion pp",
            "\u0394 lesion rel %", "GGO %", "\u0394 GGO pp", "consolidation %",
            "\u0394 consolidation pp", "\u0394 lung rel %"]
    body = []
    for r in rows:
        day = r.get("days_since_baseline")
        sid = str(r["scan_id"])
        base = bool(r.get("is_baseline"))
        cells = [f"<td data-v=\"{e(str(r['patient']))}\"><a href=\"#{e(str(r['patient']))}\">"
                 f"{e(str(r['patient']))}</a></td>",
                 f"<td class=\"num\" data-v=\"{r['visit']}\">{int(r['visit']) + 1}</td>",
                 f"<td class=\"num\" data-v=\"{'' if day is None else day}\">"
                 f"{'?' if day is None else day}</td>",
                 f"<td data-v=\"{e(str(r.get('study_date') or ''))}\">"
                 f"{e(str(r.get('study_date') or 'unknown'))}</td>",
                 f"<td data-v=\"{e(sid)}\"><a href=\"{e(sid)}/report.html\">{e(sid)}</a></td>",
                 num(r.get("lesion_pct")),
                 num(r.get("lesion_change_pp"), signed=True, base=base),
                 num(r.get("lesion_change_rel_pct"), 1, signed=True, base=base),
                 num(r.get("ggo_pct")), num(r.get("ggo_change_pp"), signed=True, base=base),
                 num(r.get("consolidation_pct")),
                 num(r.get("consolidation_change_pp"), signed=True, base=base),
                 num(r.get("lung_change_rel_pct"), 1, signed=True, base=base)]
        tr = "<tr class=\"base\">" if base else "<tr>"
        body.append(f"{tr}{''.join(cells)}</tr>")
    table = ("<div class=\"wide\"><table id=\"endpoint\" class=\"sortable\"><thead><tr>"
             + "".join(f"<th class=\"sort{' num' if i >= 5 else ''}\">{e(h)}</th>"
                       for i, h in enumerate(head))
             + f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>")
    return (f"<p>{len(by_patient)} patient(s), {len(rows)} visit(s), {n_follow} follow-up(s). "
            "Change from baseline in percentage points of the lung volume; the same numbers "
            "as <code>endpoint.csv</code> (definitions in docs/batch.md).</p>"
            f"{img}{table}")


def patient_section_html(scan_id: str, patient: str, rows: Sequence[Mapping[str, Any]]
                         ) -> str:
    """The report's "Patient and visit" section for ``scan_id`` (between the markers)."""
    row = next(r for r in rows if r["scan_id"] == scan_id)
    facts = [("patient", patient), ("study date", str(row.get("study_date") or "unknown")),
             ("visit", f"{int(row['visit']) + 1} of {len(rows)}"),
             ("days since baseline", "?" if row.get("days_since_baseline") is None
              else f"{row['days_since_baseline']:g}" + (" (baseline)"
                                                         if row.get("is_baseline") else ""))]
    boxes = "".join(f"<div>{e(k)}<b>{e(v)}</b></div>" for k, v in facts)
    card = patient_card_html(patient, rows, link="../{scan_id}/report.html", highlight=scan_id)
    # The section brings its own style: the page around it was written earlier, perhaps by
    # another version.
    return (f"{PATIENT_SECTION_START}<section><style>{PATIENT_CSS}</style>"
            f"<h2>Patient and visit</h2><div class=\"visit-facts\">{boxes}</div>{card}"
            f"</section>{PATIENT_SECTION_END}")


def pending_patient_section() -> str:
    """What a report shows before the batch has placed it among the patient's visits."""
    return (f"{PATIENT_SECTION_START}<section><h2>Patient and visit</h2><p class=\"note\">"
            "Filled in when the batch (<code>lesionquant run</code>) has finished: patient "
            "pseudonym, study date, day since baseline and the patient's trajectory.</p>"
            f"</section>{PATIENT_SECTION_END}")


def update_report_patient_sections(out_dir: str | os.PathLike[str],
                                   by_patient: Mapping[str, Sequence[Mapping[str, Any]]]
                                   | None = None) -> int:
    """Write the patient section into every ``OUT/<scan_id>/report.html``.

    Only reports whose section changed are rewritten (atomically). A report without the
    markers (written by an older version) is left alone.

    Returns
    -------
    int
        Number of reports rewritten.
    """
    out = Path(out_dir)
    by_patient = visits_by_patient(out) if by_patient is None else by_patient
    changed = 0
    for patient, rows in by_patient.items():
        for row in rows:
            path = out / str(row["scan_id"]) / "report.html"
            try:
                text = path.read_text(encoding="utf-8")
            except OSError:
                continue
            start, end = text.find(PATIENT_SECTION_START), text.find(PATIENT_SECTION_END)
            if start < 0 or end < start:
                continue
            section = patient_section_html(str(row["scan_id"]), patient, rows)
            new = text[:start] + section + text[end + len(PATIENT_SECTION_END):]
            if new != text:
                write_text_atomic(path, new)
                changed += 1
    logger.info("%s: patient section of %d report(s) updated", out, changed)
    return changed
