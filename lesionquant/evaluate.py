"""Accuracy evaluation of the measuring pipeline (regenerates ``docs/accuracy.md``).

The report opens with the real data (MedSeg expert slices: the headline; TCIA COVID-19
slices with two-sided checks), then the synthetic families of the v2 lesion model
(:mod:`lesionquant.synth._families`: tuning, report, shifted), then the experiments
below (legacy v1 phantoms among them):

1. **Phantoms** (:func:`lesionquant.synth.make_phantom`): several seeds and burdens;
   lesion/GGO/consolidation % error (percentage points) and Dice, lung volume error, the
   fraction of true consolidation inside the lung mask.
2. **Insertion into real chest CT** (:func:`lesionquant.synth.insert_lesions`) for every
   real chest CT with lung in the data folder, host lungs from the CIP mask where there is
   one, else from :func:`~lesionquant.segment.segment_lungs` on the host.
3. **Real CT without COVID-19**: false lesion %, and lung Dice against the CIP whole-lung
   mask of the COPD scan.
4. **MedSeg 2D expert slices**: 8-bit windowed JPEG mapped to HU per slice by its own
   lung and soft-tissue peaks (:func:`lesionquant._jpeg_hu.jpeg_to_hu`), a pixel spacing
   of :data:`MEDSEG_SPACING_MM`; lesion/GGO/consolidation Dice and the lesion-area error
   per slice, and the headline (:func:`medseg_headline`).
5. **Real COVID-19 slices without labels** (TCIA COVID-19-NY-SBU): lung and lesion % per
   slice, and an overlay PNG per slice for visual review.

Nothing here is imported by the pipeline; it reads files and writes the report, so it
lives outside ``segment``/``measure``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from lesionquant._atomic import atomic_path, write_text_atomic
from lesionquant.errors import InvalidInputError, LesionQuantError
from lesionquant.scan import Scan
from lesionquant.segment import LESION_LABELS, LUNG_LABELS, Label
from lesionquant.settings import Settings

__all__ = [
    "LUNG_CAGE_MIN",
    "MEDSEG_SPACING_MM",
    "MEDSEG_WINDOW",
    "TCIA_CONSOLIDATED",
    "TCIA_CONTROL",
    "Table",
    "dice",
    "evaluate",
    "family_table",
    "medseg_headline",
    "medseg_image",
    "repeatability_table",
    "rib_cage_area_cm2",
    "targets",
    "write_report",
]

logger = logging.getLogger(__name__)

#: The fixed lung window the MedSeg JPEGs were read with before the per-slice peak map
#: (``medseg_image(..., mapping="window")``): (width, level) HU. gray 0..255 maps linearly
#: to [level - width/2, level + width/2]: HU = gray / 255 * 1500 - 1100. The textbook lung
#: window W1500/L-600 puts these images' normal lung at -1100..-1250 HU and the expert GGO
#: (median gray 60-115) at -1000..-670 HU, below any GGO band; L-350 puts normal lung near
#: -850, expert GGO near -600 and consolidation (gray 130-180) near -200..-40 HU. The level
#: was read off the expert labels, so it flatters the classical baseline slightly.
MEDSEG_WINDOW = (1500.0, -350.0)
#: Pixel spacing assumed for the MedSeg slices (no spacing is stored), mm; slice 1 mm.
MEDSEG_SPACING_MM = 0.7
#: The MedSeg masks' own codes (not the pipeline's :class:`~lesionquant.segment.Label`).
MEDSEG_GGO, MEDSEG_CONSOLIDATION = 1, 2

#: Real chest CTs with lung (host scans for insertion, false-positive controls).
REAL_CHEST = (
    "cip-copd-chest-ct-64/ct.nii.gz",
    "totalseg-aorta-chest-ct/ct.nii.gz",
    "cip-copd-chest-ct-crop-2slices/ct.nii.gz",
    "lungmask-chest-ct-dicom-slice/0.dcm",
    "tcia-covid19-ny-sbu-axial-slices/A048383_19001231-30.dcm",
    "tcia-covid19-ny-sbu-axial-slices/A048383_19010410-30.dcm",
)
COPD_MASK = "cip-copd-chest-ct-64/lung_mask.nii.gz"

#: TCIA slices with dense consolidation of the dependent lungs (my reading, not expert).
TCIA_CONSOLIDATED = ("A046441_19001111-045", "A046441_19010101-23", "A098752_19010127-128")
#: The TCIA control patient (near-normal lungs on both dates).
TCIA_CONTROL = ("A048383_19001231-30", "A048383_19010410-30")
#: Lower bound of lung area / rib-cage area on one axial slice. The rib cage is the
#: convex hull of the bone (> 300 HU) within 50 mm of the lung mask (ribs, spine,
#: sternum; not the arms); on the near-normal TCIA slices (A048383 both dates, A002304
#: prior) lung / cage is 0.39-0.55, and a diseased lung keeps its size (consolidation is
#: lung), so a mask below 0.30 of the cage has left lung out.
LUNG_CAGE_MIN = 0.30
#: Largest false lesion % on the control patient's slices (two-sided check).
CONTROL_MAX_LESION_PCT = 1.0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two boolean masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


@dataclass
class Table:
    """A titled table of rows (dicts with the same keys) plus a free-text note."""

    title: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def markdown(self) -> str:
        """The table as GitHub markdown (floats with 3 significant decimals)."""
        out = [f"### {self.title}", ""]
        if self.note:
            out += [self.note, ""]
        if not self.rows:
            return "\n".join([*out, "(no rows)", ""])
        keys = [k for k in self.rows[0] if not k.startswith("_")]  # "_x": kept, not shown
        out.append("| " + " | ".join(keys) + " |")
        out.append("|" + "---|" * len(keys))
        for row in self.rows:
            out.append("| " + " | ".join(_fmt(row.get(k)) for k in keys) + " |")
        return "\n".join([*out, ""])

    def summary(self, keys: Iterable[str]) -> dict[str, float]:
        """Mean and worst (max of abs errors, min of Dice) of numeric columns."""
        out: dict[str, float] = {}
        for k in keys:
            vals = [float(r[k]) for r in self.rows if isinstance(r.get(k), (int, float))]
            vals = [v for v in vals if np.isfinite(v)]
            if not vals:
                continue
            out[f"{k}_mean"] = float(np.mean(vals))
            out[f"{k}_worst"] = float(min(vals) if "dice" in k else max(np.abs(vals)))
        return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if not np.isfinite(v) else f"{v:.3f}"
    return str(v)


# ------------------------------------------------------------------------ comparisons


def _compare(pred: np.ndarray, truth: np.ndarray, voxel_ml: float) -> dict[str, float]:
    """Errors (pp) and Dice of a predicted label map against a truth label map (0-4/5)."""
    t_lung = np.isin(truth, LUNG_LABELS)
    p_lung = pred > 0
    t_n, p_n = max(int(t_lung.sum()), 1), max(int(p_lung.sum()), 1)
    row: dict[str, float] = {}
    for name, values in (("lesion", LESION_LABELS), ("ggo", (Label.GGO,)),
                         ("consolidation", (Label.CONSOLIDATION,))):
        t = np.isin(truth, values)
        p = np.isin(pred, values)
        row[f"true_{name}_pct"] = 100.0 * int(t.sum()) / t_n
        row[f"{name}_pct"] = 100.0 * int(p.sum()) / p_n
        row[f"{name}_err_pp"] = row[f"{name}_pct"] - row[f"true_{name}_pct"]
        row[f"{name}_dice"] = dice(t, p)
    row["lung_ml_err_pct"] = 100.0 * (p_n - t_n) / t_n
    row["lung_dice"] = dice(t_lung, p_lung)
    t_cons = truth == Label.CONSOLIDATION
    row["cons_in_lung"] = float((t_cons & p_lung).sum() / max(int(t_cons.sum()), 1))
    return row


def _arr(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def _voxel_ml(image: sitk.Image) -> float:
    return float(np.prod(image.GetSpacing())) / 1000.0


# ------------------------------------------------------------------------ experiments


def phantom_table(seeds: Iterable[int], burdens: Iterable[float],
                  size_xyz: tuple[int, int, int], spacing_mm: tuple[float, float, float],
                  settings: Settings) -> Table:
    """Experiment 1: full chest phantoms with lesions, each seed and burden."""
    from lesionquant.api import quantify
    from lesionquant.synth import make_phantom

    table = Table(f"Phantoms ({size_xyz[0]}x{size_xyz[1]}x{size_xyz[2]} at "
                  f"{spacing_mm[0]}x{spacing_mm[1]}x{spacing_mm[2]} mm)")
    for seed in seeds:
        for burden in burdens:
            ph = make_phantom(size_xyz=size_xyz, spacing_mm=spacing_mm, seed=seed,
                              lesion_burden_pct=burden)
            t0 = time.perf_counter()
            res = quantify(ph.image, settings)
            row: dict[str, Any] = {"seed": seed, "burden_pct": burden}
            row.update(_compare(_arr(res.labelmap), _arr(ph.labels), _voxel_ml(ph.image)))
            row["lung_ml_err_pct"] = 100.0 * (res["lung_ml"] - ph.lung_ml) / ph.lung_ml
            row["time_s"] = time.perf_counter() - t0
            table.rows.append(_select(row))
            logger.info("phantom seed %d burden %g: %s", seed, burden, table.rows[-1])
    return table


def family_table(family: str, n: int, size_xyz: tuple[int, int, int],
                 spacing_mm: tuple[float, float, float], settings: Settings,
                 thick_slice_mm: float | None = 5.0) -> Table:
    """Phantoms of one case family of the v2 lesion model (tuning, report or shifted).

    Cases come from :func:`lesionquant.synth.family_cases`; every second case is
    acquired with ``thick_slice_mm`` slices over the same length (when given).
    """
    from lesionquant.api import quantify
    from lesionquant.synth import family_cases, make_phantom

    table = Table(f"Synthetic {family} family (v2 lesion model, {size_xyz[0]}x{size_xyz[1]} "
                  f"at {spacing_mm[0]}x{spacing_mm[1]} mm in-plane)",
                  note=_FAMILY_NOTES[family])
    for case in family_cases(family, n):
        size, spacing = size_xyz, spacing_mm
        if thick_slice_mm and case.index % 2 == 1:
            nz = max(1, round(size_xyz[2] * spacing_mm[2] / thick_slice_mm))
            size, spacing = (*size_xyz[:2], nz), (*spacing_mm[:2], float(thick_slice_mm))
        ph = make_phantom(size_xyz=size, spacing_mm=spacing, seed=case.seed,
                          lesions=case.lesions, patient_scale=case.patient_scale,
                          dose_factor=case.dose_factor)
        res = quantify(ph.image, settings)
        p = case.lesions
        row: dict[str, Any] = {"case": case.index, "seed": case.seed,
                               "slice_mm": spacing[2], "lobar_pct": p.lobar_pct,
                               "effusion_ml": round(ph.effusion_ml)}
        row.update(_compare(_arr(res.labelmap), _arr(ph.labels), _voxel_ml(ph.image)))
        row["lung_ml_err_pct"] = 100.0 * (res["lung_ml"] - ph.lung_ml) / ph.lung_ml
        row["qa_dense_outside_ml"] = res["qa_dense_outside_lung_ml"]
        table.rows.append(_select(row))
        logger.info("%s case %d: %s", family, case.index, table.rows[-1])
    return table


_FAMILY_NOTES = {
    "tuning": "Look at these while changing a method. Parameters from the tuning ranges "
              "(docs/synth.md), seeds 10000+.",
    "report": "Never looked at while changing a method: same ranges as tuning, other seeds "
              "(20000+) and so other parameter values. These are the numbers to quote.",
    "shifted": "Parameters outside the tuning ranges (more burden and consolidation, "
               "fainter GGO, larger lobar disease and effusions, larger and noisier "
               "patients), seeds 30000+.",
}


def repeatability_table(path: Path) -> Table:
    """The repeatability summary written by ``bench/repeatability.py`` (JSON) as a table."""
    import json

    doc = json.loads(Path(path).read_text())
    n = len(doc.get("cases", []))
    method = doc.get("method", "classical")
    title = "Repeatability: the same phantom anatomy and lesions re-acquired"
    if method != "classical":
        title += f" ({method})"
    table = Table(
        title,
        note=f"Method: {method}. {n} v2 phantoms (tuning cases), each measured on a 1 mm / "
             "standard-kernel / standard-noise reference and re-acquired; differences from "
             "the reference in percentage points of lung: mean [95 % limits of agreement]. "
             "Goal of the measuring pipeline: limits within +-0.5 pp. Bland-Altman figure: "
             f"docs/figures/{Path(path).stem}_bland_altman.png. Regenerate: "
             f"`nice {doc.get('command', 'python bench/repeatability.py')}` (the figure and "
             "the JSON), then `lesionquant evaluate` picks the JSON up.")
    for cond, s in doc.get("summary", {}).items():
        row: dict[str, Any] = {"acquisition": cond}
        ok = True
        for key, name in (("lesion_pct", "lesion"), ("ggo_pct", "GGO"),
                          ("consolidation_pct", "consolidation")):
            v = s[key]
            row[f"{name} diff pp"] = (f"{v['mean_pp']:+.2f} [{v['loa_low_pp']:+.2f}, "
                                      f"{v['loa_high_pp']:+.2f}]")
            ok &= abs(v["loa_low_pp"]) <= 0.5 and abs(v["loa_high_pp"]) <= 0.5
        row["within +-0.5 pp"] = "yes" if ok else "no"
        table.rows.append(row)
    return table


def _select(row: dict[str, Any]) -> dict[str, Any]:
    keys = [k for k in row if not k.startswith("true_") or k == "true_lesion_pct"]
    return {k: row[k] for k in keys}


def _host_lungs(image: sitk.Image, mask_path: Path | None, settings: Settings) -> sitk.Image:
    from lesionquant.segment import lesion_sides, segment_lungs

    if mask_path is None:
        return segment_lungs(image, settings)
    mask = sitk.ReadImage(str(mask_path))
    # Split the CIP whole-lung mask into sides with our own lungs (nearest side).
    ours = _arr(segment_lungs(image, settings))
    m = _arr(mask) > 0
    # CIP lung voxels outside our mask: read as lesion voxels, they take the nearest side.
    side = np.where(m, lesion_sides(np.where(m & (ours == 0), Label.GGO, ours).astype(np.uint8)),
                    0)
    side = side.astype(np.uint8)
    out = sitk.GetImageFromArray(side)
    out.CopyInformation(image)
    return out


def insertion_table(chest_dir: Path, seeds: Iterable[int], burdens: Iterable[float],
                    settings: Settings) -> Table:
    """Experiment 2: lesions inserted into every real chest CT with lung."""
    from lesionquant.api import quantify
    from lesionquant.io import load_scan
    from lesionquant.synth import LesionParams, insert_lesions

    table = Table("Lesions inserted into real chest CT",
                  note="v2 lesion model (burdens >= 15 % with a quarter as dependent-lobe "
                       "consolidation). Truth % is of the host lung mask; host lungs from "
                       "the CIP mask (COPD) or from segment_lungs on the host.")
    for rel in REAL_CHEST[:4]:
        path = chest_dir / rel
        scan = load_scan(path)
        mask = chest_dir / COPD_MASK if rel.startswith("cip-copd-chest-ct-64") else None
        lungs = _host_lungs(scan.image, mask, settings)
        for seed in seeds:
            for burden in burdens:
                params = LesionParams(burden_pct=burden,
                                      lobar_pct=0.25 * burden if burden >= 15 else 0.0)
                ins = insert_lesions(scan.image, lungs, seed=seed, lesions=params)
                res = quantify(Scan(image=ins.image, source=str(path)), settings)
                row: dict[str, Any] = {"host": rel.split("/")[0], "seed": seed,
                                       "burden_pct": burden}
                row.update(_compare(_arr(res.labelmap), _arr(ins.labels),
                                    _voxel_ml(ins.image)))
                table.rows.append(_select(row))
                logger.info("insert %s seed %d burden %g: %s", rel, seed, burden,
                            table.rows[-1])
    return table


def normal_table(chest_dir: Path, settings: Settings) -> Table:
    """Experiment 3: false lesion % on real CT without COVID-19; lung Dice on COPD."""
    from lesionquant.api import quantify

    table = Table("Real chest CT without COVID-19 (false lesions)")
    for rel in REAL_CHEST:
        res = quantify(chest_dir / rel, settings)
        row: dict[str, Any] = {
            "scan": rel.replace("tcia-covid19-ny-sbu-axial-slices/", "tcia/"),
            "lung_ml": res["lung_ml"], "false_lesion_pct": res["lesion_pct"],
            "false_ggo_pct": res["ggo_pct"],
            "false_consolidation_pct": res["consolidation_pct"],
            "laa950_pct": res["lung_laa950_pct"], "lung_dice_cip": float("nan"),
        }
        if rel.startswith("cip-copd-chest-ct-64"):
            truth = _arr(sitk.ReadImage(str(chest_dir / COPD_MASK))) > 0
            row["lung_dice_cip"] = dice(truth, _arr(res.labelmap) > 0)
            row["lung_ml_cip"] = float(truth.sum()) * _voxel_ml(res.scan.image)
        else:
            row["lung_ml_cip"] = float("nan")
        table.rows.append(row)
    return table


def _medseg_upright(a: np.ndarray) -> np.ndarray:
    """The MedSeg/Inf-Net slices are stored turned by 90 degrees (anterior at the image's
    left, spine at its right); turn them clockwise so anterior is up, as in DICOM."""
    return np.ascontiguousarray(np.rot90(a, k=-1))


def medseg_image(jpeg: Path, *, mapping: str = "peaks") -> sitk.Image:
    """A MedSeg 8-bit JPEG slice as a one-slice HU image, turned upright.

    ``mapping="peaks"`` (default) maps each slice by its own lung and soft-tissue peaks
    (:func:`lesionquant._jpeg_hu.jpeg_to_hu`); ``"window"`` uses the fixed
    :data:`MEDSEG_WINDOW` of earlier reports.
    """
    from PIL import Image

    from lesionquant._jpeg_hu import jpeg_to_hu

    try:
        with Image.open(jpeg) as im:
            gray = np.asarray(im.convert("L"), dtype=np.float32)
    except OSError as exc:
        raise InvalidInputError(f"cannot read JPEG ({exc})", source=jpeg) from exc
    if mapping == "peaks":
        hu = _medseg_upright(jpeg_to_hu(gray).apply(gray))
    else:
        width, level = MEDSEG_WINDOW
        hu = _medseg_upright(gray / 255.0 * width + (level - width / 2.0))
    img = sitk.GetImageFromArray(hu[None].astype(np.float32))
    img.SetSpacing((MEDSEG_SPACING_MM, MEDSEG_SPACING_MM, 1.0))
    return img


def medseg_table(medseg_dir: Path, settings: Settings,
                 figures_dir: Path | None = None) -> Table:
    """Experiment 4: the MedSeg 2D expert slices (and, with ``figures_dir``, a montage of
    expert vs pipeline labels, ``medseg_montage.png``)."""
    from PIL import Image

    from lesionquant.api import quantify

    table = Table(
        "MedSeg 2D expert slices (JPEG mapped to HU per slice by its lung and soft-tissue "
        f"peaks, {MEDSEG_SPACING_MM} mm pixels assumed, turned upright)",
        note="Lesion area error is (predicted - expert) lesion pixels / expert lesion "
             "pixels, %. 'no lung' = the slice is cropped so tightly that no lung was "
             "found (counted as all-zero prediction). Expert vs pipeline labels of six "
             "slices from the worst to the best lesion Dice: "
             "docs/figures/medseg_montage.png")
    shown: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for jpeg in sorted((medseg_dir / "images").glob("*.jpg")):
        with Image.open(medseg_dir / "masks" / f"{jpeg.stem}.png") as im:
            truth = _medseg_upright(np.asarray(im))
        image = None
        try:
            image = medseg_image(jpeg)
            res = quantify(image, settings)
            pred = _arr(res.labelmap)[0]
            status = "ok"
        except LesionQuantError as exc:
            pred = np.zeros(truth.shape, np.uint8)
            status = "no lung" if "lung" in str(exc) else "error"
        if figures_dir is not None and image is not None:  # for the montage only
            shown[jpeg.stem] = (_arr(image)[0], truth, pred)
        t_les, p_les = truth > 0, np.isin(pred, LESION_LABELS)
        row: dict[str, Any] = {
            "slice": jpeg.stem, "status": status,
            "lesion_dice": dice(t_les, p_les),
            "ggo_dice": dice(truth == MEDSEG_GGO, pred == Label.GGO),
            "consolidation_dice": dice(truth == MEDSEG_CONSOLIDATION, pred == Label.CONSOLIDATION),
            "lesion_area_err_pct": 100.0 * (int(p_les.sum()) - int(t_les.sum()))
            / max(int(t_les.sum()), 1),
        }
        for name, t, p in (("lesion", t_les, p_les),
                           ("ggo", truth == MEDSEG_GGO, pred == Label.GGO),
                           ("consolidation", truth == MEDSEG_CONSOLIDATION,
                            pred == Label.CONSOLIDATION)):
            row[f"_{name}_true"] = int(t.sum())
            row[f"_{name}_pred"] = int(p.sum())
            row[f"_{name}_both"] = int((t & p).sum())
        table.rows.append(row)
    if figures_dir is not None and shown:
        ranked = sorted((r for r in table.rows if r["slice"] in shown),
                        key=lambda r: (r["lesion_dice"], r["slice"]))
        picks = [ranked[round(q * (len(ranked) - 1))] for q in np.linspace(0, 1, 6)]
        picks = list({r["slice"]: r for r in picks}.values())
        save_medseg_montage([(r, *shown[r["slice"]]) for r in picks],
                            Path(figures_dir) / "medseg_montage.png")
    return table


def medseg_headline(per_slice: Table) -> Table:
    """The real-data headline from the MedSeg per-slice table.

    Per class (lesion, GGO, consolidation): Dice averaged over the slices whose expert
    mask holds the class (as the published MedSeg results report it), pooled Dice (all
    slices' pixels together), and for the lesion class the median lesion-area error and
    the share of slices under-called by half or more.
    """
    rows = [r for r in per_slice.rows if "_lesion_true" in r]
    out = Table("MedSeg expert slices: headline",
                note="Real COVID-19 CT with expert GGO/consolidation labels (65 2D slices). "
                     "'per-slice Dice' averages over the slices that hold the class; "
                     "'pooled Dice' counts all slices' pixels together.")
    for name in ("lesion", "ggo", "consolidation"):
        holding = [r for r in rows if r[f"_{name}_true"] > 0]
        both = sum(r[f"_{name}_both"] for r in rows)
        total = sum(r[f"_{name}_true"] + r[f"_{name}_pred"] for r in rows)
        row: dict[str, Any] = {
            "class": name, "slices_with_class": len(holding),
            "per_slice_dice": float(np.mean([r[f"{name}_dice"] for r in holding]))
            if holding else float("nan"),
            "pooled_dice": 2.0 * both / total if total else float("nan"),
            "area_err_median_pct": float("nan"), "under_called_by_half": "",
        }
        if name == "lesion" and holding:
            err = np.array([100.0 * (r["_lesion_pred"] - r["_lesion_true"])
                            / r["_lesion_true"] for r in holding])
            row["area_err_median_pct"] = float(np.median(err))
            row["under_called_by_half"] = f"{int((err <= -50).sum())} / {len(err)}"
        out.rows.append(row)
    return out


def rib_cage_area_cm2(hu: np.ndarray, lung: np.ndarray,
                      spacing_xy_mm: tuple[float, float]) -> float:
    """Area of the bony rib cage of one axial slice, cm^2 (the lung-area bound's base).

    The convex hull of the bone (> 300 HU) within 50 mm of the lung mask: ribs, spine
    and sternum, not the arms beside the chest.
    """
    import scipy.ndimage as ndi

    from lesionquant._hull import slice_hulls as _hulls

    if not lung.any():
        return float("nan")
    sx, sy = spacing_xy_mm
    near = ndi.distance_transform_edt(~lung, sampling=(sy, sx)) <= 50.0
    hull = _hulls(((hu > 300) & near)[None])[0]
    return float(hull.sum()) * sx * sy / 100.0


def save_medseg_montage(
    items: list[tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]], path: Path
) -> Path:
    """Write expert (top) vs pipeline (bottom) labels of MedSeg slices side by side.

    Parameters
    ----------
    items : list of (row, hu, truth, pred)
        The table row (``slice``, ``lesion_dice``, ``lesion_area_err_pct``), the slice in
        assumed HU, the expert labels (1 GGO, 2 consolidation) and the pipeline label map
        (1-2 lung, 3 GGO, 4 consolidation), all 2D and upright.
    path : Path
        PNG to write (atomically).
    """
    fig, axes = _new_figure(2, len(items), (2.9 * len(items), 6.4))
    for col, (row, hu, truth, pred) in enumerate(items):
        _draw_labels(axes[0, col], hu, truth == MEDSEG_GGO, truth == MEDSEG_CONSOLIDATION)
        _draw_labels(axes[1, col], hu, pred == Label.GGO, pred == Label.CONSOLIDATION,
                     lung=pred > 0)
        axes[0, col].set_title(f"{row['slice']}: expert", fontsize=9)
        axes[1, col].set_title(f"lesionquant: Dice {row['lesion_dice']:.2f}, area "
                               f"{row['lesion_area_err_pct']:+.0f} %", fontsize=9)
    fig.suptitle("MedSeg slices: GGO yellow, consolidation magenta, lung mask cyan "
                 "(worst to best lesion Dice)", fontsize=10)
    return _save_figure(fig, path)


def _draw_labels(ax: Any, hu: np.ndarray, ggo: np.ndarray, cons: np.ndarray,
                 lung: np.ndarray | None = None) -> None:
    """A 2D slice in the lung window (W1500/L-600) with GGO (yellow) and consolidation
    (magenta) fills and, when given, the lung contour (cyan)."""
    ax.imshow(hu, cmap="gray", vmin=-1350, vmax=150, interpolation="nearest")
    rgba = np.zeros((*hu.shape, 4))
    rgba[ggo] = (1.0, 0.9, 0.0, 0.45)
    rgba[cons] = (1.0, 0.0, 1.0, 0.55)
    ax.imshow(rgba, interpolation="nearest")
    if lung is not None and lung.any():
        ax.contour(lung, [0.5], colors="c", linewidths=0.7)
    ax.set_axis_off()


def _new_figure(nrows: int, ncols: int, size_in: tuple[float, float]) -> tuple[Any, Any]:
    """A matplotlib Figure on an Agg canvas and its (nrows, ncols) axes, without pyplot:
    no global backend switch and no figure registry in the caller's process (as in
    :mod:`lesionquant.qa._overlays`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size_in)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _save_figure(fig: Any, path: Path) -> Path:
    """Write a figure from :func:`_new_figure` to ``path`` atomically (80 dpi)."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    return path


def tcia_table(tcia_dir: Path, figures_dir: Path | None, settings: Settings) -> Table:
    """Experiment 5: real COVID-19 slices (no labels): numbers and overlay PNGs."""
    from lesionquant.api import quantify
    from lesionquant.segment import to_lps

    table = Table(
        "Real COVID-19 CT slices (TCIA COVID-19-NY-SBU, no labels)",
        note="A048383 is the near-normal control. Two-sided checks: on the slices with "
             f"dense dependent consolidation ({', '.join(TCIA_CONSOLIDATED)}) the lung area "
             f"must be at least {LUNG_CAGE_MIN:.2f} x the rib-cage area (convex hull of the "
             "bone > 300 HU within 50 mm of the lung mask; near-normal slices measure "
             f"0.39-0.55); on the control the lesion % must stay <= "
             f"{CONTROL_MAX_LESION_PCT:g} %. qa_dense_outside_ml: dense tissue between the "
             "lung mask and the rib cage (the QA flag of every result). Overlays: "
             "docs/figures/pipeline_tcia_*.png")
    for dcm in sorted(tcia_dir.glob("*.dcm")):
        res = quantify(dcm, settings)
        img = to_lps(res.scan.image)[0]
        lab = _arr(to_lps(res.labelmap)[0])
        lung = (lab >= 1) & (lab <= 4)
        z = int(np.argmax(lung.sum(axis=(1, 2))))
        sx, sy = img.GetSpacing()[:2]
        cage = rib_cage_area_cm2(_arr(img)[z], lung[z], (sx, sy))
        lung_cm2 = float(lung[z].sum()) * sx * sy / 100.0
        check = ""
        if dcm.stem in TCIA_CONSOLIDATED:
            check = "pass" if lung_cm2 >= LUNG_CAGE_MIN * cage else "FAIL (lung area)"
        elif dcm.stem in TCIA_CONTROL:
            check = ("pass" if res["lesion_pct"] <= CONTROL_MAX_LESION_PCT
                     else "FAIL (false lesion)")
        table.rows.append({"slice": dcm.stem, "lung_ml": res["lung_ml"],
                           "lesion_pct": res["lesion_pct"], "ggo_pct": res["ggo_pct"],
                           "consolidation_pct": res["consolidation_pct"],
                           "lung_cm2": lung_cm2, "rib_cage_cm2": cage,
                           "lung_to_cage": lung_cm2 / cage if cage else float("nan"),
                           "qa_dense_outside_ml": res["qa_dense_outside_lung_ml"],
                           "check": check})
        if figures_dir is not None:
            save_overlay(res, figures_dir / f"pipeline_tcia_{dcm.stem}.png",
                         title=f"{dcm.stem}: lesion {res['lesion_pct']:.1f} % "
                               f"(GGO {res['ggo_pct']:.1f}, cons. "
                               f"{res['consolidation_pct']:.1f})")
    return table


def save_overlay(result: Any, path: Path, *, title: str = "") -> Path:
    """Write a lung-window (W1500/L-600) PNG of the middle lung slice with the lung
    contour (cyan), GGO (yellow) and consolidation (magenta) fills, atomically."""
    from lesionquant.segment import to_lps

    hu = _arr(to_lps(result.scan.image)[0])
    lab = _arr(to_lps(result.labelmap)[0])
    z = int(np.argmax((lab > 0).sum(axis=(1, 2))))
    fig, axes = _new_figure(1, 2, (10, 5.4))
    none = np.zeros(lab[z].shape, bool)
    _draw_labels(axes[0, 0], hu[z], none, none)
    _draw_labels(axes[0, 1], hu[z], lab[z] == Label.GGO, lab[z] == Label.CONSOLIDATION,
                 lung=lab[z] > 0)
    fig.suptitle(title, fontsize=10)
    return _save_figure(fig, path)


# ------------------------------------------------------------------------ driver


def evaluate(
    data_root: Path,
    *,
    settings: Settings | None = None,
    lung_method: str | None = None,
    lesion_method: str | None = None,
    figures_dir: Path | None = None,
    phantom_seeds: Iterable[int] = (0, 1, 2),
    phantom_burdens: Iterable[float] = (2.0, 10.0, 30.0),
    phantom_size_xyz: tuple[int, int, int] = (512, 512, 300),
    phantom_spacing_mm: tuple[float, float, float] = (0.7, 0.7, 1.0),
    thick_slice_mm: float | None = 5.0,
    insert_seeds: Iterable[int] = (0, 1),
    insert_burdens: Iterable[float] = (5.0, 20.0),
    progress: Callable[[str], None] | None = None,
    family_n: int = 4,
    family_size_xyz: tuple[int, int, int] = (320, 320, 150),
    family_spacing_mm: tuple[float, float, float] = (1.1, 1.1, 2.0),
    legacy_phantoms: bool = True,
) -> list[Table]:
    """Run every experiment and return its tables.

    Parameters
    ----------
    data_root : Path
        The shared data folder (holding ``chest/``).
    settings : Settings, optional
        Pipeline settings under test.
    lung_method, lesion_method : str, optional
        Method of the lung / lesion stage (``"classical"``, ``"model"``), replacing the
        settings' choice: any combination is evaluated through the same contract.
    figures_dir : Path, optional
        Where the TCIA overlay PNGs and the MedSeg montage go; ``None`` writes none.
    phantom_seeds, phantom_burdens, phantom_size_xyz, phantom_spacing_mm
        The phantom grid (burdens in % of lung).
    thick_slice_mm : float, optional
        The same phantoms again with slices this thick (same in-plane grid and scanned
        length), mm: thick-slice scans are common and read differently. ``None`` or a
        value not above the phantoms' slice thickness skips them.
    insert_seeds, insert_burdens
        Insertion seeds and burdens (% of lung).
    progress : callable, optional
        Called with the name of each experiment as it starts.
    family_n : int
        Cases per synthetic family (tuning, report, shifted); 0 skips them.
    family_size_xyz, family_spacing_mm
        Grid of the family phantoms (every second case with ``thick_slice_mm`` slices).
    legacy_phantoms : bool
        Also run the v1 phantoms (``phantom_*`` arguments).

    Returns
    -------
    list of Table
        Real data first (MedSeg headline, MedSeg per slice, TCIA, real CT without
        COVID-19), then the tuning, report and shifted families, the insertion into real
        CT and the legacy v1 phantoms.
    """
    s = settings or Settings()
    if lung_method is not None or lesion_method is not None:
        s = s.replace(lung_method=lung_method or s.lung_method,
                      lesion_method=lesion_method or s.lesion_method)
    chest = Path(data_root) / "chest"
    if not chest.is_dir():
        raise InvalidInputError("no chest/ folder in the data root", source=data_root)
    say = progress or (lambda msg: logger.info("%s", msg))
    tables = []
    say("MedSeg 2D (real, expert labels)")
    per_slice = medseg_table(chest / "medseg-covid-2d-ggo-consolidation", s, figures_dir)
    tables += [medseg_headline(per_slice), per_slice]
    say("TCIA COVID-19 slices (real)")
    tables.append(tcia_table(chest / "tcia-covid19-ny-sbu-axial-slices", figures_dir, s))
    say("real CT without COVID-19")
    tables.append(normal_table(chest, s))
    for family in ("tuning", "report", "shifted"):
        if family_n > 0:
            say(f"synthetic {family} family")
            tables.append(family_table(family, family_n, family_size_xyz, family_spacing_mm,
                                       s, thick_slice_mm))
    say("insertion into real CT")
    tables.append(insertion_table(chest, insert_seeds, insert_burdens, s))
    for name in ("repeatability", "repeatability_model", "repeatability_model_lungs"):
        if figures_dir is not None and (Path(figures_dir) / f"{name}.json").is_file():
            tables.append(repeatability_table(Path(figures_dir) / f"{name}.json"))
    if legacy_phantoms:
        say("legacy v1 phantoms")
        seeds, burdens = tuple(phantom_seeds), tuple(phantom_burdens)
        tables.append(phantom_table(seeds, burdens, phantom_size_xyz, phantom_spacing_mm, s))
        if thick_slice_mm and thick_slice_mm > phantom_spacing_mm[2]:
            say(f"legacy v1 phantoms with {thick_slice_mm:g} mm slices")
            nz = max(1, round(phantom_size_xyz[2] * phantom_spacing_mm[2] / thick_slice_mm))
            tables.append(phantom_table(seeds, burdens, (*phantom_size_xyz[:2], nz),
                                        (*phantom_spacing_mm[:2], float(thick_slice_mm)), s))
    return tables


_PREAMBLE = """\
Real data first. (1) The MedSeg 2D expert slices (8-bit JPEG mapped to HU per slice by its
own lung and soft-tissue peaks, `lesionquant/_jpeg_hu.py`; 0.7 mm pixels assumed; turned
upright; each slice a one-slice scan): the headline, then per slice. (2) The real COVID-19
slices of TCIA COVID-19-NY-SBU (no labels; two-sided checks; overlays in
`docs/figures/pipeline_tcia_*.png`). (3) The real chest CTs without COVID-19. Then the
synthetic numbers, an upper bound for real data: (4) the tuning, report and shifted
families of the v2 lesion model (`lesionquant.synth.family_cases`; every second case on
5 mm slices), (5) the v2 lesion model inserted into every real chest CT with lung
(`lesionquant.synth.insert_lesions`), (6) the legacy v1 phantoms (`make_phantom` without
`lesions`), on thin and thick slices. Code: `lesionquant/evaluate.py`.
`*_err_pp` is predicted minus true % of lung (percentage points); Dice of the masks;
`lung_ml_err_pct` the lung volume error in %; `cons_in_lung` the share of true
consolidation voxels inside the predicted lung mask.
"""


def targets(tables: list[Table]) -> Table:
    """The issue's acceptance targets, each with the measured worst case."""
    by = {t.title.split(" (")[0]: t for t in tables}
    out = Table("Targets")

    def add(name: str, target: str, value: float | None, ok: bool | None) -> None:
        out.rows.append({"target": name, "required": target,
                         "measured": float("nan") if value is None else value,
                         "holds": "n/a" if ok is None else ("yes" if ok else "NO")})

    # Each background separately: the phantoms (each grid), then every insertion host.
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    for t in tables:
        if t.title.startswith("Phantoms") and t.rows:  # legacy v1 phantoms
            grid = t.title.partition(" at ")[2].rstrip(")")
            groups.append((f"phantoms {grid}" if grid else "phantoms", t.rows))
    t = by.get("Lesions inserted into real chest CT")
    if t is not None:
        for host in dict.fromkeys(r["host"] for r in t.rows):
            groups.append((f"inserted into {host}",
                           [r for r in t.rows if r["host"] == host]))
    for label, rows in groups:
        err = max(abs(float(r["lesion_err_pp"])) for r in rows)
        dsc = min(float(r["lesion_dice"]) for r in rows)
        add(f"lesion % error, worst ({label})", "<= 1.0 pp", err, err <= 1.0)
        add(f"lesion Dice, worst ({label})", ">= 0.85", dsc, dsc >= 0.85)
        if label.startswith("phantoms"):
            lv = max(abs(float(r["lung_ml_err_pct"])) for r in rows)
            add(f"lung volume error, worst ({label})", "<= 2 %", lv, lv <= 2.0)
            ci = min(float(r["cons_in_lung"]) for r in rows)
            add(f"true consolidation inside the lung mask, worst ({label})", "~1", ci, None)
    t = by.get("Real COVID-19 CT slices")
    if t is not None:
        for r in t.rows:
            if r.get("check"):
                ok = r["check"] == "pass"
                if r["slice"] in TCIA_CONSOLIDATED:
                    add(f"lung area / rib cage ({r['slice']})", f">= {LUNG_CAGE_MIN:.2f}",
                        float(r["lung_to_cage"]), ok)
                else:
                    add(f"false lesion % ({r['slice']}, control)",
                        f"<= {CONTROL_MAX_LESION_PCT:g} %", float(r["lesion_pct"]), ok)
    t = by.get("Real chest CT without COVID-19")
    if t is not None:
        for r in t.rows:
            v = float(r["false_lesion_pct"])
            add(f"false lesion % ({r['scan']})", "<= 0.5 %", v, v <= 0.5)
            d = float(r["lung_dice_cip"])
            if np.isfinite(d):
                add("lung Dice vs CIP mask (COPD)", ">= 0.95", d, d >= 0.95)
    return out


def write_report(tables: list[Table], path: Path, *, command: str, header: str = "") -> Path:
    """Write the tables (with summaries) as markdown to ``path`` atomically."""
    parts = [header or "# Accuracy of the classical pipeline", "",
             f"Regenerate with: `{command}`", "", _PREAMBLE]
    for t in tables:
        parts.append(t.markdown())
        keys = [k for k in (t.rows[0] if t.rows else {})
                if k.endswith(("_err_pp", "_dice", "err_pct")) or k.startswith("false_")]
        summ = t.summary(keys)
        if summ:
            parts.append("Summary: " + ", ".join(f"{k} {v:.3f}" for k, v in summ.items()))
            parts.append("")
    parts.append(targets(tables).markdown())  # after the tables: real data comes first
    text = "\n".join(parts)
    return write_text_atomic(path, text)
