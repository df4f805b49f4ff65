"""Probe: the lesion network run only in the lung box against the whole (body) image.

With a network pair (lesionnet-v3 and later) the lesion network runs in the lung mask's box widened
by ``LESION_BOX_MARGIN_MM`` in-plane (``lesionquant.segment.model._stages``), which
changes the network's context at the box edge. For every whole real chest CT of
``../shared/data/chest/`` (healthy), the same CTs with the ground-truth v2 report and
shifted families' lesions inserted, and the sample scans, this prints, inside the
model's lung mask: lesion % of the whole-image run and of the box run, their difference
(pp), the Dice of the two lesion masks, and the lesion stage's time both ways.

Run: ``LESIONQUANT_DATA=../shared/data python bench/probe_lesion_box.py [--margin-mm 30]``
(a few minutes on 2 cores; deterministic).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import SimpleITK as sitk


def _cases(data: Path, samples: Path):
    from lesionquant.evaluate import REAL_CHEST
    from lesionquant.io import load_scan
    from lesionquant.segment.model import segment_lungs_model
    from lesionquant.synth import family_cases, insert_lesions

    for rel in REAL_CHEST[:2]:  # the whole 3D CTs (the others are one or two slices)
        image = load_scan(data / rel).image
        yield rel.split("/")[0], image
        lungs = segment_lungs_model(image)
        for fam in ("report", "shifted"):
            case = family_cases(fam, 1)[0]
            ins = insert_lesions(image, lungs, seed=case.seed, lesions=case.lesions)
            yield f"{rel.split('/')[0]} + {fam} lesions", ins.image
    for name in ("severe_mixed", "patient4_day00", "mild_ggo"):
        if (samples / name).is_dir():
            yield f"sample {name}", load_scan(samples / name / "dicom").image


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--margin-mm", type=float, default=None,
                   help="box margin, mm (default: the shipped LESION_BOX_MARGIN_MM)")
    a = p.parse_args(argv)
    from lesionquant.segment.model import _stages, segment_lungs_model
    from lesionquant.segment.model._stages import lesion_mask_model

    if a.margin_mm is not None:
        _stages.LESION_BOX_MARGIN_MM = a.margin_mm
    data = Path(os.environ.get("LESIONQUANT_DATA", "../shared/data")) / "chest"
    samples = Path(__file__).resolve().parents[1] / "sample_scans"
    print(f"margin {_stages.LESION_BOX_MARGIN_MM:.0f} mm\n")
    print("| case | lesion % whole | lesion % box | difference (pp) | Dice | "
          "time whole / box (s) |")
    print("|---|---|---|---|---|---|")
    for name, image in _cases(data, samples):
        lungs = segment_lungs_model(image)
        lung = sitk.GetArrayViewFromImage(lungs) > 0
        out = []
        for box in (None, lungs):
            _stages._last.clear()
            t0 = time.perf_counter()
            les = sitk.GetArrayFromImage(lesion_mask_model(image, lungs=box)) > 0
            out.append((les & lung, time.perf_counter() - t0))
        (w, tw), (b, tb) = out
        n = max(int(lung.sum()), 1)
        pw, pb = 100 * w.sum() / n, 100 * b.sum() / n
        den = int(w.sum() + b.sum())
        dice = 2 * int((w & b).sum()) / den if den else 1.0
        print(f"| {name} | {pw:.2f} | {pb:.2f} | {pb - pw:+.3f} | {dice:.4f} | "
              f"{tw:.1f} / {tb:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
