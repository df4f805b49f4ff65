"""Where the lesion stage misses: recall of the true lesion by HU band on the sample scans.

For each sample scan with lesions (``sample_scans/manifest.json``; synthetic, exact
truth), each method's label map (``quantify``) is compared with the truth voxel by voxel:
the share of the true lesion inside the method's lung mask, the share found (recall) and
the lesion called outside the truth, in HU bands from faint ground glass to
consolidation. It says whether a method's lesion-% error comes from faint GGO, from dense
consolidation left out of the lung or missed inside it, or from false lesion, which the
lesion % alone cannot. ``--figure`` draws the three slices of the first case with the
most true lesion: hits, misses and false lesion over the CT (W1500/L-600), and the
method's lung contour.

Run: ``python bench/probe_lesion_recall_by_hu.py [--methods model,classical,model_lungs]
[--figure docs/figures/model/severe_sample_misses.png]`` (about 1 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lesionquant import load_scan, quantify
from lesionquant.segment import LUNG_LABELS, Label
from lesionquant.settings import Settings

SAMPLES = Path(__file__).resolve().parents[1] / "sample_scans"
#: HU bands of the table: below ground glass, faint / dense GGO, dense GGO to
#: consolidation's start, consolidation.
BANDS_HU = ((-1024, -750), (-750, -600), (-600, -450), (-450, -300), (-300, 400))


def _settings(method: str) -> Settings:
    """``model``, ``classical``, or ``model_lungs`` (the model's lungs, the classical
    lesions: ``lesionquant run --lungs model``)."""
    if method == "model_lungs":
        return Settings(lung_method="model", lesion_method="classical", device="cpu")
    return Settings(method=method, device="cpu")


def _lesion(labels: np.ndarray) -> np.ndarray:
    return (labels == Label.GGO) | (labels == Label.CONSOLIDATION)


def recall_rows(case: dict, methods: list[str]) -> tuple[list[dict], dict]:
    """Rows (method, HU band, true voxels, recall, false voxels) of one sample case, and
    the arrays the figure needs."""
    image = load_scan(SAMPLES / case["dicom"]).image
    hu = sitk.GetArrayFromImage(image)
    truth = _lesion(sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLES / case["labels"]))))
    rows, preds = [], {}
    for method in methods:
        res = quantify(image, _settings(method))
        labels = sitk.GetArrayFromImage(res.labelmap)
        pred = _lesion(labels)
        lung = np.isin(labels, [int(v) for v in LUNG_LABELS])
        preds[method] = labels
        for lo, hi in (*BANDS_HU, (-1024, 400)):
            band = (hu >= lo) & (hu < hi)
            t = truth & band
            rows.append({"case": case["case"], "method": method, "hu": f"[{lo}, {hi})",
                         "true_voxels": int(t.sum()),
                         "in_lung": float((t & lung).sum() / t.sum()) if t.any() else None,
                         "recall": float((t & pred).sum() / t.sum()) if t.any() else None,
                         "false_voxels": int((pred & ~truth & band).sum()),
                         "lesion_pct": round(float(res["lesion_pct"]), 2),
                         "true_lesion_pct": round(float(case["lesion_pct"]), 2)})
    return rows, {"hu": hu, "truth": truth, "preds": preds}


def figure(path: Path, arrays: dict, method: str, title: str) -> None:
    """Three slices with the most true lesion: hits green, misses red, false lesion blue,
    the method's lung contour yellow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hu, truth, labels = arrays["hu"], arrays["truth"], arrays["preds"][method]
    pred = _lesion(labels)
    lung = np.isin(labels, [int(v) for v in LUNG_LABELS])
    zs = sorted(np.argsort(truth.sum(axis=(1, 2)))[::-1][:5:2])
    box = lung.any(axis=0) | truth.any(axis=0)
    r = np.flatnonzero(box.any(axis=1))
    c = np.flatnonzero(box.any(axis=0))
    rows = slice(max(0, r[0] - 6), r[-1] + 7)
    cols = slice(max(0, c[0] - 6), c[-1] + 7)
    fig, axes = plt.subplots(1, len(zs), figsize=(5.4 * len(zs), 4.4))
    for ax, z in zip(np.atleast_1d(axes), zs, strict=True):
        ax.imshow(hu[z][rows, cols], cmap="gray", vmin=-1350, vmax=150,
                  interpolation="nearest")
        t, q = truth[z][rows, cols], pred[z][rows, cols]
        rgba = np.zeros((*t.shape, 4))
        rgba[t & q] = (0.0, 0.62, 0.45, 0.45)
        rgba[t & ~q] = (0.84, 0.37, 0.0, 0.6)
        rgba[q & ~t] = (0.0, 0.45, 0.7, 0.7)
        ax.imshow(rgba, interpolation="nearest")
        ax.contour(lung[z][rows, cols], [0.5], colors="#F0E442", linewidths=0.9)
        ax.set_title(f"slice {z}", fontsize=9)
        ax.text(0.02, 0.5, "R", color="w", transform=ax.transAxes, fontsize=9)
        ax.text(0.95, 0.5, "L", color="w", transform=ax.transAxes, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"{title}: found (green), missed (vermilion), called outside the truth "
                 f"(blue); {method} lung contour (yellow); W1500/L-600", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default="model,classical")
    p.add_argument("--figure", type=Path, default=None,
                   help="PNG of the first case with lesions, the first method")
    p.add_argument("--json", type=Path, default=None, help="write the rows here")
    a = p.parse_args()
    methods = a.methods.split(",")
    cases = [c for c in json.loads((SAMPLES / "manifest.json").read_text())["cases"]
             if c["lesion_pct"] > 10]
    rows = []
    for i, case in enumerate(cases):
        r, arrays = recall_rows(case, methods)
        rows += r
        if a.figure is not None and i == 0:
            figure(a.figure, arrays, methods[0],
                   f"{case['case']} (synthetic, {case['lesion_pct']:.1f} % lesion)")
    print("| case | method | HU | true voxels | inside the lung mask | recall | false voxels |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rec = "" if r["recall"] is None else f"{r['recall']:.2f}"
        inside = "" if r["in_lung"] is None else f"{r['in_lung']:.2f}"
        print(f"| {r['case']} | {r['method']} | {r['hu']} | {r['true_voxels']} | {inside} | "
              f"{rec} | {r['false_voxels']} |")
    if a.json is not None:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
