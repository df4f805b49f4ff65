"""Calibrate the v2 lesion model of lesionquant.synth against real COVID-19 CT.

Compares

* real expert-labelled lesions: the 65 MedSeg 2D slices (0 bg / 1 GGO / 2 consolidation),
  each JPEG mapped to HU by its own lung and soft-tissue peaks
  (``lesionquant._jpeg_hu.jpeg_to_hu``: lung peak -> -860 HU, soft tissue -> +40 HU),
* synthetic lesions: the v2 phantoms of the first four tuning-family cases and v2
  lesions inserted into the real chest CTs,

on the HU percentiles (5th / 50th / 95th, share below -750 HU) of GGO and consolidation
(target: synthetic within 60 HU of the expert regions), and, on axial slices shown in
the same 8-bit lung window (W1500/L-600), size (sqrt of component area over lung area),
boundary roughness (solidity), distance to the pleura (over the lung's equivalent
radius), the GGO/consolidation mix; and the lung attenuation of the real COVID-19 slices
of TCIA COVID-19-NY-SBU against synthetic disease. Writes
``docs/figures/synth_calibration.png`` / ``.json`` and prints the Markdown tables.

Run: ``nice python bench/synth_calibration.py`` (about 4 min on 2 cores; deterministic).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import scipy.ndimage as ndi
import SimpleITK as sitk
from PIL import Image
from skimage import filters, measure

from lesionquant._jpeg_hu import jpeg_to_hu
from lesionquant.io import load_scan
from lesionquant.segment import segment_lungs
from lesionquant.synth import LesionParams, family_cases, insert_lesions, make_phantom

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LESIONQUANT_DATA", REPO.parent / "shared" / "data")) / "chest"


def window8(hu):
    """HU -> 8-bit lung window W1500/L-600."""
    return np.clip((np.asarray(hu, float) + 1350.0) / 1500.0 * 255.0, 0, 255).astype(np.uint8)


def lung_from_8bit(img8, lesion):
    """Lung mask of an 8-bit lung-window slice: dark (Otsu) or lesion, holes filled."""
    t = filters.threshold_otsu(img8)
    lung = ndi.binary_fill_holes(ndi.binary_opening((img8 < t) | lesion, iterations=1))
    lab, n = ndi.label(lung)
    if n == 0:
        return lung
    sizes = ndi.sum(lung, lab, range(1, n + 1))
    keep = np.zeros(n + 1, bool)
    for i, sz in enumerate(sizes, start=1):
        if sz < 0.02 * lung.size:
            continue
        comp = lab == i
        borders = sum([comp[0].any(), comp[-1].any(), comp[:, 0].any(), comp[:, -1].any()])
        keep[i] = borders < 2 or (lesion & comp).sum() > 0.2 * sz  # corners = outside air
    return keep[lab]


def slice_stats(img8, cls, hu):
    """Statistics of one 2D slice: cls 0 none / 1 GGO / 2 consolidation; hu in HU."""
    lesion = cls > 0
    lung = lung_from_8bit(img8, lesion)
    lung_area = lung.sum()
    if lung_area < 500 or lesion.sum() < 20:
        return None
    r_eq = np.sqrt(lung_area / np.pi)
    dist = ndi.distance_transform_edt(lung)[lesion] / r_eq
    comps = measure.regionprops(measure.label(lesion, connectivity=2))
    comps = [c for c in comps if c.area >= 20]
    return dict(
        size=[float(np.sqrt(c.area / lung_area)) for c in comps],
        solidity=[float(c.solidity) for c in comps],
        dist=dist.tolist(),
        cons_frac=float((cls == 2).sum() / lesion.sum()),
        lesion_frac=float(min(1.0, lesion.sum() / lung_area)),
        n_comp=len(comps),
        ggo_hu=hu[cls == 1].astype(float).tolist(),
        cons_hu=hu[cls == 2].astype(float).tolist(),
    )


def medseg_stats():
    out = []
    root = DATA / "medseg-covid-2d-ggo-consolidation"
    for f in sorted((root / "images").glob("*.jpg")):
        gray = np.array(Image.open(f).convert("L")).astype(np.float32)
        m = np.array(Image.open(root / "masks" / (f.stem + ".png")))
        hu = jpeg_to_hu(gray).apply(gray)
        s = slice_stats(window8(hu), m, hu)
        if s:
            out.append(s)
    return out


def synthetic_volumes():
    """(name, hu (z,y,x), labels (z,y,x)) of synthetic disease, deterministic."""
    vols = []
    for case in family_cases("tuning", 4):
        ph = make_phantom(size_xyz=(320, 320, 150), spacing_mm=(1.1, 1.1, 2.0),
                          seed=case.seed, lesions=case.lesions,
                          patient_scale=case.patient_scale, dose_factor=case.dose_factor)
        vols.append((f"phantom {case.lesions.burden_pct:g}%", sitk.GetArrayFromImage(ph.image),
                     sitk.GetArrayFromImage(ph.labels)))
    cases = [("cip-copd-chest-ct-64/ct.nii.gz", 10.0), ("totalseg-aorta-chest-ct/ct.nii.gz", 20.0),
             ("lungmask-chest-ct-dicom-slice", 20.0),
             ("cip-copd-chest-ct-crop-2slices/ct.nii.gz", 15.0)]
    for k, (case, pct) in enumerate(cases):
        image = load_scan(DATA / case).image
        ins = insert_lesions(image, segment_lungs(image), seed=10 + k,
                             lesions=LesionParams(burden_pct=pct))
        vols.append((f"insert {case.split('/')[0]}", sitk.GetArrayFromImage(ins.image),
                     sitk.GetArrayFromImage(ins.labels)))
    return vols


def synthetic_stats(vols):
    out = []
    for _, hu, lab in vols:
        cls = np.where(lab == 3, 1, np.where(lab == 4, 2, 0)).astype(np.uint8)
        zs = np.nonzero(cls.reshape(cls.shape[0], -1).any(1))[0]
        for z in zs[:: max(1, len(zs) // 12)]:
            s = slice_stats(window8(hu[z]), cls[z], hu[z])
            if s:
                out.append(s)
    return out


def tcia_lung_hu():
    """HU of the lung (segmented) in each real COVID-19 slice of TCIA COVID-19-NY-SBU."""
    res = {}
    for f in sorted((DATA / "tcia-covid19-ny-sbu-axial-slices").glob("*.dcm")):
        img = load_scan(f).image
        try:
            lung = sitk.GetArrayFromImage(segment_lungs(img)) > 0
        except Exception:  # a slice the segmenter refuses
            continue
        res[f.stem] = sitk.GetArrayFromImage(img)[lung].astype(float)
    return res


def flat(stats, key):
    vals = []
    for s in stats:
        v = s[key]
        vals.extend(v if isinstance(v, list) else [v])
    return np.asarray(vals, float)


def fmt(v):
    if v.size == 0:
        return "n/a"
    q1, q2, q3 = np.percentile(v, [25, 50, 75])
    return f"{q2:.2f} ({q1:.2f}-{q3:.2f})"


def main() -> int:
    real = medseg_stats()
    vols = synthetic_volumes()
    syn = synthetic_stats(vols)
    tcia = tcia_lung_hu()
    rows = [("lesion component size, sqrt(area / lung area)", "size"),
            ("boundary roughness: solidity (1 = convex)", "solidity"),
            ("distance to pleura / lung equivalent radius", "dist"),
            ("consolidation share of lesion area, per slice", "cons_frac"),
            ("lesion share of lung area, per slice", "lesion_frac"),
            ("lesion components per slice (>= 20 px)", "n_comp")]
    lines = ["| statistic: median (IQR) | MedSeg expert (real) | lesionquant.synth |",
             "|---|---|---|"]
    table = {}
    for name, key in rows:
        a, b = flat(real, key), flat(syn, key)
        table[key] = dict(real=[float(x) for x in np.percentile(a, [25, 50, 75])],
                          synth=[float(x) for x in np.percentile(b, [25, 50, 75])])
        lines.append(f"| {name} | {fmt(a)} | {fmt(b)} |")
    lines.append(f"| slices (components) | {len(real)} ({flat(real, 'size').size}) | "
                 f"{len(syn)} ({flat(syn, 'size').size}) |")
    # HU percentiles of the lesion classes: expert regions vs synthetic (all voxels)
    def voxels(sel, code):
        return np.concatenate([hu[lab == code].astype(float) for _, hu, lab in sel])

    n_ph = 4
    hu_rows = []
    lines += ["", "| HU of the labelled region | 5th | 50th | 95th | % < -750 HU | "
              "max abs diff of 5/50/95th vs expert |", "|---|---|---|---|---|---|"]
    for cname, key, code in (("GGO", "ggo_hu", 3), ("consolidation", "cons_hu", 4)):
        ref = flat(real, key)
        ref_p = np.percentile(ref, [5, 50, 95])
        for src, v in ((f"MedSeg expert {cname}", ref),
                       (f"synth phantoms {cname}", voxels(vols[:n_ph], code)),
                       (f"synth inserted {cname}", voxels(vols[n_ph:], code))):
            p = np.percentile(v, [5, 50, 95])
            diff = float(np.max(np.abs(p - ref_p)))
            below = 100.0 * float(np.mean(v < -750))
            hu_rows.append(dict(source=src, p5=float(p[0]), p50=float(p[1]), p95=float(p[2]),
                                below_750_pct=below, max_abs_diff=diff))
            verdict = "ok" if diff <= 60 else "NO"
            tail = "-" if src.startswith("MedSeg") else f"{diff:.0f} ({verdict})"
            lines.append(f"| {src} | {p[0]:.0f} | {p[1]:.0f} | {p[2]:.0f} | {below:.1f} | {tail} |")
    table["hu_percentiles"] = hu_rows

    # HU comparison with the real COVID-19 slices
    diseased = [k for k in tcia if k.split("_")[0] in ("A002304", "A046441", "A056642",
                                                       "A098752") and
                not k.startswith("A002304_19001231")]
    syn_hu = np.concatenate([hu[(lab >= 1) & (lab <= 4)].astype(float)
                             for _, hu, lab in vols[:n_ph]])
    real_hu = np.concatenate([tcia[k] for k in diseased]) if diseased else np.zeros(0)

    def band(v, lo, hi):
        return 100.0 * np.mean((v >= lo) & (v < hi)) if v.size else float("nan")

    lines.append("")
    lines.append("| lung HU (segmented lung) | TCIA COVID-19 slices (diseased) | synth phantoms "
                 "(tuning cases 0-3) |")
    lines.append("|---|---|---|")
    for name, lo, hi in (("% in GGO band -750..-300", -750, -300),
                         ("% in consolidation band -300..150", -300, 150),
                         ("% aerated < -750", -2000, -750)):
        lines.append(f"| {name} | {band(real_hu, lo, hi):.1f} | {band(syn_hu, lo, hi):.1f} |")
    print("\n".join(lines))

    # ---- figure ----
    fig, ax = plt.subplots(2, 4, figsize=(18, 8.5))
    kw = dict(density=True, histtype="step", linewidth=1.8)
    panels = [("size", np.linspace(0, 0.6, 25), "component size sqrt(A/A_lung)"),
              ("solidity", np.linspace(0.2, 1, 25), "solidity (roughness)"),
              ("dist", np.linspace(0, 1, 25), "distance to pleura / R_lung"),
              ("cons_frac", np.linspace(0, 1, 11), "consolidation share per slice"),
              ("ggo_hu", np.arange(-1050, 250, 25), "GGO HU (expert: per-slice peak map)"),
              ("cons_hu", np.arange(-1050, 250, 25), "consolidation HU"),
              ("lesion_frac", np.linspace(0, 1, 11), "lesion share of lung per slice")]
    for a, (key, bins, title) in zip(ax.flat, panels, strict=False):
        a.hist(flat(real, key), bins=bins, label="MedSeg expert (real)", color="k", **kw)
        a.hist(flat(syn, key), bins=bins, label="lesionquant.synth v2", color="tab:red", **kw)
        a.set_title(title)
    ax.flat[0].legend(loc="upper right", fontsize=8)
    a = ax.flat[7]
    bins = np.arange(-1050, 200, 25)
    for k in diseased:
        a.hist(tcia[k], bins=bins, density=True, histtype="step", color="0.6", linewidth=0.8)
    a.hist(real_hu, bins=bins, label="TCIA COVID-19 (real, HU)", color="k", **kw)
    a.hist(syn_hu, bins=bins, label="synth phantoms", color="tab:red", **kw)
    a.axvspan(-750, -300, color="y", alpha=0.15)
    a.axvspan(-300, 150, color="r", alpha=0.08)
    a.set_title("lung HU: real COVID-19 slices vs synthetic")
    a.legend(fontsize=8)
    fig.suptitle("lesionquant.synth v2 calibration: real expert-labelled COVID-19 lesions "
                 "(black) vs phantom/inserted lesions (red); shapes in the same 8-bit window, "
                 "HU by each JPEG's own lung and soft-tissue peaks")
    fig.tight_layout()
    out = REPO / "docs" / "figures" / "synth_calibration.png"
    fig.savefig(out, dpi=80)
    (REPO / "docs" / "figures" / "synth_calibration.json").write_text(json.dumps(table, indent=1))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
