"""Figures of lesionquant.synth next to real COVID-19 CT (docs/figures/synth_*.png).

* ``synth_phantom.png``: a full-size phantom (512x512x300, 0.7x0.7x1 mm, 15 % lesion
  burden, mixed GGO/consolidation): axial slices at three levels and a coronal slice in
  the lung window W1500/L-600, the truth outlined (cyan lung, yellow GGO, red
  consolidation, green airway), beside expert-labelled real COVID-19 slices (MedSeg).
* ``synth_insertion.png``: every real chest CT of ../shared/data/chest with inserted
  lesions (before / after, truth outlined), beside MedSeg slices.
* ``synth_samples.png``: the five shipped sample scans with their truth.

Run: ``python bench/synth_figures.py`` (deterministic; about a minute).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import SimpleITK as sitk
from PIL import Image

from lesionquant.io import load_scan
from lesionquant.segment import segment_lungs
from lesionquant.synth import insert_lesions, make_phantom

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "chest"
OUT = REPO / "docs" / "figures"
WIN = dict(cmap="gray", vmin=-1350, vmax=150, interpolation="bilinear")


def outline(ax, lab, aspect=None):
    for val, col in ((1, "c"), (3, "y"), (4, "r"), (5, "lime")):
        m = (lab >= 1) & (lab <= 4) if val == 1 else lab == val
        if m.any():
            ax.contour(m.astype(float), levels=[0.5], colors=col, linewidths=0.7)


def medseg(ax, idx):
    root = DATA / "medseg-covid-2d-ggo-consolidation"
    img = np.array(Image.open(root / "images" / f"{idx}.jpg").convert("L"))
    m = np.array(Image.open(root / "masks" / f"{idx}.png"))
    ax.imshow(img, cmap="gray", interpolation="bilinear")
    ax.contour((m == 1).astype(float), [0.5], colors="y", linewidths=0.7)
    ax.contour((m == 2).astype(float), [0.5], colors="r", linewidths=0.7)
    ax.set_title(f"REAL COVID-19 (MedSeg {idx}, expert GGO/consolidation)", fontsize=9)


def phantom_figure():
    ph = make_phantom(seed=4, lesion_burden_pct=15.0, ggo_fraction=0.65)
    hu = sitk.GetArrayFromImage(ph.image)
    lab = sitk.GetArrayFromImage(ph.labels)
    les = ((lab == 3) | (lab == 4)).sum(axis=(1, 2))
    z_ax = [int(np.argmax(les[:100])), int(np.argmax(les[100:200]) + 100),
            int(np.argmax(les[200:]) + 200)]
    fig, axes = plt.subplots(2, 4, figsize=(22, 11.5))
    for a, z in zip(axes[0, :3], z_ax, strict=True):
        a.imshow(hu[z][::1], **WIN)
        outline(a, lab[z])
        a.set_title(f"SYNTHETIC phantom, axial z={z} (truth outlined)", fontsize=9)
    y = int(np.argmax(((lab == 3) | (lab == 4)).sum(axis=(0, 2))))
    a = axes[0, 3]
    a.imshow(hu[::-1, y, :], aspect=1.0 / 0.7, **WIN)
    outline(a, lab[::-1, y, :])
    a.set_title(f"SYNTHETIC phantom, coronal y={y}", fontsize=9)
    # zoomed views at native resolution
    z = z_ax[1]
    a = axes[1, 0]
    a.imshow(hu[z, 120:380, 40:300], **WIN)
    outline(a, lab[z, 120:380, 40:300])
    a.set_title("zoom, right lung (image left), native 0.7 mm pixels", fontsize=9)
    a = axes[1, 1]
    a.imshow(hu[z, 120:380, 40:300], cmap="gray", vmin=-1350, vmax=150,
             interpolation="bilinear")
    a.set_title("same, no outlines", fontsize=9)
    medseg(axes[1, 2], "010")
    medseg(axes[1, 3], "040")
    for a in axes.flat:
        a.set_xticks([])
        a.set_yticks([])
    t = ph.truth()
    fig.suptitle(f"make_phantom(seed=4, lesion_burden_pct=15, ggo_fraction=0.65), 512x512x300 "
                 f"at 0.7x0.7x1 mm, lung window W1500/L-600. Truth: lung {t['lung_ml']:.0f} mL "
                 f"(R {t['right_lung_ml']:.0f} / L {t['left_lung_ml']:.0f}), GGO "
                 f"{t['ggo_ml']:.0f} mL, consolidation {t['consolidation_ml']:.0f} mL, "
                 f"lesion {t['lesion_pct']:.1f} %. cyan lung, yellow GGO, red consolidation, "
                 "green airway", fontsize=10)
    fig.tight_layout()
    fig.savefig(OUT / "synth_phantom.png", dpi=70)
    plt.close(fig)


def insertion_figure():
    cases = [("cip-copd-chest-ct-64/ct.nii.gz", 15.0, 0.7),
             ("totalseg-aorta-chest-ct/ct.nii.gz", 20.0, 0.6),
             ("lungmask-chest-ct-dicom-slice", 20.0, 0.7),
             ("cip-copd-chest-ct-crop-2slices/ct.nii.gz", 15.0, 0.75)]
    fig, axes = plt.subplots(3, 4, figsize=(22, 16))
    for col, (case, pct, ggo) in enumerate(cases):
        scan = load_scan(DATA / case)
        image = scan.image
        mask = segment_lungs(image)
        ins = insert_lesions(image, mask, seed=col + 1, target_lesion_pct=pct,
                             ggo_fraction=ggo, crazy_paving=(col == 1))
        host = sitk.GetArrayFromImage(image)
        new = sitk.GetArrayFromImage(ins.image)
        lab = sitk.GetArrayFromImage(ins.labels)
        sx, sy, sz = image.GetSpacing()
        les = ((lab == 3) | (lab == 4)).sum(axis=(1, 2))
        z = int(np.argmax(les))
        name = case.split("/")[0]
        axes[0, col].imshow(host[z], aspect=sy / sx, **WIN)
        axes[0, col].set_title(f"REAL host {name}\n(before)", fontsize=9)
        axes[1, col].imshow(new[z], aspect=sy / sx, **WIN)
        outline(axes[1, col], lab[z])
        axes[1, col].set_title(f"after insert_lesions({pct:g} %, GGO {ggo:g}"
                               f"{', crazy paving' if col == 1 else ''})\n"
                               f"GGO {ins.ggo_ml:.1f} mL, cons {ins.consolidation_ml:.1f} mL, "
                               f"noise {ins.host_noise_hu:.0f} HU", fontsize=9)
        if host.shape[0] > 8:
            y = int(np.argmax(((lab == 3) | (lab == 4)).sum(axis=(0, 2))))
            axes[2, col].imshow(new[::-1, y, :], aspect=sz / sx, **WIN)
            outline(axes[2, col], lab[::-1, y, :])
            axes[2, col].set_title("after, coronal", fontsize=9)
        else:
            medseg(axes[2, col], "005" if col == 2 else "050")
    for a in axes.flat:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle("insert_lesions into every real chest CT here (lung window W1500/L-600; "
                 "cyan lung mask from segment_lungs, yellow GGO, red consolidation)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(OUT / "synth_insertion.png", dpi=65)
    plt.close(fig)


def samples_figure():
    """The shipped sample_scans: an axial and a coronal slice of each, truth outlined."""
    import json

    root = REPO / "sample_scans"
    cases = json.loads((root / "manifest.json").read_text())["cases"]
    fig, axes = plt.subplots(2, len(cases), figsize=(5 * len(cases), 10))
    for col, c in enumerate(cases):
        scan = load_scan(root / c["dicom"])
        hu = sitk.GetArrayFromImage(scan.image)
        lab = sitk.GetArrayFromImage(sitk.ReadImage(str(root / c["labels"])))
        sx, _, sz = scan.image.GetSpacing()
        les = ((lab == 3) | (lab == 4)).sum(axis=(1, 2))
        z = int(np.argmax(les)) if les.any() else hu.shape[0] // 2
        axes[0, col].imshow(hu[z], **WIN)
        outline(axes[0, col], lab[z])
        axes[0, col].set_title(f"{c['case']} ({c['patient_id']}, {c['study_date']})\n"
                               f"lesion {c['lesion_pct']:.1f} % of {c['lung_ml']:.0f} mL, GGO "
                               f"{c['ggo_ml']:.0f} / cons {c['consolidation_ml']:.0f} mL",
                               fontsize=9)
        y = hu.shape[1] // 2 + 12
        axes[1, col].imshow(hu[::-1, y, :], aspect=sz / sx, **WIN)
        outline(axes[1, col], lab[::-1, y, :])
    for a in axes.flat:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle("sample_scans/ (synthetic, 192x192x60, 1.87 mm, 5 mm slices, JPEG 2000): "
                 "truth outlined, lung window", fontsize=11)
    fig.tight_layout()
    fig.savefig(OUT / "synth_samples.png", dpi=60)
    plt.close(fig)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    phantom_figure()
    insertion_figure()
    samples_figure()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
