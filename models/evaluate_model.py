"""Model vs classical, side by side (the numbers of ``models/README.md``).

    python -m models.evaluate_model medseg    # cross-validated MedSeg table (fold runs)
    python -m models.evaluate_model synthetic # phantoms, insertion, healthy CT, TCIA slices
    python -m models.evaluate_model healthy --lesion-runs mo_fold0,mc_fold0  # false lesion
    python -m models.evaluate_model ensemble --prefixes mo_,mc_  # two lesion nets averaged
    python -m models.evaluate_model consbias --prefixes md_  # the learned class's bias

``medseg``: every MedSeg slice is scored by the fold model that did not train on it
(``models/runs/<prefix>fold<k>/ckpt.pt``; lesionnet-v4, a network pair: ``--prefix md_
--lung-prefix ''``, the lesions of the MedSeg-only run, the lungs of the v2 recipe's run)
and by the classical pipeline (``quantify`` on
:func:`models.data.medseg_image`: the slice mapped to HU by its own peaks, as
``lesionquant evaluate`` does; the same HU for both methods). Model rows: the lesion head
alone ("head") and inside the lung head's raw mask ("pipeline"), GGO/consolidation by the
learned class and by HU (consolidation >= -300 HU inside the lesion). Mean per-slice Dice
over the slices holding the class, and pooled Dice.

``synthetic``: the shipped weights (``quantify(method="model")``) against the classical
method on the ground-truth v2 report and shifted families (phantoms, and the same lesion
sets inserted into every real chest CT with lung), the real CTs without COVID-19, the
sample scans and the TCIA COVID-19 slices with their two-sided checks (overlays with
``--figures``); see :func:`synthetic`. ``report`` prints the acceptance tables from the
JSON. Results go to ``models/results/*.json`` and markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from lesionquant.segment.model import LesionNet
from lesionquant.segment.model._infer import predict_labels
from lesionquant.segment.model._net import FlipMean, NetEnsemble, NetWrapper
from lesionquant.segment.model._weights import DEFAULT_WEIGHTS
from models import data as D
from models.export import SHIPPED, shipped_lungs
from models.train import CONS_HU, dice

logger = logging.getLogger("models.evaluate_model")
RESULTS = D.REPO / "models" / "results"
CLASSES = ("lesion", "ggo", "cons")


def _load_run(run: Path) -> LesionNet:
    meta = json.loads((run / "meta.json").read_text())
    net = LesionNet(**meta["config"])
    net.load_state_dict(torch.load(run / "ckpt.pt", map_location="cpu",
                                   weights_only=True)["model"])
    return net.eval()


def _masks(truth: np.ndarray, pred_les: np.ndarray, hu: np.ndarray,
           lung: np.ndarray | None) -> dict[str, dict[str, np.ndarray]]:
    """Predicted masks per variant (learned / HU split, head / pipeline)."""
    out = {}
    for where in ("head", "pipeline") if lung is not None else ("head",):
        les = pred_les > 0
        if where == "pipeline":
            les = les & (lung > 0)
        cons_hu = les & (hu >= CONS_HU)
        out[f"model_{where}_learned"] = {"lesion": les, "ggo": les & (pred_les == 1),
                                         "cons": les & (pred_les == 2)}
        out[f"model_{where}_hu"] = {"lesion": les, "ggo": les & ~cons_hu, "cons": cons_hu}
    return out


def _truth(lesion: np.ndarray) -> dict[str, np.ndarray]:
    """The expert masks of a MedSeg label slice (1 GGO, 2 consolidation) per class."""
    return {"lesion": lesion > 0, "ggo": lesion == 1, "cons": lesion == 2}


def _scored(t: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> dict:
    """A row's entry for one variant: Dice and the counts pooled Dice needs, per class."""
    return {c: {"dice": dice(t[c], masks[c]), "inter": int((t[c] & masks[c]).sum()),
                "pred": int(masks[c].sum())} for c in CLASSES}


def _score(rows: list[dict], variants: list[str], fold_of: dict[str, int]) -> dict:
    """Per fold and overall: mean per-slice Dice over slices holding the class; pooled."""
    res: dict = {}
    for v in variants:
        res[v] = {}
        for f in [*sorted(set(fold_of.values())), "all"]:
            sel = [r for r in rows if f == "all" or fold_of[r["slice"]] == f]
            entry = {}
            for c in CLASSES:
                held = [r for r in sel if r["t"][c] > 0]
                entry[f"{c}_dice"] = float(np.mean([r[v][c]["dice"] for r in held]))
                inter = sum(r[v][c]["inter"] for r in sel)
                tot = sum(r["t"][c] + r[v][c]["pred"] for r in sel)
                entry[f"{c}_pooled"] = 2 * inter / tot if tot else float("nan")
                entry[f"n_{c}"] = len(held)
            res[v][str(f)] = entry
    return res


def _model_lungs_classical_lesions(image: sitk.Image, lung_head: np.ndarray) -> np.ndarray:
    """Label map (0-4) of a MedSeg slice ``image`` (:func:`models.data.medseg_image`) by
    the fold model's lung stage (its lung head ``lung_head`` (1, H, W) through the
    pipeline's post-processing) and the classical lesion stage: ``--lungs model``,
    cross-validated."""
    from lesionquant.errors import LesionQuantError
    from lesionquant.segment import segment_lesions
    from lesionquant.segment.model._stages import _lung_sides
    from lesionquant.settings import Settings

    # upright, identity direction: LPS index order
    sides = _lung_sides(lung_head, sitk.GetArrayViewFromImage(image),
                        image.GetSpacing()[::-1])
    lungs = sitk.GetImageFromArray(sides)
    lungs.CopyInformation(image)
    try:
        return sitk.GetArrayFromImage(
            segment_lesions(image, lungs, Settings(method="classical")))[0]
    except LesionQuantError:
        return np.zeros(sides.shape[1:], np.uint8)


def medseg(runs: Path, k: int = 5, prefix: str = "", lung_prefix: str | None = None,
           figure: Path | None = None) -> dict:
    """The cross-validated MedSeg table (see the module docstring); the fold runs are
    ``runs / f"{prefix}fold{k}"``. With ``lung_prefix`` the lungs ("pipeline" and
    "model_lungs" rows) come from the lung head of ``runs / f"{lung_prefix}fold{k}"`` (a
    network pair, as ``models.export --lesion-run``), the lesions from the first run.
    ``figure``: a PNG of one held-out slice a fold (the fold's median true lesion area),
    expert / this model / the ``lung_prefix`` runs' own lesion head / classical."""
    from lesionquant.api import quantify
    from lesionquant.errors import LesionQuantError
    from lesionquant.settings import Settings

    ids = D.medseg_ids()
    fold_of = {sid: f for f, block in enumerate(D.folds(ids, k)) for sid in block}
    slices = {s.name: s for s in D.load_medseg(ids)}
    shown: dict[str, dict[str, np.ndarray]] = {}
    for block in D.folds(ids, k):  # a typical slice of every fold, chosen by the truth
        area = sorted(block, key=lambda i: int((slices[i].lesion > 0).sum()))
        shown[area[len(area) // 2]] = {}
    rows = []
    for f in range(k):
        if not (runs / f"{prefix}fold{f}" / "val.json").exists():  # not (fully) trained
            logger.warning("fold %d: no finished run in %s, left out", f, runs)
            continue
        net = _load_run(runs / f"{prefix}fold{f}")
        lung_net = net if lung_prefix is None else _load_run(runs / f"{lung_prefix}fold{f}")
        for sid in [i for i in ids if fold_of[i] == f]:
            s = slices[sid]
            lung, les = predict_labels(net, s.hu[None], (s.mm, s.mm))
            if lung_net is not net:
                lung, _ = predict_labels(lung_net, s.hu[None], (s.mm, s.mm))
            truth = s.lesion
            t = _truth(truth)
            variants = _masks(truth, les[0], s.hu, lung[0])
            image = D.medseg_image(sid)
            try:
                res = quantify(image, Settings(method="classical"))
                cl = sitk.GetArrayFromImage(res.labelmap)[0]
            except LesionQuantError:
                cl = np.zeros(truth.shape, np.uint8)
            variants["classical"] = {"lesion": cl >= 3, "ggo": cl == 3, "cons": cl == 4}
            ml = _model_lungs_classical_lesions(image, lung)
            variants["model_lungs"] = {"lesion": ml >= 3, "ggo": ml == 3, "cons": ml == 4}
            if sid in shown:
                shown[sid] = {"expert": truth, "model": les[0],
                              "classical": np.where(cl >= 3, cl - 2, 0)}
                if lung_net is not net:
                    shown[sid]["other"] = predict_labels(lung_net, s.hu[None],
                                                         (s.mm, s.mm))[1][0]
            row = {"slice": sid, "fold": f, "t": {c: int(m.sum()) for c, m in t.items()}}
            for v, masks in variants.items():
                row[v] = _scored(t, masks)
            rows.append(row)
            logger.info("%s fold %d: model %.3f classical %.3f", sid, f,
                        row["model_head_learned"]["lesion"]["dice"],
                        row["classical"]["lesion"]["dice"])
    variants = [v for v in rows[0] if v.startswith(("model", "classical"))]  # + model_lungs
    fold_of = {r["slice"]: r["fold"] for r in rows}
    out = {"summary": _score(rows, variants, fold_of), "rows": rows,
           "folds": {str(f): D.folds(ids, k)[f] for f in range(k)}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out["runs"] = {"lesions": f"{prefix}fold<k>",
                   "lungs": f"{prefix if lung_prefix is None else lung_prefix}fold<k>"}
    (RESULTS / f"medseg_cv_{runs.name}{'_' + prefix.rstrip('_') if prefix else ''}.json"
     ).write_text(json.dumps(out, indent=1))
    if figure is not None:
        _medseg_figure(figure, slices, shown, rows, prefix, lung_prefix)
    return out


def _medseg_figure(path: Path, slices: dict, shown: dict, rows: list[dict], prefix: str,
                   lung_prefix: str | None) -> None:
    """Rows: the ``shown`` slices; columns: CT, expert, the fold models, classical (GGO
    yellow, consolidation magenta; lesion Dice in the titles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dice_of = {r["slice"]: r for r in rows}
    names = {"": "lesionnet-v2", "mo_": "lesionnet-v3 (MedSeg-only lesion net)",
             "md_": "lesionnet-v4",
             "p2_": "v2 + real negatives", "ssl_": "v2 + self-training"}
    cols = [("expert", "expert (MedSeg)", None),
            ("model", names.get(prefix, prefix), "model_head_learned"),
            ("other", names.get(lung_prefix or "", lung_prefix or ""), None),
            ("classical", "classical", "classical")]
    cols = [c for c in cols if all(c[0] in v for v in shown.values() if v)]
    ids = [i for i in shown if shown[i]]
    fig, axes = plt.subplots(len(ids), len(cols) + 1, figsize=(3.2 * (len(cols) + 1),
                                                                 3.3 * len(ids)), squeeze=False)
    colours = np.array([[0, 0, 0, 0], [1, 0.85, 0, 0.55], [1, 0, 1, 0.6]])
    for r, sid in enumerate(ids):
        hu = slices[sid].hu
        axes[r, 0].imshow(hu, cmap="gray", vmin=-1350, vmax=150)
        axes[r, 0].set_title(f"MedSeg {sid} (lung window)", fontsize=9)
        for c, (key, title, variant) in enumerate(cols, start=1):
            lab = shown[sid][key].astype(int)
            if key == "other":
                d = dice(slices[sid].lesion > 0, lab > 0)
            else:
                d = dice_of[sid][variant]["lesion"]["dice"] if variant else None
            axes[r, c].imshow(hu, cmap="gray", vmin=-1350, vmax=150)
            axes[r, c].imshow(colours[np.clip(lab, 0, 2)])
            axes[r, c].set_title(title + (f"\nlesion Dice {d:.2f}" if d is not None else ""),
                                 fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle("MedSeg expert slices, each scored by the fold model that did not train on "
                 "it; GGO yellow, consolidation magenta", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_small(fig, path, dpi=80)
    plt.close(fig)


def medseg_ensemble(runs: Path, prefixes: list[str], k: int = 5, flip: bool = False,
                    folds: list[int] | None = None) -> dict:
    """Lesion-head rows of each ``<prefix>fold<k>`` run and, with several prefixes, of
    their equal-weight ensemble (:class:`~lesionquant.segment.model._net.NetEnsemble`) on
    the same held-out MedSeg slices; with ``flip`` each of these also averaged over the
    left-right mirror (:class:`~lesionquant.segment.model._net.FlipMean`, ``<name>+flip``);
    ``folds``: only those folds (all ``k`` when None). Written to
    ``models/results/medseg_cv_<runs>_ens_<prefixes>[_flip].json``."""
    ids = D.medseg_ids()
    fold_of = {sid: f for f, block in enumerate(D.folds(ids, k)) for sid in block}
    slices = {s.name: s for s in D.load_medseg(ids)}
    rows = []
    for f in range(k) if folds is None else folds:
        if not all((runs / f"{p}fold{f}" / "val.json").exists() for p in prefixes):
            logger.warning("fold %d: not every run finished in %s, left out", f, runs)
            continue
        nets = {p.rstrip("_") or "v2": _load_run(runs / f"{p}fold{f}") for p in prefixes}
        if len(nets) > 1:
            nets["ensemble"] = NetEnsemble(list(nets.values())).eval()
        if flip:
            nets.update({f"{n}+flip": FlipMean(net).eval() for n, net in list(nets.items())})
        for sid in [i for i in ids if fold_of[i] == f]:
            s = slices[sid]
            t = _truth(s.lesion)
            row = {"slice": sid, "fold": f, "t": {c: int(m.sum()) for c, m in t.items()}}
            for name, net in nets.items():
                _, les = predict_labels(net, s.hu[None], (s.mm, s.mm), parts=("lesions",))
                for v, masks in _masks(s.lesion, les[0], s.hu, None).items():
                    row[f"{name}_{v}"] = _scored(t, masks)
            rows.append(row)
    variants = [v for v in rows[0] if v not in ("slice", "fold", "t")]
    fold_of = {r["slice"]: r["fold"] for r in rows}  # the folds scored
    out = {"summary": _score(rows, variants, fold_of), "rows": rows}
    tag = "_".join(p.rstrip("_") or "v2" for p in prefixes) + ("_flip" if flip else "")
    (RESULTS / f"medseg_cv_{runs.name}_ens_{tag}.json").write_text(json.dumps(out, indent=1))
    return out


#: The consolidation-bias grid of the nested cross-validation (models/README.md).
CONS_BIAS_GRID = tuple(np.round(np.arange(-1.0, 3.0001, 0.25), 2).tolist())


def _ggo_cons(summary: dict) -> float:
    """The objective of the bias choice: mean of the GGO and consolidation Dice."""
    return (summary["ggo_dice"] + summary["cons_dice"]) / 2


class _LastForward(NetWrapper):
    """``net`` whose forward gives its last output again for an equal input: scoring one
    slice at every bias of a grid runs the network once, not once a bias."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__(net)
        self._last: tuple[torch.Tensor, tuple] | None = None

    def forward(self, x: torch.Tensor) -> tuple:
        last = self._last
        if last is None or last[0].shape != x.shape or not torch.equal(last[0], x):
            self._last = last = (x.clone(), self.net(x))
        return last[1]


def _grid_rows(runs: Path, prefixes: list[str], folds: list[int], k: int,
               variants: dict[str, dict]) -> list[dict]:
    """Rows of the held-out MedSeg slices of each fold in ``folds``, scored (learned
    class, lesion head) once per variant: ``variants`` maps a name to the
    ``predict_labels`` options of that variant. The fold's network is that of
    ``<prefix>fold<f>`` (the :class:`~lesionquant.segment.model._net.NetEnsemble` of the
    ``prefixes`` when there are several), run once a slice (:class:`_LastForward`)."""
    ids = D.medseg_ids()
    fold_of = {sid: f for f, block in enumerate(D.folds(ids, k)) for sid in block}
    slices = {s.name: s for s in D.load_medseg(ids)}
    rows = []
    for f in folds:
        nets = [_load_run(runs / f"{p}fold{f}") for p in prefixes]
        net = _LastForward(nets[0] if len(nets) == 1 else NetEnsemble(nets)).eval()
        for sid in [i for i in ids if fold_of[i] == f]:
            s = slices[sid]
            t = _truth(s.lesion)
            row = {"slice": sid, "fold": f, "t": {c: int(m.sum()) for c, m in t.items()}}
            for name, opts in variants.items():
                _, les = predict_labels(net, s.hu[None], (s.mm, s.mm), parts=("lesions",),
                                        **opts)
                row[name] = _scored(t, _masks(s.lesion, les[0], s.hu, None)
                                    ["model_head_learned"])
            rows.append(row)
        logger.info("fold %d scored at %d variants", f, len(variants))
    return rows


def medseg_cons_bias(runs: Path, prefixes: list[str], k: int = 5,
                     grid: tuple[float, ...] = CONS_BIAS_GRID) -> dict:
    """The learned class with a consolidation-vs-GGO bias (``predict_labels(cons_bias=)``)
    on the held-out MedSeg slices of each fold's lesion network (the
    :class:`~lesionquant.segment.model._net.NetEnsemble` of the ``prefixes`` when there
    are several), every bias of ``grid``; then the nested choice: for fold k, the bias
    that maximises :func:`_ggo_cons` on the other folds' held-out slices, applied to fold
    k (variant ``nested``), and the bias the same rule picks on all folds (``chosen``).
    Written to ``models/results/medseg_cv_<runs>_consbias_<prefixes>.json``."""
    ids = D.medseg_ids()
    fold_of = {sid: f for f, block in enumerate(D.folds(ids, k)) for sid in block}
    rows = _grid_rows(runs, prefixes, list(range(k)), k,
                      {f"b={b:g}": {"cons_bias": b} for b in grid})
    variants = [f"b={b:g}" for b in grid]

    def best(sel_rows: list[dict]) -> float:
        sc = _score(sel_rows, variants, {r["slice"]: 0 for r in sel_rows})
        # the largest objective; ties to the bias nearest 0
        return max(grid, key=lambda b: (round(_ggo_cons(sc[f"b={b:g}"]["all"]), 9), -abs(b)))

    chosen = {f: best([r for r in rows if r["fold"] != f]) for f in range(k)}
    for r in rows:
        r["nested"] = r[f"b={chosen[r['fold']]:g}"]
    final = best(rows)
    summary = _score(rows, [*variants, "nested"], fold_of)
    out = {"prefixes": prefixes, "grid": list(grid), "nested_bias_per_fold": chosen,
           "chosen_bias_all_folds": final, "summary": summary, "rows": rows}
    tag = "_".join(p.rstrip("_") or "v2" for p in prefixes)
    (RESULTS / f"medseg_cv_{runs.name}_consbias_{tag}.json").write_text(
        json.dumps(out, indent=1))
    return out


#: The hysteresis grid of ``lesion_low`` (models/README.md: chosen on the tuning folds).
LESION_LOW_GRID = (0.45, 0.4, 0.35, 0.3, 0.25, 0.2)


def medseg_lesion_low(runs: Path, prefix: str, tune: list[int], report: list[int],
                      k: int = 5, grid: tuple[float, ...] = LESION_LOW_GRID) -> dict:
    """The lesion mask with hysteresis (``predict_labels(lesion_low=)``) on the held-out
    MedSeg slices of each ``<prefix>fold<f>`` network of the ``tune`` and ``report``
    folds, without it (``argmax``) and at every value of ``grid``; the value chosen on the
    ``tune`` folds (the highest mean lesion Dice, a tie to the higher value) is scored on
    the ``report`` folds (variant ``chosen``). Written to
    ``models/results/medseg_cv_<runs>_lesionlow_<prefix>.json``."""
    options = {"argmax": {}, **{f"low={t:g}": {"lesion_low": t} for t in grid}}
    variants = list(options)
    rows = _grid_rows(runs, [prefix], [*tune, *report], k, options)
    tuned = _score([r for r in rows if r["fold"] in tune], variants,
                   {r["slice"]: 0 for r in rows if r["fold"] in tune})
    chosen = max(grid, key=lambda t: (round(tuned[f"low={t:g}"]["all"]["lesion_dice"], 9), t))
    for r in rows:
        r["chosen"] = r[f"low={chosen:g}"]
    group = {r["slice"]: "tune" if r["fold"] in tune else "report" for r in rows}
    out = {"prefix": prefix, "grid": list(grid), "tune_folds": tune, "report_folds": report,
           "chosen": chosen, "summary": _score(rows, [*variants, "chosen"], group),
           "rows": rows}
    (RESULTS / f"medseg_cv_{runs.name}_lesionlow_{prefix.rstrip('_')}.json").write_text(
        json.dumps(out, indent=1))
    return out


def cons_bias_markdown(out: dict) -> str:
    """The bias 0, the nested choice and every bias: mean per-slice and pooled Dice."""
    s = out["summary"]
    lines = [f"nested bias per fold: {out['nested_bias_per_fold']}; chosen on all folds: "
             f"{out['chosen_bias_all_folds']:g}", "",
             "| variant | lesion | GGO | consolidation | (GGO + cons.) / 2 | GGO pooled | "
             "cons. pooled |", "|---|---|---|---|---|---|---|"]
    for v in ["b=0", "nested", *[k for k in s if k not in ("b=0", "nested")]]:
        e = s[v]["all"]
        lines.append(f"| {v} | {e['lesion_dice']:.3f} | {e['ggo_dice']:.3f} | "
                     f"{e['cons_dice']:.3f} | {_ggo_cons(e):.3f} | {e['ggo_pooled']:.3f} | "
                     f"{e['cons_pooled']:.3f} |")
    return "\n".join(lines)


def medseg_markdown(out: dict) -> str:
    """Tables: per fold (mean per-slice Dice) and overall (mean and pooled)."""
    s = out["summary"]
    lines = ["| method | fold | lesion | GGO | consolidation |", "|---|---|---|---|---|"]
    for v in s:
        for f, e in s[v].items():
            lines.append(f"| {v} | {f} | {e['lesion_dice']:.3f} | {e['ggo_dice']:.3f} | "
                         f"{e['cons_dice']:.3f} |")
    lines += ["", "| method | lesion mean | GGO mean | cons. mean | lesion pooled | "
              "GGO pooled | cons. pooled |", "|---|---|---|---|---|---|---|"]
    for v in s:
        e = s[v]["all"]
        lines.append(f"| {v} | {e['lesion_dice']:.3f} | {e['ggo_dice']:.3f} | "
                     f"{e['cons_dice']:.3f} | {e['lesion_pooled']:.3f} | "
                     f"{e['ggo_pooled']:.3f} | {e['cons_pooled']:.3f} |")
    return "\n".join(lines)


#: Methods measured by ``synthetic`` ("hybrid": classical lungs + model lesions).
METHODS: tuple[str, ...] = ("model", "classical")


def _both(image, truth: np.ndarray | None, voxel_ml: float, extra: dict) -> list[dict]:
    """Quantify ``image`` with both methods; rows with evaluate's comparison columns."""
    from lesionquant.api import quantify
    from lesionquant.evaluate import _compare

    rows = []
    for method in METHODS:
        res = quantify(image, _settings(method))
        row = {**extra, "method": method}
        if truth is not None:
            pred = sitk.GetArrayFromImage(res.labelmap)
            c = _compare(pred, truth, voxel_ml)
            row.update({k: c[k] for k in ("true_lesion_pct", "lesion_pct", "lesion_err_pp",
                                          "lesion_dice", "ggo_dice", "consolidation_dice",
                                          "lung_dice", "cons_in_lung", "lung_ml_err_pct")})
        else:
            row.update({k: res[k] for k in ("lung_ml", "lesion_pct", "ggo_pct",
                                            "consolidation_pct")})
        row["time_s"] = res.provenance.timings_s["total"]
        rows.append(row)
        logger.info("%s", row)
    return rows


def healthy_runs(runs: Path, names: list[str], lung_run: str = "final",
                 lesion_low: float | None = None) -> list[dict]:
    """False lesion on the real CTs without COVID-19 (``normal_table``, ``method="model"``)
    with the lungs of ``lung_run`` (``"shipped"``: the shipped weights' lung network,
    which is lesionnet-v2's ``final`` run) and the lesions of each run in ``names`` (fold
    runs too: none of these CTs is in any training), beside each run's held-out MedSeg
    Dice.
    A name joining runs with ``+`` (``md_final+md_s1_final``) is their
    :class:`~lesionquant.segment.model._net.NetEnsemble`; ``lesion_low``: the lesion
    mask's hysteresis (``predict_labels(lesion_low=)``)."""
    from lesionquant.evaluate import normal_table
    from lesionquant.segment.model import _stages, _weights
    from lesionquant.segment.model._net import NetPair
    from lesionquant.settings import Settings

    lungs = shipped_lungs()[0] if lung_run == SHIPPED else _load_run(runs / lung_run)
    real_load = _weights.load_model
    out = []
    try:
        for name in names:
            members = [_load_run(runs / n) for n in name.split("+")]
            lesions = members[0] if len(members) == 1 else NetEnsemble(members)
            pair = NetPair(lungs, lesions).eval()
            fake = _weights.LoadedModel(net=pair, name=f"run:{name}", sha256="0" * 64,
                                        device="cpu", lesion_low=lesion_low)
            _weights.load_model = lambda device="cpu", n=None, fake=fake: fake
            _stages._last.clear()
            t = normal_table(D.DATA, Settings(method="model", device="cpu"))
            val_path = runs / name / "val.json"
            val = json.loads(val_path.read_text())["summary"] if val_path.exists() else {}
            row = {"run": name, "lesion_low": lesion_low,
                   **{f"medseg_{k}": v for k, v in val.items()}}
            row.update({f"false_lesion_pct:{r['scan']}": r["false_lesion_pct"] for r in t.rows})
            out.append(row)
            logger.info("%s", row)
    finally:
        _weights.load_model = real_load
        _stages._last.clear()
    return out


def _family_hosts(n: int) -> list[tuple[str, object]]:
    """(family, case) pairs inserted into every host: ``n`` report and ``n`` shifted."""
    from lesionquant.synth import family_cases

    return [(fam, c) for fam in ("report", "shifted") for c in family_cases(fam, n)]


def synthetic(figures: Path | None, n_cases: int = 2) -> dict:
    """The acceptance of issue 21 beside the classical method, each case made once:

    * ``families``: phantoms of the v2 report and shifted families (``n_cases`` each,
      320 x 320 x 150 at 1.1 x 1.1 x 2 mm, every second case on 5 mm slices, as
      ``lesionquant evaluate``);
    * ``insertion``: the report and shifted families' lesions inserted into every real
      chest CT with lung (the 4.2 mm COPD scan and the single-slice hosts included);
    * ``healthy``: false lesion % on the real CTs without COVID-19 (the control's slices);
    * ``samples``: lesion % against the sample scans' manifest;
    * ``tcia``: the TCIA COVID-19 slices with their two-sided checks (overlays with
      ``figures``).
    """
    from lesionquant.evaluate import (
        COPD_MASK,
        REAL_CHEST,
        _host_lungs,
        family_table,
        normal_table,
        tcia_table,
    )
    from lesionquant.io import load_scan
    from lesionquant.scan import Scan
    from lesionquant.settings import Settings
    from lesionquant.synth import insert_lesions

    out: dict[str, list[dict]] = {"families": [], "insertion": [], "healthy": [],
                                  "samples": [], "tcia": []}
    for method in METHODS:
        st = _settings(method)
        for fam in ("report", "shifted"):
            t = family_table(fam, n_cases, (320, 320, 150), (1.1, 1.1, 2.0), st)
            out["families"] += [{"family": fam, "method": method, **r} for r in t.rows]
    classical = Settings(method="classical")
    for rel in REAL_CHEST[:4]:
        scan = load_scan(D.DATA / rel)
        mask = D.DATA / COPD_MASK if rel.startswith("cip-copd-chest-ct-64") else None
        lungs = _host_lungs(scan.image, mask, classical)
        for fam, case in _family_hosts(n_cases):
            ins = insert_lesions(scan.image, lungs, seed=case.seed, lesions=case.lesions)
            vox = float(np.prod(ins.image.GetSpacing())) / 1000
            out["insertion"] += _both(
                Scan(image=ins.image, source=str(rel)), sitk.GetArrayFromImage(ins.labels),
                vox, {"host": rel.split("/")[0], "family": fam, "seed": case.seed,
                      "host_seen_in_training": rel in D.TRAIN_HOSTS})
    for method in METHODS:
        t = normal_table(D.DATA, _settings(method))
        out["healthy"] += [{"method": method, **r} for r in t.rows]
        fig = figures / method if figures is not None else None
        t = tcia_table(D.DATA / "tcia-covid19-ny-sbu-axial-slices", fig, _settings(method))
        out["tcia"] += [{"method": method, **r} for r in t.rows]
    if figures is not None:
        from lesionquant.evaluate import TCIA_CONSOLIDATED, TCIA_CONTROL

        for name in (*TCIA_CONSOLIDATED, TCIA_CONTROL[0]):
            stack_methods(figures, name, METHODS)
    man = json.loads((D.REPO / "sample_scans" / "manifest.json").read_text())
    for case in man["cases"]:
        rows = _both(D.REPO / "sample_scans" / case["dicom"], None, 0.0,
                     {"case": case["case"], "true_lesion_pct": case["lesion_pct"]})
        for r in rows:
            r["lesion_err_pp"] = r["lesion_pct"] - case["lesion_pct"]
        out["samples"] += rows
    RESULTS.mkdir(parents=True, exist_ok=True)
    # both methods (and any combination beside them): the base file; fewer: a file whose
    # rows replace those methods' rows of the base file in ``report``
    name = ("synthetic" if {"model", "classical"} <= set(METHODS)
            else "synthetic_" + "_".join(METHODS))
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1, default=str))
    for name, rows in out.items():
        print(f"\n### {name}\n\n{_table(rows)}", flush=True)
    return out


#: Panel titles of the overlays stacked by :func:`stack_methods`.
METHOD_TITLES = {
    "classical": "classical method",
    "model": f"learned model ({DEFAULT_WEIGHTS}: v2 lungs, MedSeg-trained lesions)",
    "model_lungs": "model lungs + classical HU-band lesions (--lungs model)",
    "hybrid": "classical lungs + model lesions (--lesions model)",
}


def stack_methods(figures: Path, name: str, methods: tuple[str, ...]) -> Path:
    """The overlays ``figures/<method>/pipeline_tcia_<name>.png`` of ``methods``, one
    above the other with the method named (in the order of :data:`METHOD_TITLES`), as
    ``figures/tcia_<name>_methods.png``."""
    order = list(METHOD_TITLES)
    methods = tuple(sorted(methods, key=lambda m: order.index(m) if m in order else 99))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [plt.imread(figures / m / f"pipeline_tcia_{name}.png") for m in methods]
    h = sum(p.shape[0] / p.shape[1] * 8 for p in panels) + 0.45 * len(panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, h), squeeze=False)
    for ax, m, img in zip(axes[:, 0], methods, panels, strict=True):
        ax.imshow(img)
        ax.set_axis_off()
        ax.set_title(METHOD_TITLES.get(m, m), loc="left", fontsize=13, fontweight="bold")
    fig.tight_layout()
    out = figures / f"tcia_{name}_methods.png"
    _save_small(fig, out, dpi=100)
    plt.close(fig)
    return out


def _save_small(fig, path: Path, dpi: int) -> None:
    """``fig`` as a 256-colour PNG (a third of the bytes of the RGBA one; the overlays use
    a handful of colours)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    buf.seek(0)
    with Image.open(buf) as im:
        im.convert("RGB").quantize(256).save(path, optimize=True)


def _settings(method: str):
    from lesionquant.settings import Settings

    if method == "hybrid":
        return Settings(lung_method="classical", lesion_method="model", device="cpu")
    if method == "model_lungs":  # the model's lungs, the classical HU-band lesions
        return Settings(lung_method="model", lesion_method="classical", device="cpu")
    return Settings(method=method, device="cpu")


def _agg(rows: list[dict], key: str, fn) -> float:
    vals = [float(r[key]) for r in rows if r.get(key) is not None]
    return float(fn(vals)) if vals else float("nan")


def acceptance_markdown(synth: dict) -> str:
    """The issue-21 acceptance rows (model beside classical) from :func:`synthetic`'s
    output (``synth``: its JSON, or the merged JSONs of one run per method)."""
    methods = sorted({r["method"] for rows in synth.values() for r in rows})
    lines = ["| experiment | group | method | n | abs lesion err pp mean / worst | lesion Dice "
             "mean / worst | lung Dice mean / worst | true cons. in lung mask mean / worst |",
             "|---|---|---|---|---|---|---|---|"]
    for exp, gkey in (("families", "family"), ("insertion", "host")):
        groups = sorted({r[gkey] for r in synth.get(exp, [])})
        for g in groups:
            for m in methods:
                rows = [r for r in synth[exp] if r[gkey] == g and r["method"] == m]
                if not rows:
                    continue
                err = [abs(float(r["lesion_err_pp"])) for r in rows]
                lines.append(
                    f"| {exp} | {g} | {m} | {len(rows)} | {np.mean(err):.2f} / {max(err):.2f} "
                    f"| {_agg(rows, 'lesion_dice', np.mean):.3f} / "
                    f"{_agg(rows, 'lesion_dice', np.min):.3f} "
                    f"| {_agg(rows, 'lung_dice', np.mean):.3f} / "
                    f"{_agg(rows, 'lung_dice', np.min):.3f} "
                    f"| {_agg(rows, 'cons_in_lung', np.mean):.3f} / "
                    f"{_agg(rows, 'cons_in_lung', np.min):.3f} |")
    lines += ["", "| real CT without COVID-19 | " + " | ".join(methods) + " |",
              "|---|" + "---|" * len(methods)]
    for scan in dict.fromkeys(r["scan"] for r in synth.get("healthy", [])):
        vals = {r["method"]: r["false_lesion_pct"] for r in synth["healthy"]
                if r["scan"] == scan}
        lines.append(f"| {scan} | " + " | ".join(f"{vals.get(m, float('nan')):.2f} %"
                                                for m in methods) + " |")
    lines += ["", "| sample scan | true % | " + " | ".join(f"{m} % (err pp)" for m in methods)
              + " |", "|---|---|" + "---|" * len(methods)]
    for case in dict.fromkeys(r["case"] for r in synth.get("samples", [])):
        rows = {r["method"]: r for r in synth["samples"] if r["case"] == case}
        first = next(iter(rows.values()))
        lines.append(f"| {case} | {first['true_lesion_pct']:.2f} | " + " | ".join(
            f"{rows[m]['lesion_pct']:.2f} ({rows[m]['lesion_err_pp']:+.2f})" if m in rows
            else "" for m in methods) + " |")
    lines += ["", "| TCIA slice | " + " | ".join(
        f"{m} lung mL / lesion % / cons. % / lung:cage / check" for m in methods) + " |",
        "|---|" + "---|" * len(methods)]
    for sl in dict.fromkeys(r["slice"] for r in synth.get("tcia", [])):
        rows = {r["method"]: r for r in synth["tcia"] if r["slice"] == sl}
        lines.append(f"| {sl} | " + " | ".join(
            f"{rows[m]['lung_ml']:.1f} / {rows[m]['lesion_pct']:.1f} / "
            f"{rows[m]['consolidation_pct']:.1f} / {rows[m]['lung_to_cage']:.2f} / "
            f"{rows[m]['check'] or '-'}" if m in rows else "" for m in methods) + " |")
    return "\n".join(lines)


def _table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    keys = list(rows[0])

    def fmt(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    return "\n".join(["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
                     + ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["medseg", "synthetic", "report", "healthy", "ensemble",
                                    "consbias", "lesionlow"],
                   help="report: the acceptance tables from models/results/synthetic*.json; "
                   "healthy: false lesion of --lesion-runs with the final lung network; "
                   "ensemble: the lesion heads of --prefixes and their mean, per fold; "
                   "consbias: the learned class's consolidation bias, nested CV over the "
                   "folds of --prefixes (several: their ensemble); lesionlow: the "
                   "lesion hysteresis chosen on --tune folds, scored on --folds")
    p.add_argument("--prefixes", default="mo_,mc_",
                   help="ensemble: comma-separated fold-run prefixes")
    p.add_argument("--lesion-runs", default="",
                   help="healthy: comma-separated run names, e.g. mo_fold0,mc_fold0; "
                   "a+b: the ensemble of runs a and b")
    p.add_argument("--lung-run", default="final",
                   help="healthy: the run whose lung head gives the lungs; shipped: the "
                   "shipped weights' lung network (the same network as runs/final)")
    p.add_argument("--methods", default="model,classical",
                   help="synthetic: comma-separated, of model, classical, hybrid "
                   "(classical lungs, model lesions), model_lungs (model lungs, classical "
                   "lesions)")
    p.add_argument("--runs", type=Path, default=D.REPO / "models" / "runs")
    p.add_argument("--prefix", default="",
                   help="medseg: fold runs are <runs>/<prefix>fold<k> (p2_: second phase)")
    p.add_argument("--lung-prefix", default=None,
                   help="medseg: lungs from <runs>/<lung-prefix>fold<k> (a network pair; "
                   "lesionnet-v4: --prefix md_ --lung-prefix '')")
    p.add_argument("--figures", type=Path, default=None,
                   help="synthetic: overlays folder; medseg: the PNG of one slice a fold")
    p.add_argument("--cases", type=int, default=2,
                   help="synthetic: report and shifted cases each (phantoms, per host)")
    p.add_argument("--flip", action="store_true",
                   help="ensemble: each network also averaged over the left-right mirror")
    p.add_argument("--folds", default="",
                   help="ensemble: comma-separated folds (default: all); lesionlow: the "
                   "report folds")
    p.add_argument("--tune", default="0,2", help="lesionlow: the tuning folds")
    p.add_argument("--lesion-low", type=float, default=None,
                   help="healthy: the lesion mask's hysteresis threshold")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(a.threads)
    if a.what == "healthy":
        rows = healthy_runs(a.runs, [n for n in a.lesion_runs.split(",") if n],
                            a.lung_run, a.lesion_low)
        print(_table(rows))
    elif a.what == "consbias":
        print(cons_bias_markdown(medseg_cons_bias(a.runs, a.prefixes.split(","))))
    elif a.what == "lesionlow":
        out = medseg_lesion_low(a.runs, a.prefix, [int(f) for f in a.tune.split(",")],
                                [int(f) for f in a.folds.split(",") if f])
        print(f"chosen lesion_low {out['chosen']:g} on folds {out['tune_folds']}")
        print(medseg_markdown(out))
    elif a.what == "ensemble":
        folds = [int(f) for f in a.folds.split(",") if f] or None
        print(medseg_markdown(medseg_ensemble(a.runs, a.prefixes.split(","), flip=a.flip,
                                              folds=folds)))
    elif a.what == "medseg":
        print(medseg_markdown(medseg(a.runs, prefix=a.prefix, lung_prefix=a.lung_prefix,
                                     figure=a.figures)))
    elif a.what == "report":
        # synthetic.json holds both methods; a synthetic_<methods>.json (methods measured
        # again, e.g. new weights or lung stage) replaces those methods' rows. By name,
        # not by file time: a fresh clone's files all have the checkout's time.
        merged: dict[str, list[dict]] = {}
        files = sorted(RESULTS.glob("synthetic*.json"),
                       key=lambda f: (f.name != "synthetic.json", f.name))
        for f in files:
            part = json.loads(f.read_text())
            again = {r["method"] for rows in part.values() for r in rows}
            for k, rows in part.items():
                merged[k] = [r for r in merged.get(k, []) if r["method"] not in again] + rows
        print(acceptance_markdown(merged))
    else:
        global METHODS
        METHODS = tuple(a.methods.split(","))
        synthetic(a.figures, a.cases)


if __name__ == "__main__":
    main()
