"""``lesionquant evaluate``: measure the pipeline's accuracy on phantoms and real data.

Runs the phantom, insertion, normal-CT, MedSeg and TCIA experiments of
:mod:`lesionquant.evaluate` against the shared data folder and writes the tables as
markdown, with the TCIA overlay PNGs and the MedSeg montage beside them.

By default everything goes to ``lq_evaluate/`` in the current folder (ignored by git), never
over the tracked ``docs/accuracy.md``; to regenerate the documentation, say so:
``lesionquant evaluate --out docs/accuracy.md --figures docs/figures``.

The experiment grid has one set of defaults, those of :func:`lesionquant.evaluate.evaluate`
(shown below); the report's first line is the full command that reproduces it, every
parameter spelled out and the data folder relative.
"""

from __future__ import annotations

import argparse
import inspect
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["EXPECTED_MINUTES", "register", "run"]

#: Run time of the default grid, measured (``/usr/bin/time lesionquant evaluate`` on the 2-core
#: development machine): 349 s user + 131 s system = 8 min of CPU, 42 min wall at a load
#: average of 12 (the machine was shared); about 10 min wall on an idle machine.
EXPECTED_MINUTES = "about 10"
#: Default output folder (``/lq_evaluate/`` is in .gitignore).
DEFAULT_DIR = Path("lq_evaluate")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def _csv(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


#: The experiment grid: (option, parameter of evaluate(), parser, metavar, help).
_GRID: tuple[tuple[str, str, Any, str, str], ...] = (
    ("--phantom-seeds", "phantom_seeds", _ints, "S,S", "phantom random seeds"),
    ("--phantom-burdens", "phantom_burdens", _floats, "PCT,PCT",
     "phantom lesion burdens, %% of lung"),
    ("--phantom-size", "phantom_size_xyz", _ints, "X,Y,Z", "phantom grid, voxels"),
    ("--phantom-spacing", "phantom_spacing_mm", _floats, "X,Y,Z", "phantom voxel size, mm"),
    ("--thick-slices-mm", "thick_slice_mm", float, "MM",
     "the phantoms again with slices this thick, over the same length (0 skips them)"),
    ("--insert-seeds", "insert_seeds", _ints, "S,S", "insertion random seeds"),
    ("--insert-burdens", "insert_burdens", _floats, "PCT,PCT",
     "inserted lesion burdens, %% of lung"),
)


def _defaults() -> dict[str, Any]:
    """The experiment grid's defaults: the signature of :func:`lesionquant.evaluate.evaluate`
    (imported lazily: numpy and the pipeline are not needed to print ``--help``)."""
    from lesionquant.evaluate import evaluate

    params = inspect.signature(evaluate).parameters
    return {name: params[name].default for _, name, *_ in _GRID if name in params}


_DESCRIPTION = """\
Measure the pipeline's accuracy: procedural phantoms (thin and thick slices), lesions
inserted into real chest CT, real CT without COVID-19, the MedSeg expert slices and the TCIA
COVID-19 slices of the shared data folder. Writes the tables as markdown, with the TCIA
overlay PNGs and the MedSeg montage beside them.

Run time: {minutes} minutes with the default grid on an idle machine (measured: 8 min of
CPU time; 42 min wall on a 2-core machine shared at load 12). The 512 x 512 x 300 phantoms
take most of it (a smaller --phantom-size is much faster). A progress bar on stderr shows
which experiment runs.

Output: {out}/accuracy.md and {out}/figures/ in the current folder by default (ignored
by git); the tracked documentation is only written when asked for:
  lesionquant evaluate --out docs/accuracy.md --figures docs/figures

The experiment grid has one set of defaults, those of lesionquant.evaluate.evaluate()
(below). The report's first line is the full command that reproduces it: every grid value
spelled out, the data folder relative (default $LESIONQUANT_DATA, else ../shared/data).
"""


class _Help(argparse.RawDescriptionHelpFormatter):
    """Shows the grid's defaults, read from evaluate() only when help is printed (building
    the parser for every other command must not import the evaluation code)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        names = {name for _, name, *_ in _GRID}
        if action.dest in names:
            defaults = _defaults()
            if action.dest in defaults:
                text += f" (default {_csv(defaults[action.dest])})"
        return text


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    p = subparsers.add_parser(
        "evaluate", help=f"measure the pipeline's accuracy ({EXPECTED_MINUTES} min); writes "
                         f"{DEFAULT_DIR}/accuracy.md",
        description=_DESCRIPTION.format(minutes=EXPECTED_MINUTES, out=DEFAULT_DIR),
        formatter_class=_Help)
    p.add_argument("--data", metavar="DIR", default=None,
                   help="shared data folder holding chest/ (default $LESIONQUANT_DATA, else "
                        "../shared/data)")
    p.add_argument("--out", metavar="FILE", default=str(DEFAULT_DIR / "accuracy.md"),
                   help="markdown report to write (default %(default)s; the documentation's "
                        "is docs/accuracy.md)")
    p.add_argument("--figures", metavar="DIR", default=None,
                   help="folder for the TCIA overlay PNGs and the MedSeg montage (default: "
                        "figures/ beside --out; the documentation's is docs/figures)")
    for option, name, parse, metavar, text in _GRID:
        p.add_argument(option, dest=name, type=parse, metavar=metavar,
                       default=argparse.SUPPRESS, help=text)
    p.set_defaults(func=run)


def _data_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("LESIONQUANT_DATA")
    return Path(env) if env else Path.cwd().parent / "shared" / "data"


def _command(args: argparse.Namespace, grid: dict[str, Any], out: Path, figures: Path) -> str:
    """The command that reproduces the report: every grid value spelled out, paths relative
    to the current folder (no machine-specific absolute path)."""
    def rel(path: Path) -> str:
        try:
            return os.path.relpath(path)
        except ValueError:  # another drive (Windows)
            return str(path)

    parts = ["lesionquant", "evaluate"]
    if args.data:
        parts += ["--data", rel(Path(args.data))]
    parts += ["--out", rel(out), "--figures", rel(figures)]
    for option, name, *_ in _GRID:
        if name in grid:
            value = grid[name]
            parts += [option, _csv(0.0 if value is None else value)]
    return " ".join(shlex.quote(p) for p in parts)


class _Progress:
    """A bar over the experiments on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, stages: int) -> None:
        from tqdm import tqdm

        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.bar = tqdm(total=stages, unit="experiment", desc="evaluate", file=sys.stderr,
                        disable=not self.tty, dynamic_ncols=True,
                        bar_format="{desc}: {n}/{total} done |{bar}| {elapsed}{postfix}")
        self.started = False

    def __call__(self, msg: str) -> None:
        if self.started:
            self.bar.update(1)
        self.started = True
        self.bar.set_postfix_str(f"now: {msg}", refresh=True)
        if not self.tty:
            print(f"evaluate: {msg} ({time.monotonic() - self.t0:.0f} s)", file=sys.stderr)

    def close(self) -> None:
        if self.started:
            self.bar.update(1)
        self.bar.set_postfix_str("", refresh=False)
        self.bar.close()


def run(args: argparse.Namespace) -> int:
    """Run the evaluation; 0 on success."""
    from lesionquant.errors import InvalidInputError
    from lesionquant.evaluate import evaluate, write_report

    data = _data_dir(args.data)
    out = Path(args.out)
    figures = Path(args.figures) if args.figures else out.parent / "figures"
    # Checked before the minutes of experiments, not when the report is written.
    if out.is_dir():
        raise InvalidInputError("--out is a folder; give the markdown file to write",
                                source=out)
    if not data.is_dir():
        raise InvalidInputError("--data: no such data folder", source=data)
    if args.out == str(DEFAULT_DIR / "accuracy.md"):
        out.parent.mkdir(exist_ok=True)
    if not out.parent.is_dir():
        raise InvalidInputError("--out: no such folder for the report", source=out.parent)
    figures.mkdir(parents=True, exist_ok=True)
    defaults = _defaults()
    grid = {**defaults, **{name: getattr(args, name) for _, name, *_ in _GRID
                           if hasattr(args, name)}}
    if grid.get("thick_slice_mm") == 0:
        grid["thick_slice_mm"] = None
    spacing_z = tuple(grid.get("phantom_spacing_mm", (0.0, 0.0, 1.0)))[2]
    thick = grid.get("thick_slice_mm")
    bar = _Progress(stages=6 if thick and thick > spacing_z else 5)
    try:
        tables = evaluate(data, figures_dir=figures, progress=bar, **grid)
    finally:
        bar.close()
    path = write_report(tables, out, command=_command(args, grid, out, figures))
    print(path)
    return 0
