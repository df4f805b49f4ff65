"""Train many lesion-network runs at once (recipes x seeds x folds) and tabulate them.

    python -m models.sweep --out models/runs/sweep --workers 2 \\
        --recipe v4= --recipe w32="--base 32" --seeds 0,1 --folds 0,1,2,3,4,final

Each run is ``python -m models.train`` with the lesion network's v4 command
(:data:`V4_ARGS`) followed by the recipe's own options (a later option wins, so
``--base 32`` replaces the 16 of the v4 command), ``--seed`` and ``--fold``, in
``<out>/<recipe>_s<seed>_fold<k>`` (``fold -1``: ``..._final``). ``--workers`` runs go at
a time, each in its own process with one CPU thread; on a GPU machine every run trains on
the GPU (``--device auto``) and the augmentation, drawn on the CPU, sets the pace, so a
16-core machine trains about 14 runs at once. A run already finished (its ``val.json``, or
a final run's last checkpoint) is skipped and an unfinished one resumes from its
checkpoint, so the sweep can be run again after an interruption.

The summary (``<out>/summary.json`` and a markdown table on stdout) gives, per recipe,
each seed's mean per-slice held-out Dice over its folds (lesion, GGO and consolidation
of the learned class, as ``val.json`` has them) and the mean over seeds: the numbers the
model card's rules compare.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger("models.sweep")
REPO = Path(__file__).resolve().parents[1]

#: The lesion network's v4 command (models/README.md, Recipe), without run, fold and seed.
V4_ARGS = ("--steps 1500 --val-every 250 --crop 160 --medseg 8 --synth 0 --base 16 "
           "--threads 1 --synthetic all --dice slice --coarse 0.2 --dependent 0.3")
#: Keys of ``val.json``'s summary that the table shows.
KEYS = ("lesion_dice", "ggo_dice", "consolidation_dice")


@dataclass(frozen=True)
class Run:
    """One training run of a sweep."""

    recipe: str
    extra: str
    seed: int
    fold: int

    @property
    def name(self) -> str:
        """Folder name: ``<recipe>_s<seed>_fold<k>`` or ``<recipe>_s<seed>_final``."""
        return f"{self.recipe}_s{self.seed}_" + ("final" if self.fold < 0 else f"fold{self.fold}")

    def argv(self, out: Path, device: str, base_args: str) -> list[str]:
        """The ``models.train`` command line of this run."""
        return [sys.executable, "-m", "models.train", "--run", str(out / self.name),
                "--fold", str(self.fold), *shlex.split(base_args), "--device", device,
                *shlex.split(self.extra), "--seed", str(self.seed)]


def parse_recipes(specs: list[str]) -> dict[str, str]:
    """``NAME=OPTIONS`` strings -> {name: options}; names are letters, digits and ``-``."""
    out = {}
    for spec in specs:
        name, sep, extra = spec.partition("=")
        if not sep or not name or not name.replace("-", "").isalnum() or name in out:
            raise SystemExit(f"--recipe {spec!r}: want NAME=OPTIONS with a new name of "
                             "letters, digits and '-'")
        out[name] = extra
    return out


def plan(recipes: dict[str, str], seeds: list[int], folds: list[int]) -> list[Run]:
    """Every (recipe, seed, fold) run, the cross-validation folds of a seed before its
    final network, seeds in order."""
    return [Run(r, extra, s, f) for r, extra in recipes.items() for s in seeds for f in folds]


def finished(run_dir: Path) -> bool:
    """A fold run is finished when it wrote ``val.json``; a final run (no held-out
    slices) when its checkpoint holds the last step its ``meta.json`` names."""
    if (run_dir / "val.json").exists():
        return True
    meta, ckpt = run_dir / "meta.json", run_dir / "ckpt.pt"
    if not (meta.exists() and ckpt.exists()):
        return False
    m = json.loads(meta.read_text())
    if m.get("fold", 0) >= 0:
        return False
    step = torch.load(ckpt, map_location="cpu", weights_only=True)["step"]
    return int(step) >= int(m["steps"])


def _train(run: Run, out: Path, device: str, base_args: str) -> tuple[str, int, float]:
    run_dir = out / run.name
    if finished(run_dir):
        return run.name, 0, 0.0
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    with open(out / f"{run.name}.log", "a") as log:
        rc = subprocess.call(run.argv(out, device, base_args), stdout=log,
                             stderr=subprocess.STDOUT, env=env, cwd=REPO)
    return run.name, rc, time.perf_counter() - t0


def summarise(out: Path, runs: list[Run]) -> dict:
    """Per recipe and seed: the folds' ``val.json`` summaries and their means; per recipe
    the mean over the seeds whose every fold finished."""
    res: dict = {}
    for recipe in dict.fromkeys(r.recipe for r in runs):
        mine = [r for r in runs if r.recipe == recipe and r.fold >= 0]
        seeds: dict = {}
        for seed in dict.fromkeys(r.seed for r in mine):
            folds = {}
            for r in (r for r in mine if r.seed == seed):
                path = out / r.name / "val.json"
                if path.exists():
                    folds[r.fold] = json.loads(path.read_text())["summary"]
            complete = len(folds) == len([r for r in mine if r.seed == seed])
            mean = {k: float(np.mean([f[k] for f in folds.values()])) for k in KEYS} \
                if folds else {}
            seeds[seed] = {"folds": folds, "mean": mean, "complete": complete}
        done = [s["mean"] for s in seeds.values() if s["complete"] and s["mean"]]
        res[recipe] = {"extra": mine[0].extra if mine else "", "seeds": seeds,
                       "seed_mean": {k: float(np.mean([d[k] for d in done])) for k in KEYS}
                       if done else {}, "n_seeds": len(done)}
    return res


def markdown(summary: dict) -> str:
    """One row per recipe and seed, then per recipe the mean over complete seeds."""
    lines = ["| recipe | seed | folds | lesion | GGO | consolidation | per fold (lesion) |",
             "|---|---|---|---|---|---|---|"]
    for recipe, r in summary.items():
        for seed, s in r["seeds"].items():
            m = s["mean"]
            per = " / ".join(f"{s['folds'][f]['lesion_dice']:.3f}" for f in sorted(s["folds"]))
            lines.append(f"| {recipe} | {seed} | {len(s['folds'])}"
                         f"{'' if s['complete'] else ' (incomplete)'} | "
                         + " | ".join(f"{m[k]:.3f}" if m else "-" for k in KEYS)
                         + f" | {per} |")
        if r["seed_mean"]:
            lines.append(f"| {recipe} | mean of {r['n_seeds']} | | "
                         + " | ".join(f"{r['seed_mean'][k]:.3f}" for k in KEYS) + " | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder of the runs")
    p.add_argument("--recipe", action="append", default=[], metavar="NAME=OPTIONS",
                   help="a recipe: models.train options added to the v4 command (repeat)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--folds", default="0,1,2,3,4,final",
                   help="comma-separated folds; 'final' = all 65 slices (fold -1)")
    p.add_argument("--workers", type=int, default=2, help="runs at a time")
    p.add_argument("--device", default="auto")
    p.add_argument("--base-args", default=V4_ARGS,
                   help="the command every recipe adds to (default: the v4 command)")
    p.add_argument("--summary-only", action="store_true", help="tabulate, train nothing")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    recipes = parse_recipes(a.recipe or ["v4="])
    folds = [-1 if f == "final" else int(f) for f in a.folds.split(",") if f]
    runs = plan(recipes, [int(s) for s in a.seeds.split(",") if s], folds)
    a.out = a.out.resolve()
    a.out.mkdir(parents=True, exist_ok=True)
    failed = []
    if not a.summary_only:
        logger.info("%d runs, %d at a time, device %s", len(runs), a.workers, a.device)
        with ThreadPoolExecutor(a.workers) as pool:
            for name, rc, dt in pool.map(lambda r: _train(r, a.out, a.device, a.base_args),
                                         runs):
                logger.info("%s: exit %d after %.0f s", name, rc, dt)
                if rc:
                    failed.append(name)
    summary = summarise(a.out, runs)
    (a.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(markdown(summary))
    if failed:
        logger.error("failed runs (logs in %s): %s", a.out, ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
