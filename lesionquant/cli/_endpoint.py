"""``lesionquant endpoint OUT``: (re)build the per-patient change-from-baseline table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lesionquant.errors import InvalidInputError

__all__ = ["register"]

_EXAMPLES = """\
examples:
  lesionquant endpoint out/
      writes out/endpoint.csv (baseline = each patient's first visit by study date)
  lesionquant endpoint out/ --baseline S-0123456789ab --baseline S-ba9876543210
      those scans are the baselines of their patients

Definitions of every column: docs/batch.md ("Endpoint table").
"""


def register(sub: Any) -> None:
    """Add the ``endpoint`` subcommand to ``sub``."""
    p = sub.add_parser(
        "endpoint", help="per-patient change from baseline -> OUT/endpoint.csv",
        description="Order each patient's visits by study date, take the first (or the chosen) "
                    "as baseline and write lesion / GGO / consolidation % and their change "
                    "from baseline to OUT/endpoint.csv.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, metavar="OUT", help="output folder of `lesionquant run`")
    p.add_argument("--baseline", action="append", default=[], metavar="SCAN_ID",
                   help="scan id to use as its patient's baseline (repeatable)")
    p.set_defaults(func=_endpoint)


def _fmt(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _endpoint(args: argparse.Namespace) -> int:
    from lesionquant.batch import compute_endpoint

    if not args.out.is_dir():
        raise InvalidInputError("no such output folder", source=args.out)
    rows = compute_endpoint(args.out, baseline=args.baseline)
    out = sys.stdout
    out.write(f"{'patient':<16} {'visit':>5} {'days':>5} {'lesion %':>9} {'change pp':>10} "
              f"{'scan_id'}\n")
    for r in rows:
        out.write(f"{r['patient']:<16} {r['visit']:>5} "
                  f"{_fmt(r['days_since_baseline'], 'd'):>5} {_fmt(r['lesion_pct'], '.2f'):>9} "
                  f"{_fmt(r['lesion_change_pp'], '+.2f'):>10} {r['scan_id']}\n")
    out.write(f"lesionquant endpoint: {len(rows)} visit(s) of "
              f"{len({r['patient'] for r in rows})} patient(s) -> {args.out / 'endpoint.csv'}\n")
    return 0
