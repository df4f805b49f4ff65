"""Bring a GPU call's output (``models/gpu_session.sh``) into this checkout.

    python -m models.gpu_import <files_at> [--runs models/runs/gpu] [--results models/results/gpu]

``<files_at>`` is the folder the device tool put the call's files in. The runs'
``meta.json``, ``val.json`` and logs (``runs.tar.gz``) go to ``--runs``; each final
network (``final_<run>.pt``, float16) becomes ``<runs>/<run>/ckpt.pt`` in float32, so
``models.export`` and ``models.evaluate_model healthy --runs <runs>`` take it like a run
trained here; ``env.txt``, ``bench_gpu.txt``, ``sweep.txt`` and the sweep's
``summary.json`` go to ``--results`` (small text, for the model card and git).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tarfile
from pathlib import Path

import torch

logger = logging.getLogger("models.gpu_import")
REPO = Path(__file__).resolve().parents[1]
#: The text files of a call that are kept as results.
TEXTS = ("env.txt", "bench_gpu.txt", "sweep.txt")


def import_call(files: Path, runs: Path, results: Path) -> list[str]:
    """Unpack the call's files in ``files`` into ``runs`` and ``results``; returns the
    names of the final networks brought in."""
    runs.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    archive = files / "runs.tar.gz"
    if archive.exists():
        with tarfile.open(archive) as tar:
            tar.extractall(runs, filter="data")
    finals = []
    for path in sorted(files.glob("final_*.pt")):
        name = path.stem.removeprefix("final_")
        st = torch.load(path, map_location="cpu", weights_only=True)
        (runs / name).mkdir(exist_ok=True)
        torch.save({"step": st["step"],
                    "model": {k: v.float() if v.is_floating_point() else v
                              for k, v in st["model"].items()}}, runs / name / "ckpt.pt")
        finals.append(name)
    for name in TEXTS:
        if (files / name).exists():
            shutil.copy2(files / name, results / name)
    if (runs / "summary.json").exists():
        shutil.copy2(runs / "summary.json", results / "summary.json")
    logger.info("runs in %s (finals: %s), texts in %s", runs, ", ".join(finals) or "none",
                results)
    return finals


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", type=Path, help="the folder of the call's files")
    p.add_argument("--runs", type=Path, default=REPO / "models" / "runs" / "gpu")
    p.add_argument("--results", type=Path, default=REPO / "models" / "results" / "gpu")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import_call(a.files, a.runs, a.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
