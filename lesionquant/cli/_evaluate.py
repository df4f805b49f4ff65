"""``lesionquant evaluate``: regenerate the accuracy report (``docs/accuracy.md``).

Runs the phantom, insertion, normal-CT, MedSeg and TCIA experiments of
:mod:`lesionquant.evaluate` against the shared data folder and writes the tables as
markdown (and the TCIA overlay PNGs and the MedSeg montage).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

__all__ = ["register", "run"]


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    p = subparsers.add_parser(
        "evaluate", help="measure the pipeline's accuracy and write docs/accuracy.md",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", metavar="DIR", default=os.environ.get("LESIONQUANT_DATA"),
                   help="shared data folder holding chest/ (default $LESIONQUANT_DATA or "
                        "../shared/data)")
    p.add_argument("--out", metavar="FILE", default="docs/accuracy.md",
                   help="markdown report to write (default docs/accuracy.md)")
    p.add_argument("--figures", metavar="DIR", default="docs/figures",
                   help="folder for the TCIA overlay PNGs and the MedSeg montage "
                   "(default docs/figures)")
    p.add_argument("--lungs", choices=("classical", "model"), default=None, metavar="METHOD",
                   help="method of the lung stage: classical or model (default classical)")
    p.add_argument("--lesions", choices=("classical", "model"), default=None, metavar="METHOD",
                   help="method of the lesion stage: classical or model (default classical)")
    p.add_argument("--phantom-seeds", type=_ints, default=(0, 1, 2), metavar="S,S")
    p.add_argument("--phantom-burdens", type=_floats, default=(2.0, 10.0, 30.0),
                   metavar="PCT,PCT")
    p.add_argument("--phantom-size", type=_ints, default=(512, 512, 300), metavar="X,Y,Z")
    p.add_argument("--phantom-spacing", type=_floats, default=(0.7, 0.7, 1.0),
                   metavar="X,Y,Z", help="mm")
    p.add_argument("--thick-slices-mm", type=float, default=5.0, metavar="MM",
                   help="the phantoms again with slices this thick, over the same length "
                   "(default 5; 0 skips them)")
    p.add_argument("--insert-seeds", type=_ints, default=(0, 1), metavar="S,S")
    p.add_argument("--insert-burdens", type=_floats, default=(5.0, 20.0), metavar="PCT,PCT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the evaluation; 0 on success."""
    from lesionquant.errors import InvalidInputError
    from lesionquant.evaluate import evaluate, write_report

    data = Path(args.data) if args.data else Path.cwd().parent / "shared" / "data"
    out = Path(args.out)
    # Checked before the minutes of experiments, not when the report is written.
    if out.is_dir():
        raise InvalidInputError("--out is a folder; give the markdown file to write",
                                source=out)
    if not out.parent.is_dir():
        raise InvalidInputError("--out: no such folder for the report", source=out.parent)
    if not data.is_dir():
        raise InvalidInputError("--data: no such data folder", source=data)
    tables = evaluate(
        data, lung_method=args.lungs, lesion_method=args.lesions,
        figures_dir=Path(args.figures) if args.figures else None,
        phantom_seeds=args.phantom_seeds, phantom_burdens=args.phantom_burdens,
        phantom_size_xyz=tuple(args.phantom_size), phantom_spacing_mm=tuple(args.phantom_spacing),
        thick_slice_mm=args.thick_slices_mm or None,
        insert_seeds=args.insert_seeds, insert_burdens=args.insert_burdens,
        progress=lambda msg: print(f"evaluate: {msg}", file=sys.stderr),
    )
    command = "lesionquant evaluate " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 1 and sys.argv[1] == "evaluate" else "lesionquant evaluate"
    path = write_report(tables, out, command=command)
    print(path)
    return 0
