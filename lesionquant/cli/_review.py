"""``lesionquant review OUT``: a local web page to check each scan and record a verdict."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lesionquant.errors import InvalidInputError

__all__ = ["register"]

_EXAMPLES = """\
examples:
  lesionquant review out/
      serves http://127.0.0.1:8765/ and opens it in the default browser
  lesionquant review out/ --input /data/trial/ --port 9000 --no-browser
      also finds each scan's CT among the batch's inputs (needed for pseudonymous
      batches, the default: their result.json does not record the input path)

keys: up/down or k/j slices, PgUp/PgDn 10 slices, o overlay, +/- opacity, 1/2 lung /
mediastinum window, a accept, A accept and open the next unreviewed scan, r reject,
c comment, n/p next/previous scan.
Verdicts go to OUT/verdicts.json (and the qa_* columns of OUT/results.csv, OUT/index.html).
The server listens on 127.0.0.1 only. Stop it with Ctrl-C. Details: docs/qa.md.
"""


def register(sub: Any) -> None:
    """Add the ``review`` subcommand to ``sub``."""
    p = sub.add_parser(
        "review", help="local viewer to accept / reject each result",
        description="Serve a local web page (127.0.0.1 only) where a reader scrolls through "
                    "every axial slice of each scan with its segmentation overlay and records "
                    "accept / reject / comment per scan in OUT/verdicts.json.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, metavar="OUT", help="output folder of `lesionquant run`")
    p.add_argument("--port", type=int, default=8765,
                   help="TCP port on 127.0.0.1 (default 8765; 0 picks a free one)")
    p.add_argument("--input", "-i", action="append", default=[], metavar="PATH",
                   help="an INPUT of the batch, to find the CTs (repeatable)")
    p.add_argument("--salt", default=None,
                   help="pseudonym salt of the batch (default LESIONQUANT_SALT or OUT/.salt)")
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    p.set_defaults(func=_review)


def _review(args: argparse.Namespace) -> int:
    from lesionquant.review import ReviewServer

    if not args.out.is_dir():
        raise InvalidInputError("no such output folder", source=args.out)
    if not 0 <= args.port <= 65535:
        raise InvalidInputError(f"port {args.port} outside 0..65535", source="--port")
    server = ReviewServer(args.out, port=args.port, inputs=args.input, salt=args.salt)
    sys.stderr.write(f"lesionquant review: {server.url}  (Ctrl-C to stop)\n")
    sys.stderr.flush()
    if not args.no_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0
