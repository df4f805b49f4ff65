"""Benchmark of ``lesionquant run``: wall time per scan and peak memory per worker.

Writes synthetic chest CT phantoms as DICOM series (lesionquant.synth), then runs the batch
with 1 and 2 workers (fresh output folder each time) and prints a table. Peak memory is the
largest resident set of a worker process, recorded by a hook that runs in the worker after the
scan's outputs are written (``RUSAGE_SELF`` there).

    python bench/bench_batch.py                      # 4 phantoms 512x512x160, workers 1 and 2
    python bench/bench_batch.py --scans 2 --size 256 256 120 --workers 1
    python bench/bench_batch.py --inputs sample_scans --workers 1 2
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path


def make_inputs(folder: Path, scans: int, size: tuple[int, int, int]) -> list[str]:
    from lesionquant.synth import make_phantom, write_dicom_series

    spacing = (0.7 * 512 / size[0], 0.7 * 512 / size[1], 300.0 / size[2])
    paths = []
    for i in range(scans):
        ph = make_phantom(size_xyz=size, spacing_mm=spacing, seed=i,
                          lesion_burden_pct=5.0 * i)
        out = folder / f"patient{i}"
        write_dicom_series(ph.image, out, patient_id=f"BENCH-{i}", study_date="20200401")
        paths.append(str(out))
    return paths


def record_peak(result, folder: Path, *, scan_id: str) -> None:
    """Hook run in the worker after the outputs: its peak resident set so far, MB."""
    mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (folder / "peak_rss_mb.txt").write_text(f"{mb:.0f}")


def _stats(out: Path) -> tuple[float, float, float]:
    import json

    peaks, comp, outs = [], [], []
    for d in out.glob("S-*"):
        peaks.append(float((d / "peak_rss_mb.txt").read_text()))
        t = json.loads((d / "result.json").read_text())["provenance"]["batch"]["timings"]
        comp.append(t["load_s"] + t["quantify_s"])
        outs.append(t["outputs_s"])
    n = max(len(comp), 1)
    return max(peaks, default=0.0), sum(comp) / n, sum(outs) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scans", type=int, default=4)
    ap.add_argument("--size", type=int, nargs=3, default=(512, 512, 160), metavar=("X", "Y", "Z"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--inputs", nargs="+", help="use these inputs instead of phantoms")
    ap.add_argument("--no-qa", action="store_true", help="skip overlay.png / report.html")
    args = ap.parse_args()

    from lesionquant.batch import run_batch
    from lesionquant.qa import write_scan_qa

    work = Path(tempfile.mkdtemp(prefix="lq-bench-"))
    try:
        t0 = time.perf_counter()
        inputs = args.inputs or make_inputs(work / "in", args.scans, tuple(args.size))
        if not args.inputs:
            print(f"wrote {args.scans} phantom series {tuple(args.size)} in "
                  f"{time.perf_counter() - t0:.1f} s")
        print(f"{'workers':>7} {'scans':>5} {'failed':>6} {'wall s':>7} {'s/scan':>7} "
              f"{'load+quantify s':>15} {'outputs s':>9} {'worker peak MB':>14}")
        for n in args.workers:
            out = work / f"out{n}"
            hooks = [record_peak] if args.no_qa else [write_scan_qa, record_peak]
            s = run_batch(inputs, out, workers=n, progress=False, salt="bench",
                          qa_hooks=hooks, index=not args.no_qa)
            total = s.done + s.failed
            peak, comp, outs = _stats(out)
            print(f"{n:>7} {total:>5} {s.failed:>6} {s.seconds:>7.1f} "
                  f"{s.seconds / max(total, 1):>7.1f} {comp:>15.1f} {outs:>9.1f} {peak:>14.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
