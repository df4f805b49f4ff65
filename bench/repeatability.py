"""Repeatability of the measuring pipeline: the same anatomy and lesions re-acquired.

Each case is one v2 phantom (``lesionquant.synth``, tuning-family lesion parameters)
painted once, noise-free, on a 1.4 x 1.4 x 1 mm grid (256 x 256 x 280: the whole lung at a
size two contended cores can measure 7 times per case). It is then "re-acquired" the way a scanner
would see the same patient again, and measured by ``lesionquant.quantify``:

========================  ====================================================================
acquisition               what changes
========================  ====================================================================
reference                 1 mm slices, standard kernel, standard noise (18 HU at 1 mm)
5 mm slices               5 slices averaged (box slice profile), noise of a 5 mm slice
sharp kernel              edge-enhanced image (unsharp mask), finer and 1.8x stronger noise
soft kernel               blurred image (Gaussian 0.8 voxel), coarser and 0.6x weaker noise
double noise              noise std x 2 (a quarter of the dose)
pixel 1.8 mm              resampled in-plane from 1.4 to 1.8 mm
shift + rotation          patient moved 2.3 / 1.7 mm and turned 3 degrees about z
========================  ====================================================================

For each acquisition and case the difference from the reference of lesion %, GGO % and
consolidation % of lung (percentage points) is taken; the table gives their mean and 95 %
limits of agreement (mean +- 1.96 SD, Bland-Altman) and the figure plots them.

Run from the repository root (about 10 min on 2 cores; ``nice`` it):

    nice python bench/repeatability.py --cases 6 --out docs/figures

Writes ``repeatability.json`` and ``repeatability_bland_altman.png`` and prints the
markdown table of ``docs/accuracy.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import SimpleITK as sitk

from lesionquant.api import quantify
from lesionquant.settings import Settings
from lesionquant.synth import family_cases, make_phantom
from lesionquant.synth._fields import correlated_noise

SIZE = (256, 256, 280)
SPACING = (1.4, 1.4, 1.0)
NOISE_1MM_HU = 18.0
CONDITIONS = ("5 mm slices", "sharp kernel", "soft kernel", "double noise", "pixel 1.8 mm",
              "shift + rotation")


def _image(arr: np.ndarray, spacing, origin) -> sitk.Image:
    img = sitk.GetImageFromArray(np.clip(np.rint(arr), -1024, 3071).astype(np.int16))
    img.SetSpacing(tuple(float(v) for v in spacing))
    img.SetOrigin(tuple(float(v) for v in origin))
    return img


def acquire(clean: sitk.Image, condition: str, rng: np.random.Generator) -> sitk.Image:
    """The noise-free phantom as seen by one acquisition (see the module table)."""
    a = sitk.GetArrayFromImage(clean).astype(np.float32)
    sp = clean.GetSpacing()
    org = clean.GetOrigin()
    sigma = NOISE_1MM_HU
    corr = 0.7
    if condition == "5 mm slices":
        nz = a.shape[0] // 5
        a = a[: nz * 5].reshape(nz, 5, *a.shape[1:]).mean(axis=1)
        sp = (sp[0], sp[1], 5.0 * sp[2])
        org = (org[0], org[1], org[2] + 2.0 * clean.GetSpacing()[2])
        sigma = NOISE_1MM_HU / np.sqrt(5.0)
    elif condition == "sharp kernel":
        a = a + 0.6 * (a - ndi.gaussian_filter(a, 1.0, axes=(1, 2)))
        sigma, corr = 1.8 * NOISE_1MM_HU, 0.45
    elif condition == "soft kernel":
        a = ndi.gaussian_filter(a, 0.8, axes=(1, 2))
        sigma, corr = 0.6 * NOISE_1MM_HU, 1.1
    elif condition == "double noise":
        sigma = 2.0 * NOISE_1MM_HU
    elif condition == "pixel 1.8 mm":
        img = _image(a, sp, org)
        new_sp = (1.8, 1.8, sp[2])
        size = [round(n * s / t) for n, s, t in zip(img.GetSize(), sp, new_sp,
                                                          strict=True)]
        img = sitk.Resample(img, size, sitk.Transform(), sitk.sitkLinear, org, new_sp,
                            img.GetDirection(), -1024.0, sitk.sitkFloat32)
        a = sitk.GetArrayFromImage(img)
        sp = new_sp
    elif condition == "shift + rotation":
        img = _image(a, sp, org)
        centre = img.TransformContinuousIndexToPhysicalPoint(
            [(n - 1) / 2.0 for n in img.GetSize()])
        tr = sitk.Euler3DTransform(centre, 0.0, 0.0, np.deg2rad(3.0), (2.3, 1.7, 0.0))
        img = sitk.Resample(img, img, tr, sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
        a = sitk.GetArrayFromImage(img)
    elif condition != "reference":
        raise ValueError(condition)
    a = a + sigma * correlated_noise(a.shape, rng, sigma_vox=corr)
    return _image(a, sp, org)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--out", type=Path, default=Path("docs/figures"))
    ap.add_argument("--method", default="classical",
                    choices=("classical", "model", "model_lungs"),
                    help="segmentation method measured (default classical); 'model' writes "
                         "repeatability_model.json / repeatability_model_bland_altman.png; "
                         "'model_lungs': the model's lungs with the classical lesions")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    settings = (Settings(lung_method="model", lesion_method="classical")
                if args.method == "model_lungs" else Settings(method=args.method))
    rows = []
    t0 = time.perf_counter()
    for case in family_cases("tuning", args.cases):
        clean = make_phantom(size_xyz=SIZE, spacing_mm=SPACING, seed=case.seed,
                             lesions=case.lesions, patient_scale=case.patient_scale,
                             noise_hu=0.0).image
        rng = np.random.default_rng(case.seed)
        meas = {}
        for cond in ("reference", *CONDITIONS):
            res = quantify(acquire(clean, cond, rng), settings)
            meas[cond] = {k: float(res[k]) for k in ("lesion_pct", "ggo_pct",
                                                     "consolidation_pct")}
            print(f"  case {case.index} {cond}: lesion {meas[cond]['lesion_pct']:.2f} % "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        rows.append({"case": case.index, "seed": case.seed, "measured": meas})
        print(f"case {case.index} ({time.perf_counter() - t0:.0f} s): "
              + ", ".join(f"{c} {m['lesion_pct']:.2f}" for c, m in meas.items()), flush=True)
        summary = _write(rows, args)  # after every case: a partial run still reports
    print("\n| acquisition vs reference | lesion % diff: mean [95 % LoA] | GGO % diff | "
          "consolidation % diff | within +-0.5 pp |")
    print("|---|---|---|---|---|")
    for cond, s in summary.items():
        cells = [f"{s[k]['mean_pp']:+.2f} [{s[k]['loa_low_pp']:+.2f}, {s[k]['loa_high_pp']:+.2f}]"
                 for k in ("lesion_pct", "ggo_pct", "consolidation_pct")]
        ok = all(abs(s[k]["loa_low_pp"]) <= 0.5 and abs(s[k]["loa_high_pp"]) <= 0.5
                 for k in ("lesion_pct", "ggo_pct", "consolidation_pct"))
        print(f"| {cond} | " + " | ".join(cells) + f" | {'yes' if ok else 'no'} |")
    return 0


def _write(rows, args) -> dict:
    """Summarise the cases so far and write the JSON and the figure."""
    summary: dict = {}
    for cond in CONDITIONS:
        summary[cond] = {}
        for key in ("lesion_pct", "ggo_pct", "consolidation_pct"):
            d = np.array([r["measured"][cond][key] - r["measured"]["reference"][key]
                          for r in rows])
            sd = float(d.std(ddof=1)) if d.size > 1 else float("nan")
            summary[cond][key] = {"mean_pp": float(d.mean()), "sd_pp": sd,
                                  "loa_low_pp": float(d.mean() - 1.96 * sd),
                                  "loa_high_pp": float(d.mean() + 1.96 * sd)}
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.method == "classical" else f"_{args.method}"
    command = f"python bench/repeatability.py --cases {args.cases}"
    if args.method != "classical":
        command += f" --method {args.method}"
    (args.out / f"repeatability{suffix}.json").write_text(json.dumps(
        {"command": command, "method": args.method, "cases": rows, "summary": summary},
        indent=1))
    _figure(rows, args.out / f"repeatability{suffix}_bland_altman.png", args.method)
    return summary


def _figure(rows, path: Path, method: str = "classical") -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = (("lesion_pct", "lesion"), ("ggo_pct", "GGO"), ("consolidation_pct", "consolidation"))
    fig = Figure(figsize=(4.2 * len(CONDITIONS), 10))
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, len(CONDITIONS), squeeze=False)
    for j, cond in enumerate(CONDITIONS):
        for i, (key, name) in enumerate(keys):
            ax = axes[i, j]
            ref = np.array([r["measured"]["reference"][key] for r in rows])
            got = np.array([r["measured"][cond][key] for r in rows])
            mean, diff = (ref + got) / 2.0, got - ref
            ax.scatter(mean, diff, s=18, color="k")
            m, sd = diff.mean(), diff.std(ddof=1) if diff.size > 1 else 0.0
            for v, style in ((m, "-"), (m - 1.96 * sd, "--"), (m + 1.96 * sd, "--")):
                ax.axhline(v, color="tab:blue", linestyle=style, linewidth=1)
            ax.axhspan(-0.5, 0.5, color="tab:red", alpha=0.08, linewidth=0)
            for v in (-0.5, 0.5):
                ax.axhline(v, color="tab:red", linestyle=":", linewidth=1)
            ax.set_title(f"{cond}: {name}", fontsize=9)
            ax.set_xlabel("mean of the two, % of lung", fontsize=8)
            ax.set_ylabel("difference (this - reference), pp", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle(f"Repeatability of the {method} pipeline ({len(rows)} phantoms), "
                 "Bland-Altman: mean difference (solid), 95 % limits of agreement (dashed), "
                 "goal +-0.5 pp (red band)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=70)


if __name__ == "__main__":
    raise SystemExit(main())
