"""Self-contained HTML: the per-scan ``report.html`` and the batch ``index.html``.

Self-contained means a reader can open the file from a USB stick on a hospital PC with no
network: images are embedded as ``data:`` URIs, CSS and JS are inline, nothing refers to
a CDN or any ``http(s)://`` address. Links between the files of ``OUT/`` are relative.
Every text that comes from data is HTML-escaped.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lesionquant._atomic import write_text_atomic
from lesionquant._deid import identifying_texts, scrub
from lesionquant._version import __version__
from lesionquant.qa._display import COLOURS, LUNG_WINDOW, check_renderable
from lesionquant.qa._outdir import KEY_NUMBERS, ScanEntry, list_scans, read_errors
from lesionquant.qa._patients import (
    DELTA_NOTE,
    PATIENT_CSS,
    cohort_html,
    day_text,
    patient_card_html,
    pending_patient_section,
    visits_by_patient,
)
from lesionquant.qa._verdicts import Verdict, load_verdicts

logger = logging.getLogger(__name__)

__all__ = ["render_report_html", "write_index", "write_scan_qa"]

OVERLAY_FILE = "overlay.png"
REPORT_FILE = "report.html"
INDEX_FILE = "index.html"

_CSS = (f":root {{ --ggo: {COLOURS['ggo']}; --con: {COLOURS['consolidation']}; "
        f"--lung: {COLOURS['lung']}; }}") + """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       color: #1d1d1f; background: #f5f5f7; }
header { background: #111; color: #eee; padding: 12px 20px; }
header h1 { margin: 0; font-size: 20px; }
header .sub { color: #aaa; font-size: 12px; }
main { padding: 16px 20px; }
section { background: #fff; border-radius: 6px; padding: 12px 16px; margin-bottom: 14px;
          box-shadow: 0 1px 2px rgba(0,0,0,.08); }
h2 { font-size: 16px; margin: 0 0 8px; }
table { border-collapse: collapse; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e3e3e6; text-align: left;
         vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
th.sort { cursor: pointer; user-select: none; white-space: nowrap; }
th.sort:after { content: " \\2195"; color: #999; }
.key { display: flex; gap: 14px; flex-wrap: wrap; }
.key div { background: #f0f0f3; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.key b { display: block; font-size: 22px; }
.warn { color: #8a4b00; }
.grid { column-width: 300px; column-gap: 28px; }
.grid .kv { display: flex; justify-content: space-between; gap: 10px; break-inside: avoid;
            border-bottom: 1px solid #e3e3e6; padding: 2px 0; }
.grid .kv b { font-weight: 500; font-variant-numeric: tabular-nums; }
.montage { max-width: 100%; height: auto; background: #000; border-radius: 4px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
         font-weight: 600; }
.accept { background: #d7efe4; color: #00573d; }
.reject { background: #fde0d2; color: #8a2c00; }
.pending, .none { background: #ececec; color: #555; }
.failed { background: #fde0d2; color: #8a2c00; }
pre { background: #f0f0f3; padding: 8px; overflow-x: auto; font-size: 12px; }
.legend span { display: inline-block; width: 14px; height: 14px; vertical-align: -2px;
               margin: 0 4px 0 12px; border-radius: 2px; }
""" + PATIENT_CSS

# Click a header to sort; numbers sort numerically (data-v), empty cells last.
_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (t) {
  t.querySelectorAll('th.sort').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = t.tBodies[0], rows = Array.from(body.rows);
      var dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir > 0 ? 'asc' : 'desc';
      var idx = Array.from(th.parentNode.children).indexOf(th);
      rows.sort(function (a, b) {
        var x = a.cells[idx].dataset.v, y = b.cells[idx].dataset.v;
        if (x === '' || x === undefined) return 1; if (y === '' || y === undefined) return -1;
        var nx = parseFloat(x), ny = parseFloat(y);
        if (!isNaN(nx) && !isNaN(ny)) return dir * (nx - ny);
        return dir * x.localeCompare(y);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
var f = document.getElementById('filter');
if (f) f.addEventListener('change', function () {
  document.querySelectorAll('#scans tbody tr').forEach(function (r) {
    r.style.display = (f.value === 'all' || r.dataset.status === f.value) ? '' : 'none';
  });
});
"""

e = html.escape


def _page(title: str, subtitle: str, body: str, *, script: str = "") -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        # No network: forbid every external load even if a value sneaks in.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{e(title)}</h1><div class=\"sub\">{e(subtitle)}</div></header>"
        f"<main>{body}</main>"
        + (f"<script>{script}</script>" if script else "")
        + "</body></html>\n"
    )


def _as_dict(obj: Any) -> Any:
    """Provenance objects as plain JSON-like data (dicts, lists, scalars)."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _as_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.repr}
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return _as_dict(obj.to_dict())
    if isinstance(obj, Mapping):
        return {str(k): _as_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_as_dict(v) for v in obj]
    return str(obj)


def _fmt_value(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _kv_table(data: Mapping[str, Any]) -> str:
    """A two-column table of a (possibly nested) mapping; nested values become tables."""
    rows = []
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            cell = _kv_table(value)
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            cell = "".join(_kv_table(v) for v in value)
        elif isinstance(value, list):
            cell = e(", ".join(_fmt_value(v) for v in value))
        elif value is None:
            cell = "n/a"
        else:
            cell = e(_fmt_value(value))
        cls = " class=\"num\"" if isinstance(value, (int, float)) and not isinstance(
            value, bool) else ""
        rows.append(f"<tr><th>{e(str(key))}</th><td{cls}>{cell}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def _kv_grid(data: Mapping[str, Any]) -> str:
    """Flat key/value pairs in newspaper columns (a long list of numbers stays short)."""
    items = "".join(
        f"<div class=\"kv\"><span>{e(str(k))}</span><b>{e(_fmt_value(v))}</b></div>"
        for k, v in data.items())
    return f"<div class=\"grid\">{items}</div>"


def _key_boxes(numbers: Mapping[str, Any]) -> str:
    boxes = []
    for key, label, digits in KEY_NUMBERS:
        value = numbers.get(key)
        text = "n/a" if value is None else f"{float(value):,.{digits}f}"
        boxes.append(f"<div>{e(label)}<b>{e(text)}</b></div>")
    return f"<div class=\"key\">{''.join(boxes)}</div>"


def _legend() -> str:
    return (f"<div class=\"legend\">lung window {e(LUNG_WINDOW.label)}; right lung on the "
            "image left."
            "<span style=\"background:var(--ggo)\"></span>GGO"
            "<span style=\"background:var(--con)\"></span>consolidation"
            "<span style=\"border:2px solid var(--lung)\"></span>lung contour</div>")


def _data_uri_png(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _verdict_badge(verdict: Verdict | None) -> str:
    if verdict is None:
        return "<span class=\"badge none\">not reviewed</span>"
    return f"<span class=\"badge {e(verdict.verdict)}\">{e(verdict.verdict)}</span>"


def render_report_html(
    scan_id: str,
    numbers: Mapping[str, Any],
    *,
    montage_png: bytes | None,
    warnings: Iterable[str] = (),
    provenance: Any = None,
    acquisition: Any = None,
) -> str:
    """The per-scan QA report as one self-contained HTML string.

    Parameters
    ----------
    scan_id : str
        Pseudonymous scan id.
    numbers : mapping
        ``Result.to_dict()``: every number, units in the key names.
    montage_png : bytes or None
        The QA montage, embedded as a ``data:`` URI.
    warnings : iterable of str
        Loader and pipeline warnings.
    provenance : object
        ``Result.provenance`` (mapping or dataclass): version, method, device, settings,
        timings.
    acquisition : Acquisition, optional
        Acquisition facts (no patient identifiers are part of it).
    """
    warnings = [str(w) for w in warnings]
    flat = {k: v for k, v in numbers.items()
            if isinstance(v, (int, float, str, bool)) or v is None}
    parts = [
        # Patient, study date, visit day and the trajectory: filled in by the batch once it
        # knows every visit of the patient (qa._patients.update_report_patient_sections).
        pending_patient_section(),
        f"<section><h2>Key numbers</h2>{_key_boxes(numbers)}</section>",
        "<section><h2>QA images</h2>",
        (f"<img class=\"montage\" alt=\"QA montage of {e(scan_id)}\" "
         f"src=\"{_data_uri_png(montage_png)}\">" if montage_png else "<p>No image.</p>"),
        f"{_legend()}</section>",
        "<section><h2>Warnings</h2>",
        ("<ul>" + "".join(f"<li class=\"warn\">{e(w)}</li>" for w in warnings) + "</ul>"
         if warnings else "<p>None.</p>"),
        "</section>",
        f"<section><h2>All results</h2>{_kv_grid(flat)}</section>",
    ]
    if acquisition is not None:
        parts.append(f"<section><h2>Acquisition</h2>{_kv_table(_as_dict(acquisition))}"
                     "</section>")
    if provenance is not None:
        parts.append(f"<section><h2>Provenance</h2>{_kv_table(_as_dict(provenance))}"
                     "</section>")
    parts.append("<p><a href=\"../index.html\">&larr; batch index</a></p>")
    return _page(f"lesionquant QA · {scan_id}", f"lesionquant {__version__}", "".join(parts))


def _identifying_texts(scan: Any) -> list[tuple[str, str]]:
    """(text, placeholder) pairs that must not reach a report: input paths (they may name
    the patient) and the patient's name, ID and accession number; longest first (the one
    rule of :mod:`lesionquant._deid`)."""
    source = str(getattr(scan, "source", "") or "")
    sources = [source, str(Path(source).parent)] if source and not source.startswith("<") \
        else []
    return identifying_texts(sources, getattr(scan, "identifiers", None))


def _scrub(value: Any, scan: Any) -> Any:
    """``value`` (str, list or dict, nested) with identifying texts and paths replaced."""
    return scrub(value, _identifying_texts(scan))


def write_scan_qa(result: Any, folder: str | os.PathLike[str], *, scan_id: str | None = None
                  ) -> tuple[Path, Path]:
    """Write ``overlay.png`` and ``report.html`` for one result into ``folder``.

    The batch layer calls this inside its per-scan temp folder before committing it.

    Parameters
    ----------
    result : Result
        A :func:`lesionquant.quantify` result (``scan``, ``labelmap``, ``to_dict()``,
        ``provenance``).
    folder : str or PathLike
        Existing folder to write into.
    scan_id : str, optional
        Pseudonymous scan id shown on the images; defaults to the folder name.

    Returns
    -------
    (Path, Path)
        Paths of the PNG and the HTML.

    Raises
    ------
    UnsupportedDicomError
        When the scan is a derived or secondary-capture image (never rendered).
    """
    from lesionquant.qa._overlays import render_montage

    folder = Path(folder)
    scan_id = scan_id or folder.name
    scan = result.scan
    check_renderable(scan.acquisition, scan_id)
    measurements = getattr(result, "measurements", None)
    numbers = dict(measurements) if measurements is not None else result.to_dict()
    provenance = _scrub(_as_dict(getattr(result, "provenance", None)) or {}, scan)
    method = provenance.get("method", "")
    if "weights_sha256" in provenance and not provenance["weights_sha256"]:
        provenance["weights_sha256"] = f"n/a (the {method or 'classical'} method uses no weights)"
    montage = render_montage(
        scan.image, result.labelmap, scan_id=scan_id, numbers=numbers,
        acquisition=scan.acquisition,
        note=f"lesionquant {__version__}" + (f", method {method}" if method else ""),
    )
    prov_warnings = provenance.get("warnings", [])
    if isinstance(prov_warnings, str):
        prov_warnings = [w for w in prov_warnings.split(" | ") if w]
    warnings = list(dict.fromkeys(_scrub([*scan.warnings, *prov_warnings], scan)))
    png_path = montage.save(folder / OVERLAY_FILE)
    html_text = render_report_html(scan_id, numbers, montage_png=montage.png,
                                   warnings=warnings, provenance=provenance,
                                   acquisition=scan.acquisition)
    html_path = write_text_atomic(folder / REPORT_FILE, html_text)
    logger.info("%s: QA montage and report written", scan_id)
    return png_path, html_path


def _num_cell(value: float | None, digits: int) -> str:
    if value is None:
        return "<td class=\"num\" data-v=\"\">n/a</td>"
    return f"<td class=\"num\" data-v=\"{value!r}\">{value:,.{digits}f}</td>"


def _scan_row(scan: ScanEntry, verdict: Verdict | None, visit: dict[str, Any] | None) -> str:
    status = verdict.verdict if verdict else "none"
    link = f"{scan.scan_id}/{REPORT_FILE}"
    report = (f"<a href=\"{e(link)}\">{e(scan.scan_id)}</a>"
              if (scan.folder / REPORT_FILE).is_file() else e(scan.scan_id))
    montage = (f"<a href=\"{e(scan.scan_id)}/{OVERLAY_FILE}\">montage</a>"
               if (scan.folder / OVERLAY_FILE).is_file() else "")
    visit = visit or {}
    patient = str(visit.get("patient") or "")
    date = str(visit.get("study_date") or "")
    day = visit.get("days_since_baseline")
    cells = [f"<td data-v=\"{e(patient)}\"><a href=\"#{e(patient)}\">{e(patient)}</a></td>",
             f"<td data-v=\"{e(date)}\">{e(date or 'unknown')}</td>",
             f"<td class=\"num\" data-v=\"{'' if day is None else day}\">"
             f"{e(day_text(visit)) if visit else ''}</td>",
             f"<td data-v=\"{e(scan.scan_id)}\">{report}</td>", f"<td>{montage}</td>"]
    cells += [_num_cell(scan.number(key), digits) for key, _, digits in KEY_NUMBERS]
    warnings = scan.warnings
    cells.append(f"<td class=\"num\" data-v=\"{len(warnings)}\" title=\"{e(' | '.join(warnings))}\""
                 f">{len(warnings) or ''}</td>")
    cells.append(f"<td data-v=\"{e(scan.method)}\">{e(scan.method)}</td>")
    cells.append(f"<td data-v=\"{e(status)}\">{_verdict_badge(verdict)}</td>")
    cells.append(f"<td data-v=\"{e(verdict.comment if verdict else '')}\">"
                 f"{e(verdict.comment if verdict else '')}</td>")
    cells.append(f"<td data-v=\"{e(verdict.time_utc if verdict else '')}\">"
                 f"{e(verdict.time_utc if verdict else '')}</td>")
    return (f"<tr data-scan=\"{e(scan.scan_id)}\" data-status=\"{e(status)}\">"
            f"{''.join(cells)}</tr>")


def render_index_html(out_dir: str | os.PathLike[str]) -> str:
    """The batch index of ``OUT`` as one self-contained HTML string (see :func:`write_index`)."""
    out = Path(out_dir)
    scans = list_scans(out)
    errors = read_errors(out)
    verdicts = load_verdicts(out)
    counts = {k: sum(1 for s in scans if (verdicts.get(s.scan_id) and
                                          verdicts[s.scan_id].verdict == k))
              for k in ("accept", "reject", "pending")}
    reviewed = counts["accept"] + counts["reject"]
    by_patient = visits_by_patient(out, [s.result for s in scans])
    visits = {str(r["scan_id"]): r for rows in by_patient.values() for r in rows}
    order = {sid: n for n, sid in enumerate(visits)}  # patient, then visit order
    scans = sorted(scans, key=lambda s: (order.get(s.scan_id, len(order)), s.scan_id))
    head = ["<th class=\"sort\">patient</th>", "<th class=\"sort\">study date</th>",
            "<th class=\"sort num\">visit day</th>",
            "<th class=\"sort\">scan</th>", "<th>QA image</th>"]
    head += [f"<th class=\"sort num\">{e(label)}</th>" for _, label, _ in KEY_NUMBERS]
    head += ["<th class=\"sort num\">warnings</th>", "<th class=\"sort\">method</th>",
             "<th class=\"sort\">QA</th>", "<th class=\"sort\">comment</th>",
             "<th class=\"sort\">reviewed (UTC)</th>"]
    rows = "".join(_scan_row(s, verdicts.get(s.scan_id), visits.get(s.scan_id))
                   for s in scans)
    summary = (f"<p>{len(by_patient)} patient(s), {len(scans)} scans measured, "
               f"{len(errors)} failed. QA: "
               f"{counts['accept']} accepted, {counts['reject']} rejected, "
               f"{len(scans) - reviewed} not yet decided. "
               "Review with <code>lesionquant review OUT</code>.</p>")
    filt = ("<label>show <select id=\"filter\"><option value=\"all\">all</option>"
            "<option value=\"none\">not reviewed</option><option value=\"pending\">pending"
            "</option><option value=\"accept\">accepted</option><option value=\"reject\">"
            "rejected</option></select></label>")
    verdict_of = {sid: v.verdict for sid, v in verdicts.items()}
    cards = "".join(patient_card_html(p, rows_, link="{scan_id}/" + REPORT_FILE,
                                      verdicts=verdict_of, note=False)
                    for p, rows_ in sorted(by_patient.items()))
    body = ["<nav class=\"toc\"><a href=\"#cohort\">Cohort</a><a href=\"#patients\">"
            "Patients and visits</a><a href=\"#all-scans\">All scans</a>"
            "<a href=\"#failed-scans\">Failed scans</a></nav>",
            f"<section id=\"cohort\"><h2>Cohort: change from baseline</h2>"
            f"{cohort_html(by_patient)}</section>",
            "<section id=\"patients\"><h2>Patients and visits</h2>"
            "<p class=\"note\">Each patient's lesion, GGO and consolidation % of the lung "
            "against days since baseline, beside the visits and their change from baseline. "
            f"{e(DELTA_NOTE)}</p><div class=\"patients\">{cards}</div></section>",
            f"<section id=\"all-scans\"><h2>All scans</h2>{summary}{filt}"
            f"<table id=\"scans\" class=\"sortable\"><thead><tr>{''.join(head)}</tr></thead>"
            f"<tbody>{rows}</tbody></table></section>"]
    if errors:
        cols = list(dict.fromkeys(k for row in errors for k in row))
        err_rows = "".join(
            "<tr>" + "".join(f"<td data-v=\"{e(str(r.get(c, '') or ''))}\">"
                             f"{e(str(r.get(c, '') or ''))}</td>" for c in cols) + "</tr>"
            for r in errors)
        body.append("<section id=\"failed-scans\"><h2>Failed scans</h2>"
                    "<table id=\"failed\" class=\"sortable\"><thead><tr>"
                    + "".join(f"<th class=\"sort\">{e(c)}</th>" for c in cols)
                    + f"</tr></thead><tbody>{err_rows}</tbody></table></section>")
    else:
        body.append("<section id=\"failed-scans\"><h2>Failed scans</h2><p>None.</p>"
                    "</section>")
    return _page("lesionquant batch QA", f"{out.resolve().name} · lesionquant {__version__}",
                 "".join(body), script=_SORT_JS)


def write_index(out_dir: str | os.PathLike[str]) -> Path:
    """Write ``OUT/index.html``: every scan with its key numbers and QA status.

    The page is sortable (click a column), filterable by QA status, lists failed scans
    with their reasons from ``OUT/errors.csv`` and links each scan's ``report.html``.

    Parameters
    ----------
    out_dir : str or PathLike
        The batch output folder.

    Returns
    -------
    Path
        ``OUT/index.html``.
    """
    path = write_text_atomic(Path(out_dir) / INDEX_FILE, render_index_html(out_dir))
    logger.info("%s written", path)
    return path

