"""``lesionquant series PATH``: list the DICOM series under PATH and which one would be used.

One row per series: short UID, description, modality, image type, slices, slice thickness,
kernel, and the status (``CHOSEN`` / ``candidate`` / ``excluded``) with the reason. Patient
identifiers (name, ID, dates, accession) are never printed.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["register", "rows"]

_COLUMNS = ("uid", "description", "modality", "image_type", "slices", "thickness_mm", "kernel",
            "status", "reason")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``series`` subcommand."""
    p = subparsers.add_parser(
        "series", help="list the DICOM series under PATH and which one would be quantified",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="PATH", help="folder (searched recursively) or DICOM file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def rows(disc) -> list[dict[str, object]]:
    """One dict per series of a :class:`lesionquant.io.Discovery` (no patient identifiers)."""
    out: list[dict[str, object]] = []
    for s in disc.series:
        h = s.first
        status = "CHOSEN" if s.chosen else ("excluded" if s.excluded else "candidate")
        out.append({
            "uid": s.short_uid,
            "description": h.series_description,
            "modality": h.modality or "(missing)",
            "image_type": "/".join(h.image_type),
            "slices": s.n_positions if h.frames == 1 else h.frames,
            "thickness_mm": h.slice_thickness_mm,
            "kernel": h.kernel,
            "status": status,
            "reason": s.reason if (s.chosen or not s.excluded) else s.excluded,
        })
    return out


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
    """Print the series table; exit 0 when a series would be chosen, else 1."""
    from lesionquant.io import discover_series

    disc = discover_series(args.path)
    records = rows(disc)
    if args.json:
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
    elif records:
        sys.stdout.write(_table(records) + "\n")
        studies = {s.first.study_uid for s in disc.series if s.first.study_uid}
        if len(studies) > 1:
            sys.stdout.write(f"note: {len(studies)} studies under this path; a scan is loaded "
                             "from one series (force one with its UID)\n")
        for path, why in disc.suspects.items():
            sys.stdout.write(f"lost slice? {path}: {why} (a series with slices in this "
                             "folder is refused unless --allow-incomplete-series)\n")
    else:
        sys.stdout.write(f"no DICOM series found under {args.path}\n")
    return 0 if any(r["status"] == "CHOSEN" for r in records) else 1
