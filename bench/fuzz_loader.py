"""Fuzz the DICOM header parsing and loading for minutes (outside CI).

Runs the properties of ``tests/io/test_io_fuzz.py`` with many random examples: structured
header values (sizes, bit depths, rescale, geometry strings, image type), mutated bytes of a
valid CT file (truncations, byte flips) and 1-4 slice series with arbitrary positions,
orientations and pixel spacings. Every input must load or raise a LesionQuantError;
anything else is printed with its minimal example, to be added to the test's REGRESSIONS.

Usage::

    python bench/fuzz_loader.py [--examples 2000] [--seconds 120]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "io"))
import test_io_fuzz as fuzz

warnings.simplefilter("ignore")  # a script: pydicom warns on every invalid fuzzed value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=120.0, help="per property")
    args = parser.parse_args(argv)
    cfg = settings(max_examples=args.examples, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))
    tmp = Path(tempfile.mkdtemp(prefix="lq-fuzz-"))
    stop = [0.0]
    count = [0]
    failures = 0

    @cfg
    @given(data=st.fixed_dictionaries({}, optional=fuzz.FIELDS))
    def structured(data):
        if time.monotonic() < stop[0]:
            count[0] += 1
            fuzz.structured_header_property(tmp, data)

    @cfg
    @given(cut=st.integers(0, len(fuzz.SEED) + 10),
           flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=12))
    def mutated(cut, flips):
        if time.monotonic() < stop[0]:
            count[0] += 1
            fuzz.mutated_bytes_property(tmp, cut, flips)

    @cfg
    @given(**fuzz.GEOMETRY)
    def geometry(positions, orientation, spacing):
        if time.monotonic() < stop[0]:
            count[0] += 1
            fuzz.series_geometry_property(tmp, positions, orientation, spacing)

    for name, prop in (("structured headers", structured), ("mutated bytes", mutated),
                       ("series geometry", geometry)):
        start = time.monotonic()
        stop[0] = start + args.seconds
        count[0] = 0
        try:
            prop()
            print(f"{name}: no failure in {count[0]} inputs ({time.monotonic() - start:.0f} s)")
        except Exception:  # report and continue with the next property
            failures += 1
            print(f"{name}: FAILURE\n{traceback.format_exc()}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
