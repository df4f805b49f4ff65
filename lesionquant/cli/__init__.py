"""Command-line interface: ``lesionquant <command> ...``.

Each subcommand lives in its own module ``lesionquant.cli._<name>`` exposing
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
This module is the only place in the package that configures logging.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from lesionquant._version import __version__
from lesionquant.errors import LesionQuantError

__all__ = ["main"]

#: Subcommand modules, in the order ``--help`` lists them.
_COMMANDS: tuple[str, ...] = ("series", "run", "endpoint", "review", "evaluate")

logger = logging.getLogger("lesionquant")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="lesionquant",
        description="Measure lung lesions (GGO and consolidation) on chest CT.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lesionquant {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(f"lesionquant.cli._{name}").register(sub)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else
                                         logging.INFO if verbose == 1 else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("lesionquant")
    root.handlers[:] = [h for h in root.handlers if isinstance(h, logging.NullHandler)]
    root.addHandler(handler)
    root.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (0 ok, 1 some inputs failed, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    _configure_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args))
    except LesionQuantError as exc:
        logger.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
