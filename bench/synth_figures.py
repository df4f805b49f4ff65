"""Figures of lesionquant.synth v2 next to real COVID-19 CT (docs/figures/synth_*.png).

Every panel is in the lung window W1500/L-600; the real JPEG slices (MedSeg, the
unlabelled COVID-19-CT-Seg slices) are first mapped to HU by their own lung and
soft-tissue peaks (``lesionquant._jpeg_hu``) and turned upright, so real and synthetic
are shown alike.

* ``synth_phantom.png``: a v2 phantom (a tuning-family case with dependent-lobe
  consolidation and an effusion): axial, coronal and sagittal slices, the truth outlined
  (cyan lung, yellow GGO, red consolidation, blue effusion), beside MedSeg, TCIA and
  unlabelled real slices.
* ``synth_patterns.png``: each v2 pattern alone (faint GGO, crazy paving, consolidation
  without GGO, subpleural bands, patchy GGO with cores) beside real slices.
* ``synth_insertion.png``: real chest CTs before / after ``insert_lesions`` (v2).
* ``synth_samples.png``: the five shipped sample scans (v1 generator) with their truth.

Run: ``nice python bench/synth_figures.py [phantom] [patterns] [insertion] [samples]``
(deterministic; a few minutes on 2 cores).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import scipy.ndimage as ndi
import SimpleITK as sitk
from PIL import Image

from lesionquant._jpeg_hu import jpeg_to_hu
from lesionquant.io import load_scan
from lesionquant.segment import segment_lungs
from lesionquant.synth import LesionParams, family_cases, insert_lesions, make_phantom

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LESIONQUANT_DATA", REPO.parent / "shared" / "data")) / "chest"
OUT = REPO / "docs" / "figures"
WIN = dict(cmap="gray", vmin=-1350, vmax=150, interpolation="bilinear")


def outline(ax, lab, aspect=None):
    for val, col in ((1, "c"), (3, "y"), (4, "r"), (5, "lime"), (6, "deepskyblue")):
        m = (lab >= 1) & (lab <= 4) if val == 1 else lab == val
        if m.any():
            ax.contour(m.astype(float), levels=[0.5], colors=col, linewidths=0.7)


def _jpeg_hu(path: Path, k: int) -> np.ndarray:
    """A lung-window JPEG mapped to HU by its own peaks, turned upright (rot90 k)."""
    gray = np.array(Image.open(path).convert("L")).astype(np.float32)
    return np.rot90(jpeg_to_hu(gray).apply(gray), k=k)


def medseg(ax, idx):
    """A MedSeg slice in HU (per-slice peak map), same window, expert outlines."""
    root = DATA / "medseg-covid-2d-ggo-consolidation"
    hu = _jpeg_hu(root / "images" / f"{idx}.jpg", -1)
    m = np.rot90(np.array(Image.open(root / "masks" / f"{idx}.png")), k=-1)
    ax.imshow(hu, **WIN)
    ax.contour((m == 1).astype(float), [0.5], colors="y", linewidths=0.7)
    ax.contour((m == 2).astype(float), [0.5], colors="r", linewidths=0.7)
    ax.set_title(f"REAL COVID-19: MedSeg {idx} (expert GGO yellow / consolidation red)",
                 fontsize=9)


def unlabelled(ax, name):
    """One of the 1600 unlabelled COVID-19-CT-Seg slices, same window."""
    hu = _jpeg_hu(DATA / "covid-ct-seg-unlabeled-slices" / "images" / f"{name}.jpg", 1)
    ax.imshow(hu, **WIN)
    ax.set_title(f"REAL COVID-19 (unlabelled): {name}", fontsize=9)


def tcia(ax, name, title):
    img = load_scan(DATA / "tcia-covid19-ny-sbu-axial-slices" / f"{name}.dcm").image
    ax.imshow(sitk.GetArrayFromImage(img)[0], **WIN)
    ax.set_title(f"REAL COVID-19 (TCIA {name}): {title}", fontsize=9)


def _crop(hu, lab, z):
    """Crop an axial slice to the lungs' box plus a margin (for readable panels)."""
    m = (lab[z] >= 1) & (lab[z] <= 6) & (lab[z] != 5)
    ys, xs = np.nonzero(m)
    y0, y1 = max(ys.min() - 25, 0), min(ys.max() + 25, m.shape[0])
    x0, x1 = max(xs.min() - 25, 0), min(xs.max() + 25, m.shape[1])
    return hu[z, y0:y1, x0:x1], lab[z, y0:y1, x0:x1]


def phantom_figure():
    """v2 phantom (tuning case with lobar consolidation and effusion) beside real slices."""
    case = next(c for c in family_cases("tuning", 8) if c.lesions.effusion_ml > 0)
    ph = make_phantom(size_xyz=(448, 448, 250), spacing_mm=(0.8, 0.8, 1.2), seed=case.seed,
                      lesions=case.lesions, patient_scale=case.patient_scale)
    hu = sitk.GetArrayFromImage(ph.image)
    lab = sitk.GetArrayFromImage(ph.labels)
    les = ((lab == 3) | (lab == 4)).sum(axis=(1, 2))
    n = lab.shape[0]
    z_eff = int(np.argmax((lab == 6).sum(axis=(1, 2)))) if (lab == 6).any() else n // 3
    z_ax = [z_eff, int(np.argmax(les[n // 3: 2 * n // 3]) + n // 3),
            int(np.argmax(les[2 * n // 3:]) + 2 * n // 3)]
    fig, axes = plt.subplots(3, 4, figsize=(22, 17))
    for a, z in zip(axes[0, :3], z_ax, strict=True):
        a.imshow(hu[z], **WIN)
        outline(a, lab[z])
        a.set_title(f"SYNTHETIC v2 phantom, axial z={z}", fontsize=9)
    y = int(np.argmax(((lab == 3) | (lab == 4)).sum(axis=(0, 2))))
    a = axes[0, 3]
    a.imshow(hu[::-1, y, :], aspect=1.2 / 0.8, **WIN)
    outline(a, lab[::-1, y, :])
    a.set_title(f"SYNTHETIC v2, coronal y={y}: dome, fissures", fontsize=9)
    for a, z in zip(axes[1, :2], z_ax[:2], strict=True):
        h, _ = _crop(hu, lab, z)
        a.imshow(h, **WIN)
        a.set_title("same slice, no outlines (native 0.8 mm pixels)", fontsize=9)
    x = int(np.argmax(((lab == 3) | (lab == 4) | (lab == 6)).sum(axis=(0, 1))))
    a = axes[1, 2]
    a.imshow(hu[::-1, :, x], aspect=1.2 / 0.8, **WIN)
    outline(a, lab[::-1, :, x])
    a.set_title(f"SYNTHETIC v2, sagittal x={x}: oblique fissure, dependent disease",
                fontsize=9)
    tcia(axes[1, 3], "A046441_19010101-23", "dependent consolidation")
    medseg(axes[2, 0], "010")
    medseg(axes[2, 1], "040")
    unlabelled(axes[2, 2], "coronacases_org_008_40")
    unlabelled(axes[2, 3], "coronacases_org_001_30")
    for a in axes.flat:
        a.set_xticks([])
        a.set_yticks([])
    t = ph.truth()
    fig.suptitle(f"make_phantom(lesions=<tuning case {case.index}>, seed={case.seed}): "
                 f"burden {case.lesions.burden_pct:g} %, lobar {case.lesions.lobar_pct:g} %, "
                 f"effusion {case.lesions.effusion_ml:g} mL; 448x448x250 at 0.8x0.8x1.2 mm.\n"
                 f"Truth: lung {t['lung_ml']:.0f} mL, GGO {t['ggo_ml']:.0f}, consolidation "
                 f"{t['consolidation_ml']:.0f}, effusion {t['effusion_ml']:.0f} mL. All panels "
                 "W1500/L-600 (JPEGs mapped to HU by their own peaks).\ncyan lung, yellow GGO, "
                 "red consolidation, blue effusion (label 6, not lung)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(OUT / "synth_phantom.png", dpi=62)
    plt.close(fig)


def patterns_figure():
    """Each v2 pattern alone (zoomed axial slices of small phantoms) beside real ones."""
    specs = [
        ("faint coreless GGO", LesionParams(burden_pct=8.0, ggo_fraction=1.0,
                                            kind_weights=(0, 1, 0, 0, 0))),
        ("crazy paving", LesionParams(burden_pct=8.0, ggo_fraction=1.0,
                                      kind_weights=(0, 0, 1, 0, 0))),
        ("consolidation without GGO", LesionParams(burden_pct=6.0, ggo_fraction=0.0,
                                                   kind_weights=(0, 0, 0, 1, 0))),
        ("subpleural bands / curvilinear lines", LesionParams(
            burden_pct=2.5, ggo_fraction=0.0, kind_weights=(0, 0, 0, 0, 1))),
        ("patchy GGO with consolidated cores", LesionParams(
            burden_pct=12.0, ggo_fraction=0.7, kind_weights=(1, 0, 0, 0, 0))),
    ]
    fig, axes = plt.subplots(2, len(specs) + 1, figsize=(4.6 * (len(specs) + 1), 9.5))
    for col, (name, p) in enumerate(specs):
        ph = make_phantom(size_xyz=(480, 480, 50), spacing_mm=(0.7, 0.7, 2.0),
                          seed=50 + col, lesions=p)
        hu = sitk.GetArrayFromImage(ph.image)
        lab = sitk.GetArrayFromImage(ph.labels)
        les = (lab == 3) | (lab == 4)
        z = int(np.argmax(les.sum(axis=(1, 2))))
        h, l_ = _crop(hu, lab, z)
        axes[0, col].imshow(h, **WIN)
        outline(axes[0, col], l_)
        axes[0, col].set_title(f"SYNTHETIC: {name} (truth outlined)", fontsize=9)
        # zoom: 90 mm around the largest lesion of the slice, no outlines
        comp, n = ndi.label(les[z])
        big = int(np.argmax(np.bincount(comp.ravel())[1:])) + 1 if n else 0
        cy, cx = (np.array(ndi.center_of_mass(comp == big)).astype(int) if n
                  else (hu.shape[1] // 2, hu.shape[2] // 2))
        r = 64  # pixels: 90 mm at 0.7 mm
        y0, x0 = max(cy - r, 0), max(cx - r, 0)
        axes[1, col].imshow(hu[z, y0:y0 + 2 * r, x0:x0 + 2 * r], **WIN)
        axes[1, col].set_title("zoom 90 mm, no outlines", fontsize=9)
    medseg(axes[0, -1], "050")
    unlabelled(axes[1, -1], "coronacases_org_008_40")
    for a in axes.flat:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle("v2 lesion patterns, each alone (LesionParams.kind_weights), W1500/L-600, "
                 "beside real COVID-19 slices in the same window", fontsize=11)
    fig.tight_layout()
    fig.savefig(OUT / "synth_patterns.png", dpi=75)
    plt.close(fig)


def insertion_figure():
    cases = [("cip-copd-chest-ct-64/ct.nii.gz", LesionParams(burden_pct=15.0, lobar_pct=4.0,
                                                             effusion_ml=150.0)),
             ("totalseg-aorta-chest-ct/ct.nii.gz", LesionParams(burden_pct=20.0)),
             ("lungmask-chest-ct-dicom-slice", LesionParams(burden_pct=20.0)),
             ("tcia-covid19-ny-sbu-axial-slices/A048383_19010410-30.dcm",
              LesionParams(burden_pct=25.0, lobar_pct=8.0, effusion_ml=6.0))]
    fig, axes = plt.subplots(3, 4, figsize=(22, 16))
    for col, (case, p) in enumerate(cases):
        scan = load_scan(DATA / case)
        image = scan.image
        mask = segment_lungs(image)
        ins = insert_lesions(image, mask, seed=col + 1, lesions=p)
        host = sitk.GetArrayFromImage(image)
        new = sitk.GetArrayFromImage(ins.image)
        lab = sitk.GetArrayFromImage(ins.labels)
        sx, sy, sz = image.GetSpacing()
        les = ((lab == 3) | (lab == 4) | (lab == 6)).sum(axis=(1, 2))
        z = int(np.argmax(les))
        name = case.split("/")[-1] if case.startswith("tcia") else case.split("/")[0]
        axes[0, col].imshow(host[z], aspect=sy / sx, **WIN)
        axes[0, col].set_title(f"REAL host {name}\n(before)", fontsize=9)
        axes[1, col].imshow(new[z], aspect=sy / sx, **WIN)
        outline(axes[1, col], lab[z])
        axes[1, col].set_title(f"after insert_lesions(burden {p.burden_pct:g} %, lobar "
                               f"{p.lobar_pct:g} %, effusion {p.effusion_ml:g} mL)\n"
                               f"GGO {ins.ggo_ml:.1f} mL, cons {ins.consolidation_ml:.1f} mL, "
                               f"effusion {ins.effusion_ml:.1f} mL", fontsize=9)
        if host.shape[0] > 8:
            y = int(np.argmax(((lab == 3) | (lab == 4)).sum(axis=(0, 2))))
            axes[2, col].imshow(new[::-1, y, :], aspect=sz / sx, **WIN)
            outline(axes[2, col], lab[::-1, y, :])
            axes[2, col].set_title("after, coronal", fontsize=9)
        elif col == 2:
            medseg(axes[2, col], "005")
        else:
            tcia(axes[2, col], "A098752_19010127-128", "posterior basal opacities")
    for a in axes.flat:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle("insert_lesions(lesions=LesionParams(...)) into real chest CTs (W1500/L-600; "
                 "cyan lung mask from segment_lungs, yellow GGO, red consolidation, blue "
                 "effusion = label 6, not lung)", fontsize=11)
    fig.tight_layout()
    fig.savefig(OUT / "synth_insertion.png", dpi=62)
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
    import sys

    which = set(sys.argv[1:]) or {"phantom", "patterns", "insertion", "samples"}
    if "phantom" in which:
        phantom_figure()
    if "patterns" in which:
        patterns_figure()
    if "insertion" in which:
        insertion_figure()
    if "samples" in which:
        samples_figure()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
