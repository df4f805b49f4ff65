"""Benchmark of the pipeline: time and peak memory per stage and in total.

Usage::

    python bench/bench_pipeline.py [--size 512,512,300] [--spacing 0.7,0.7,1.0] [--burden 10]
                                   [--method classical|model|model_lungs]
                                   [--device auto|cpu|cuda]

A phantom (:func:`lesionquant.synth.make_phantom`) of the given matrix is written to a
temporary NIfTI file, then each stage runs on it: ``load``
(:func:`lesionquant.load_scan`), ``lungs``, ``lesions``, ``measure``, and the whole
:func:`lesionquant.quantify` from the file. CPU time (all threads of the process) is given
beside the wall time: on a machine shared with other jobs the wall time grows, the CPU
time much less. Peak memory is the tracemalloc peak of Python/numpy allocations per stage
and the process ru_maxrss (includes SimpleITK's C++ buffers) at the end. Target on the
2-core machine: whole pipeline <= 15 s and <= 4 GB (classical); <= 30 s and <= 4 GB with
the learned model (<= 3 s on a GPU). With ``--method model`` the weights are loaded before
the stages (once per process, as in a batch) and the lesion stage reuses the lung stage's
forward pass; ``--method model_lungs`` is the model's lung stage with the classical lesion
stage (``lesionquant run --lungs model``).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import tracemalloc


def _stage(name, fn, rows):
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rows.append((name, dt, cpu, peak / 2**30))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="512,512,300")
    p.add_argument("--spacing", default="0.7,0.7,1.0")
    p.add_argument("--burden", type=float, default=10.0)
    p.add_argument("--method", choices=["classical", "model", "model_lungs"],
                   default="classical",
                   help="model_lungs: the model's lung stage with the classical lesions")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    size = tuple(int(v) for v in args.size.split(","))
    spacing = tuple(float(v) for v in args.spacing.split(","))

    import SimpleITK as sitk

    import lesionquant as lq
    from lesionquant.measure import measure
    from lesionquant.segment import resolve_device, segment_lesions, segment_lungs
    from lesionquant.synth import make_phantom

    if args.method == "model_lungs":
        settings = lq.Settings(lung_method="model", lesion_method="classical",
                               device=args.device)
    else:
        settings = lq.Settings(method=args.method, device=args.device)
    if args.method in ("model", "model_lungs"):
        import functools

        from lesionquant.segment.model import (
            load_model,
            segment_lesions_model,
            segment_lungs_model,
        )

        device = resolve_device(args.device)
        t0 = time.perf_counter()
        load_model(device)
        print(f"weights loaded on {device} in {time.perf_counter() - t0:.1f} s "
              "(not counted)", file=sys.stderr)
        segment_lungs = functools.partial(segment_lungs_model, device=device)
        if args.method == "model":
            segment_lesions = functools.partial(segment_lesions_model, device=device)

    t0 = time.perf_counter()
    ph = make_phantom(size_xyz=size, spacing_mm=spacing, seed=0,
                      lesion_burden_pct=args.burden)
    print(f"phantom {size} made in {time.perf_counter() - t0:.1f} s (not counted)",
          file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "phantom.nii.gz")
        sitk.WriteImage(ph.image, path)
        del ph
        rows: list[tuple[str, float, float, float]] = []
        state: dict = {}
        state["scan"] = _stage("load", lambda: lq.load_scan(path), rows)
        image = state["scan"].image
        state["lungs"] = _stage("lungs", lambda: segment_lungs(image), rows)
        state["labels"] = _stage("lesions", lambda: segment_lesions(image, state["lungs"]),
                                 rows)
        _stage("measure", lambda: measure(image, state["labels"], state["lungs"]), rows)
        state.clear()
        image = None
        if args.method != "classical":  # the whole run does its own forward pass
            from lesionquant.segment.model import _stages

            _stages._last.clear()
        res = _stage("quantify (whole, from file)", lambda: lq.quantify(path, settings),
                     rows)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\n{args.method} pipeline, {size[0]}x{size[1]}x{size[2]} at "
          f"{spacing[0]}x{spacing[1]}x{spacing[2]} mm, {os.cpu_count()} CPUs\n")
    print("| stage | time (s) | CPU time, all threads (s) | tracemalloc peak (GB) |")
    print("|---|---|---|---|")
    for name, dt, cpu, peak in rows:
        print(f"| {name} | {dt:.2f} | {cpu:.2f} | {peak:.2f} |")
    print(f"\nprocess peak RSS (ru_maxrss, whole run incl. phantom generation): {rss_gb:.2f} GB")
    print(f"lesion {res['lesion_pct']:.2f} %, lung {res['lung_ml']:.0f} mL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
