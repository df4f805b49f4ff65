"""``lesionquant run INPUT... -o OUT``: quantify many scans into one output folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lesionquant.errors import InvalidInputError

__all__ = ["load_settings", "register"]

_EXAMPLES = """\
examples:
  lesionquant run sample_scans/ -o out/
      every CT series under sample_scans/ -> out/<scan_id>/..., out/results.csv,
      out/errors.csv, out/endpoint.csv, out/index.html
  lesionquant run /data/trial/site*/ -o /results/trial --workers 4
      four scans in parallel (peak memory about 4 x one scan)
  lesionquant run /shared/trial -o /shared/results --scheduler tcp://head:8786
      one task per scan on a running Dask cluster (pip install "lesionquant[dask]";
      inputs and OUT on a filesystem every worker sees under the same paths)
  lesionquant run scan.nii.gz other_scan/ -o out/ --config settings.toml --method classical
  lesionquant run /data/trial -o out/ --lungs model
      the learned lung mask (dense consolidation kept) with the classical HU-band lesions
  lesionquant run /data/trial -o /results/trial
      after an interruption (even kill -9): finishes the missing scans only
  lesionquant run /data/trial -o /results/trial --overwrite
      recompute everything (e.g. after changing settings)
  lesionquant run /data/trial -o out/ --baseline S-0123456789ab
      use this scan as its patient's baseline in out/endpoint.csv

settings.toml holds Settings fields at the top level or under [settings], e.g.
  method = "classical"
  ggo_hu = [-750, -300]
Command-line flags win over the file. Output layout and columns: docs/batch.md.
Exit status: 0 all scans done, 1 some scan failed (see OUT/errors.csv), 2 usage error.
"""


def register(sub: Any) -> None:
    """Add the ``run`` subcommand to ``sub`` (an argparse subparsers object)."""
    p = sub.add_parser(
        "run", help="quantify every CT series under the inputs into an output folder",
        description="Quantify lung lesions on every CT series found under the INPUTs and write "
                    "per-scan results, DICOM SEG, QA pictures, results.csv and the endpoint "
                    "table into OUT. Resumable, crash-safe, pseudonymous by default.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="scan folder, volume file (.nii.gz, .nrrd, .mha) or folder of many scans")
    p.add_argument("-o", "--out", required=True, type=Path, metavar="OUT",
                   help="output folder (created if missing)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=1, metavar="N",
                       help="parallel local worker processes (default 1; memory ~ N x one scan)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run the scans on the Dask cluster of this scheduler "
                            "(tcp://host:8786, or a scheduler file *.json) instead of local "
                            "processes; needs the dask extra")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default from settings: auto)")
    p.add_argument("--method", choices=["classical", "model"],
                   help="segmentation method (default from settings: classical)")
    p.add_argument("--lungs", choices=["classical", "model"], metavar="METHOD",
                   help="method of the lung stage alone, classical or model (default: "
                        "--method); --lungs model keeps dense dependent consolidation in the "
                        "lung and measures lesions by the classical HU bands (models/README.md)")
    p.add_argument("--lesions", choices=["classical", "model"], metavar="METHOD",
                   help="method of the lesion stage alone, classical or model (default: "
                        "--method)")
    p.add_argument("--config", type=Path, metavar="TOML", help="settings file (TOML)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip scans whose result is complete (default: on)")
    p.add_argument("--overwrite", action="store_true",
                   help="recompute and replace existing results")
    p.add_argument("--keep-identifiers", action="store_true",
                   help="write real patient name/ID, accession and source paths into the "
                        "outputs (default: pseudonyms only)")
    p.add_argument("--salt", help="pseudonym salt (default: $LESIONQUANT_SALT, else OUT/.salt, "
                                  "created on first run)")
    p.add_argument("--baseline", action="append", default=[], metavar="SCAN_ID",
                   help="scan id to use as its patient's baseline (repeatable; default: each "
                        "patient's first visit)")
    p.add_argument("--endpoint", action=argparse.BooleanOptionalAction, default=True,
                   help="write OUT/endpoint.csv at the end (default: on)")
    p.add_argument("--seg", action=argparse.BooleanOptionalAction, default=True,
                   help="write a DICOM SEG per DICOM input (default: on)")
    p.add_argument("--allow-incomplete-series", action="store_true",
                   help="quantify a series with lost slices (unreadable, empty or cut files "
                        "beside it, missing positions) anyway, interpolating over gaps of up "
                        "to 3 slices; each gap is a warning in result.json, results.csv and "
                        "the QA report (default: such a series fails)")
    p.add_argument("--qa", action=argparse.BooleanOptionalAction, default=True,
                   help="write overlay.png / report.html per scan and OUT/index.html "
                        "(default: on)")
    p.set_defaults(func=_run)


def load_settings(config: Path | None, **flags: Any) -> Any:
    """Settings from a TOML file (top level or ``[settings]`` table) overridden by flags.

    Raises
    ------
    InvalidInputError
        The file is missing, not TOML, or holds unknown / invalid settings.
    """
    from lesionquant.settings import Settings

    data: dict[str, Any] = {}
    if config is not None:
        try:
            import tomllib
        except ImportError:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        try:
            with open(config, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise InvalidInputError("no such settings file", source=config) from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInputError(f"not valid TOML: {exc}", source=config) from None
        data = dict(data.get("settings", data))
    data.update({k: v for k, v in flags.items() if v is not None})
    try:
        return Settings.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"invalid settings: {exc}",
                                source=config or "command line") from None


def _run(args: argparse.Namespace) -> int:
    from lesionquant.batch import run_batch

    if args.workers < 1:
        raise InvalidInputError("--workers must be at least 1", source="command line")
    settings = load_settings(args.config, method=args.method, device=args.device,
                             lung_method=args.lungs, lesion_method=args.lesions)
    summary = run_batch(
        args.inputs, args.out, settings=settings, workers=args.workers,
        client=args.scheduler, resume=args.resume,
        overwrite=args.overwrite, keep_identifiers=args.keep_identifiers, salt=args.salt,
        endpoint=args.endpoint, baseline=args.baseline, seg=args.seg,
        progress=None if not args.quiet else False, qa_hooks=None if args.qa else (),
        index=args.qa, allow_incomplete_series=args.allow_incomplete_series)
    print(f"lesionquant run: {summary}", file=sys.stdout)
    return 0 if summary.ok else 1
