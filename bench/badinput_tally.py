"""Run the seeded bad-input corpus of ``tests/io/_badinput.py`` and print its tally.

The table goes into ``docs/loader.md`` between the ``badinput-tally`` markers
(``tests/io/test_io_badinput.py`` checks it is current). Every variant must end in a typed
one-line error naming the file (or the gap) or in a load equal to the clean series; problems
are printed and make the exit status 1.

Usage::

    python bench/badinput_tally.py [--seed 22] [--write-docs]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "io"))
sys.path.insert(0, str(REPO / "tests"))
from _badinput import problems, run_corpus, tally  # noqa: E402

warnings.simplefilter("ignore")  # a script: pydicom warns on every broken value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--write-docs", action="store_true",
                        help="replace the tally block of docs/loader.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lq-badinput-") as tmp:
        outcomes = run_corpus(Path(tmp) / "corpus", seed=args.seed)
    table = tally(outcomes)
    print(table)
    bad = [(o.variant.name, p) for o in outcomes if (p := problems(o))]
    for name, p in bad:
        print(f"PROBLEM {name}: {p}")
    if args.write_docs:
        path = REPO / "docs" / "loader.md"
        text = path.read_text(encoding="utf-8")
        block = f"<!-- badinput-tally -->\n{table}\n<!-- /badinput-tally -->"
        new, n = re.subn(r"<!-- badinput-tally -->\n.*?\n<!-- /badinput-tally -->",
                         lambda m: block, text, flags=re.S)
        path.write_text(new if n else text.rstrip("\n") + "\n\n" + block + "\n",
                        encoding="utf-8")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
