"""``lesionquant series PATH``: list the DICOM series under PATH, and what each command does
with them.

One row per series: patient and study (numbered in order of appearance, never identifiers),
short UID, description, modality, image type, slices, slice thickness, kernel, ``RUN``
(``yes``: ``lesionquant run`` quantifies it; it quantifies *every* CT series it accepts) and
the status with the reason: ``CHOSEN`` is the series ``load_scan`` takes from its study (best
coverage, then thinnest slices), ``candidate`` another CT series of that study, ``excluded``
a series nothing quantifies (localizer, derived, SEG, not CT, ...). ``load_scan`` on a path
holding several patients or studies refuses to guess; give it one study's folder or a
series UID. Patient identifiers (name, ID, dates, accession) are never printed.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["register", "rows"]

_COLUMNS = ("patient", "study", "uid", "description", "modality", "image_type", "slices",
            "thickness_mm", "kernel", "run", "status", "reason")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``series`` subcommand."""
    p = subparsers.add_parser(
        "series", help="list the DICOM series under PATH: which ones `run` quantifies and "
                       "which one `load_scan` takes",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="PATH", help="folder (searched recursively) or DICOM file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def _numbering(values: list[str]) -> dict[str, str]:
    """1, 2, ... in order of first appearance; "?" for an empty value (never the value)."""
    out: dict[str, str] = {}
    for v in values:
        if v and v not in out:
            out[v] = str(len(out) + 1)
    return out


def rows(disc) -> list[dict[str, object]]:
    """One dict per series of a :class:`lesionquant.io.Discovery` (no patient identifiers)."""
    patients = _numbering([s.first.patient_id for s in disc.series])
    studies = _numbering([s.first.study_uid for s in disc.series])
    out: list[dict[str, object]] = []
    for s in disc.series:
        h = s.first
        status = "CHOSEN" if s.chosen else ("excluded" if s.excluded else "candidate")
        out.append({
            "patient": patients.get(h.patient_id, "?"),
            "study": studies.get(h.study_uid, "?"),
            "uid": s.short_uid,
            "description": h.series_description,
            "modality": h.modality or "(missing)",
            "image_type": "/".join(h.image_type),
            "slices": s.n_positions if h.frames == 1 else h.frames,
            "thickness_mm": h.slice_thickness_mm,
            "kernel": h.kernel,
            "run": "no" if s.excluded else "yes",
            "status": status,
            "reason": s.reason if (s.chosen or not s.excluded) else s.excluded,
        })

    def number(v: object) -> int:
        return int(v) if str(v).isdigit() else 10**9

    # Grouped by patient, then study (the discovery order within a study).
    return sorted(out, key=lambda r: (number(r["patient"]), number(r["study"])))


def _summary(records: list[dict[str, object]]) -> str:
    """What ``run`` and ``load_scan`` do with this path, in two lines."""
    runs = [r for r in records if r["run"] == "yes"]
    studies = {r["study"] for r in runs}
    patients = {r["patient"] for r in runs}
    if not runs:
        return "lesionquant run: nothing to quantify here (no CT series accepted)"
    lines = [f"lesionquant run quantifies the {len(runs)} series marked RUN yes (every CT "
             f"series: {len(studies)} stud{'y' if len(studies) == 1 else 'ies'} of "
             f"{len(patients)} patient(s))"]
    if len(studies) > 1 or len(patients) > 1:
        lines.append("load_scan / quantify on this path: refused (several patients or "
                     "studies); give one study's folder (load_scan takes the series chosen in "
                     "it) or a series UID")
    else:
        chosen = next(r for r in records if r["status"] == "CHOSEN")
        lines.append(f"load_scan / quantify on this path: the chosen series {chosen['uid']}")
    return "\n".join(lines)


def _table(records: list[dict[str, object]]) -> str:
    def cell(v: object) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:g}"
        return str(v)

    body = [[cell(r[c]) for c in _COLUMNS] for r in records]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(_COLUMNS)]
    widths[-1] = 0  # the reason is last and not padded
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(_COLUMNS, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths, strict=True)).rstrip() for b in body]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the series table; exit 0 when some series would be quantified, else 1."""
    from lesionquant.io import discover_series

    disc = discover_series(args.path)
    records = rows(disc)
    if args.json:
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
    elif records:
        sys.stdout.write(_table(records) + "\n" + _summary(records) + "\n")
        for path, why in disc.suspects.items():
            sys.stdout.write(f"lost slice? {path}: {why} (a series with slices in this "
                             "folder is refused unless --allow-incomplete-series)\n")
    else:
        sys.stdout.write(f"no DICOM series found under {args.path}\n")
    return 0 if any(r["status"] == "CHOSEN" for r in records) else 1
