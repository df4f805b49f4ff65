"""Benchmark: the same scans through the local process pool and a Dask cluster, in one run.

For each executor and worker count (local pool 1 and 2 workers, Dask LocalCluster 1 and 2
single-threaded worker processes on 127.0.0.1) the batch runs into a fresh output folder:
scans per minute, mean load+quantify and outputs time per scan (inside the worker), and the
largest resident set of a worker process (``RUSAGE_SELF`` after each scan; a Dask worker lives
for the whole batch, so its peak covers every scan it ran plus the worker itself).

The per-task overhead Dask adds is measured twice: per batch, as the wall time per scan minus
the local pool's with the same worker count; per task, as the round trip of an empty task
carrying a real job and run context (Dask ``client.submit`` vs. the local pool's ``submit``),
median of ``--roundtrips`` sequential tasks on warm workers.

    python bench/bench_dask.py                                  # sample_scans/, QA off
    python bench/bench_dask.py --scans 2 --size 512 512 300 --workers 1   # memory per scan

The Dask clusters are started here (``distributed.LocalCluster``); their start-up is not
timed (a real batch finds its cluster running), the warm-up plugin and the worker checks are.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
# the hooks below are pickled by reference: workers must import this folder's modules too
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE),
                                                         os.environ.get("PYTHONPATH")]))

from bench_batch import _stats, make_inputs, record_peak  # noqa: E402


def noop(job, ctx) -> str:
    """An empty task with a real job and context: what Dask adds around a scan."""
    return job.scan_id


def roundtrip_ms(submit, job, ctx, n: int) -> float:
    """Median milliseconds from submit to result of ``n`` sequential empty tasks."""
    times = []
    for _ in range(n + 2):
        t0 = time.perf_counter()
        submit(noop, job, ctx).result()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times[2:])  # first ones: imports on the worker


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", nargs="+", help="scans (default: sample_scans/, or phantoms "
                                                "with --scans)")
    ap.add_argument("--scans", type=int, help="use this many synthetic phantoms instead")
    ap.add_argument("--size", type=int, nargs=3, default=(512, 512, 160), metavar=("X", "Y", "Z"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--executors", nargs="+", default=["local", "dask"],
                    choices=["local", "dask"])
    ap.add_argument("--qa", action="store_true", help="also write overlay.png / report.html")
    ap.add_argument("--memory-limit", default="6GB", help="Dask worker memory limit")
    ap.add_argument("--roundtrips", type=int, default=50)
    args = ap.parse_args()

    import dask
    from distributed import Client, LocalCluster

    from lesionquant.batch import expand_inputs, run_batch
    from lesionquant.batch._pool import _make_pool
    from lesionquant.batch._process import RunContext
    from lesionquant.settings import Settings

    dask.config.set({"distributed.scheduler.worker-saturation": 1.0})
    work = Path(tempfile.mkdtemp(prefix="lq-bench-dask-"))
    try:
        if args.scans:
            t0 = time.perf_counter()
            inputs = make_inputs(work / "in", args.scans, tuple(args.size))
            print(f"wrote {args.scans} phantom series {tuple(args.size)} in "
                  f"{time.perf_counter() - t0:.1f} s")
        else:
            inputs = args.inputs or [str(REPO / "sample_scans")]
        jobs, _ = expand_inputs(inputs, "bench")
        ctx = RunContext(out_dir=str(work), settings=Settings().to_dict(), salt="bench")
        hooks = [record_peak]
        if args.qa:
            from lesionquant.qa import write_scan_qa

            hooks.insert(0, write_scan_qa)
        print(f"{len(jobs)} scans; {os.cpu_count()} CPUs; load average "
              f"{os.getloadavg()[0]:.1f} at start")
        header = ("| executor | workers | scans | failed | wall s | scans/min | "
                  "load+quantify s/scan | outputs s/scan | worker peak MB |")
        rows, per_scan = [], {}
        for executor in args.executors:
            for n in args.workers:
                out = work / f"out-{executor}-{n}"
                cluster = client = None
                if executor == "dask":
                    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                           memory_limit=args.memory_limit)
                    client = Client(cluster, set_as_default=False)
                try:
                    s = run_batch(inputs, out, workers=n, client=client, progress=False,
                                  salt="bench", qa_hooks=hooks, index=args.qa,
                                  endpoint=False)
                finally:
                    if client is not None:
                        client.close()
                        cluster.close()
                total = s.done + s.failed
                peak, comp, outs = _stats(out)
                per_scan[executor, n] = s.seconds / max(total, 1)
                rows.append(f"| {executor} | {n} | {total} | {s.failed} | {s.seconds:.1f} | "
                            f"{60 * total / s.seconds:.1f} | {comp:.2f} | {outs:.2f} | "
                            f"{peak:.0f} |")
                print(rows[-1], flush=True)
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end\n")
        print(header)
        print("|---|---|---|---|---|---|---|---|---|")
        print("\n".join(rows))
        for n in args.workers:
            if ("dask", n) in per_scan and ("local", n) in per_scan:
                print(f"Dask minus local, {n} worker(s): "
                      f"{per_scan['dask', n] - per_scan['local', n]:+.2f} s per scan (batch)")
        # per-task round trip of an empty task, warm workers
        job = jobs[0]
        pool = _make_pool(1)
        try:
            local_ms = roundtrip_ms(pool.submit, job, ctx, args.roundtrips)
        finally:
            pool.shutdown()
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address="127.0.0.1:0") as cluster, \
                Client(cluster, set_as_default=False) as client:
            dask_ms = roundtrip_ms(lambda f, *a: client.submit(f, *a, pure=False), job, ctx,
                                   args.roundtrips)
        print(f"empty-task round trip (median of {args.roundtrips}): local pool "
              f"{local_ms:.1f} ms, Dask {dask_ms:.1f} ms (+{dask_ms - local_ms:.1f} ms per task)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
