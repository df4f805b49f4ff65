"""Train the lesionquant segmentation network (one command, seeded, resumable).

    python -m models.train --run models/runs/fold0 --fold 0 --steps 300
    python -m models.train --run models/runs/final --fold -1 --steps 600   # all 65 slices

Each step draws ``--medseg`` MedSeg expert slices (fold ``--fold`` of 5 held out; ``-1``
holds none out) and ``--synth`` synthetic slices (:mod:`models.data`), warps them
(rotation +-15 degrees, scale +-15 %, left-right flip, random crop of ``--crop`` pixels of
the network's ``--spacing``, 1.5 mm by default), changes the JPEG-to-HU window of the
MedSeg slices (level +-100 HU, width +-20 %), turns half the synthetic slices into 8-bit
windowed images, and adds noise and blur or sharpening. Loss: cross-entropy + soft Dice on
both heads (``--dice``: the lesion head's over the batch or per slice); MedSeg slices have
no lung labels, there lesion pixels only count as "lung, either side".

The random draws of step ``i`` come from ``numpy.random.default_rng([seed, i])``, so a run
stopped and resumed from its checkpoint (``<run>/ckpt.pt``, written every
``--ckpt-every`` steps and at the end) continues exactly as an uninterrupted one. The log
(``<run>/log.jsonl``) holds the loss of every step and the held-out Dice every
``--val-every`` steps; ``<run>/val.json`` the final per-slice Dice of the held-out fold.

``--device auto`` (the default) trains on the first CUDA device when torch sees one, in
bfloat16 autocast, else on the CPU; ``cpu`` / ``cuda[:N]`` explicitly (an unavailable
CUDA device is a :class:`~lesionquant.segment.DeviceError`). The batches are drawn on the
CPU either way, so a GPU run draws the same slices as a CPU run; only the CPU is
bit-for-bit reproducible (GPU kernels are not), on one machine (across machines the CPU
kernels and library versions differ; ``meta.json`` records them), and a checkpoint
resumes on either.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from lesionquant._box import bbox
from lesionquant.segment import resolve_device
from lesionquant.segment.model import SPACING_MM, LesionNet, normalise_hu
from lesionquant.segment.model._infer import predict_labels
from models import data as D

logger = logging.getLogger("models.train")

#: Level (HU) the window augmentation scales about (the lung window's, L-350).
L0 = -350.0
#: HU at or above which a lesion pixel is consolidation in the HU-band split.
CONS_HU = -300.0


def _warp(s: D.Slice, rng: np.random.Generator, crop: int,
          net_mm: float = SPACING_MM) -> tuple[np.ndarray, ...]:
    """Random rotation/scale/flip/crop of one slice to ``crop`` x ``crop`` pixels of
    ``net_mm`` mm."""
    h, w = s.hu.shape
    ang = np.deg2rad(rng.uniform(-15, 15))
    scale = rng.uniform(0.85, 1.15)
    step = net_mm * scale / s.mm  # input pixels per output pixel
    if s.kind in ("medseg", "unlabelled"):  # no lung labels: centre on the lesions
        lab = ((s.lesion == 1) | (s.lesion == 2)).astype(np.uint8)
    else:
        lab = s.lung
    pts = np.argwhere(lab > 0)
    if len(pts) and rng.random() < 0.8:
        cy, cx = pts[rng.integers(len(pts))]
    else:
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    half = crop * step / 2
    cy = float(np.clip(cy, min(half, h / 2), max(h - half, h / 2)))
    cx = float(np.clip(cx, min(half, w / 2), max(w - half, w / 2)))
    o = (np.arange(crop) - (crop - 1) / 2) * step
    oy, ox = np.meshgrid(o, o, indexing="ij")
    c, sn = math.cos(ang), math.sin(ang)
    py = cy + c * oy - sn * ox
    px = cx + sn * oy + c * ox
    flip = rng.random() < 0.5
    if flip:
        px = px[:, ::-1]
    coords = np.stack([py, px])
    valid = (py >= -0.5) & (py <= h - 0.5) & (px >= -0.5) & (px <= w - 0.5)
    hu = ndi.map_coordinates(s.hu, coords, order=1, mode="nearest")
    hu = np.where(valid, hu, -1024.0).astype(np.float32)
    lung = ndi.map_coordinates(s.lung, coords, order=0, mode="nearest")
    lesion = ndi.map_coordinates(s.lesion, coords, order=0, mode="nearest")
    if flip:
        lung = np.where(lung == 1, 2, np.where(lung == 2, 1, lung))
    lung = np.where(valid, lung, D.UNKNOWN).astype(np.uint8)
    lesion = np.where(valid, lesion, D.UNKNOWN).astype(np.uint8)
    return hu, lung, lesion


def _intensity(hu: np.ndarray, kind: str, rng: np.random.Generator,
               coarse: float = 0.0) -> np.ndarray:
    """Window, 8-bit, noise and kernel augmentation, HU in and out; with probability
    ``coarse`` the slice is first made coarse (pixels 1.5-3 times the network's: 2.25-4.5
    mm at 1.5 mm, as a downsampled scan's) and resampled back."""
    if coarse > 0 and rng.random() < coarse:
        f = rng.uniform(1.5, 3.0)
        small = ndi.zoom(hu, 1 / f, order=1, mode="nearest")
        hu = ndi.zoom(small, np.array(hu.shape) / np.array(small.shape), order=1,
                      mode="nearest")
    if kind in ("medseg", "unlabelled"):  # the peak mapping is a guess: level +-100 HU,
        # width +-20 %
        hu = (hu - L0) * rng.uniform(0.8, 1.2) + L0 + rng.uniform(-100, 100)
    elif rng.random() < 0.5:  # an 8-bit lung-window image, read back with a window error
        w = rng.uniform(1200, 2800)
        lvl = rng.uniform(-500, -250)
        g = np.round(np.clip((hu - lvl + w / 2) / w, 0, 1) * 255)
        hu = (g / 255 * w + lvl - w / 2 - L0) * rng.uniform(0.9, 1.1) + L0 + rng.uniform(-50, 50)
    if rng.random() < 0.3:
        sig = rng.uniform(0.4, 1.0)
        blur = ndi.gaussian_filter(hu, sig)
        hu = blur if rng.random() < 0.5 else hu + rng.uniform(0.3, 1.0) * (hu - blur)
    if rng.random() < 0.5:
        hu = hu + rng.normal(0, rng.uniform(5, 30), hu.shape)
    return hu.astype(np.float32)


def _band_geometry(hu: np.ndarray, lesion: np.ndarray,
                   mm: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Where the dependent-density band of :func:`_dependent_density` goes on an upright
    slice: ``(d, w)``, each lung pixel's distance to the lung's edge (mm, float64) and how
    far it lies in the posterior half of its lung (0 at mid-height, 1 at
    the lowest row; 0 outside the lungs); ``None`` when the slice holds no lung. It
    depends on the slice alone, so training computes it once a slice. Lung: pixels below
    -500 HU and the labelled lesions, holes filled, parts of at least 1 % of the slice
    that are not outside air (mean >= -950 HU)."""
    lung = ndi.binary_fill_holes(ndi.binary_closing((hu < -500) | ((lesion > 0)
                                                                  & (lesion != D.UNKNOWN)),
                                                    iterations=2))
    lab, n = ndi.label(lung)
    if n == 0:
        return None
    idx = np.arange(1, n + 1)
    area = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    mean = ndi.mean(hu, lab, idx)
    keep = idx[(area >= 0.01 * hu.size) & (mean >= -950)]
    if not len(keep):
        return None
    rows = np.broadcast_to(np.arange(hu.shape[0], dtype=np.float32)[:, None], hu.shape)
    top = ndi.minimum(rows, lab, keep)
    bottom = ndi.maximum(rows, lab, keep)
    mid = np.zeros(n + 1, np.float32)
    span = np.ones(n + 1, np.float32)
    mid[keep] = (np.asarray(top) + np.asarray(bottom)) / 2
    span[keep] = np.maximum((np.asarray(bottom) - mid[keep]), 1.0)
    inside = np.isin(lab, keep)
    w = np.clip((rows - mid[lab]) / span[lab], 0, 1) * inside
    return ndi.distance_transform_edt(inside) * mm, w


def _dependent_density(hu: np.ndarray, lesion: np.ndarray, mm: float,
                       rng: np.random.Generator,
                       geometry: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Add a gravity-dependent density band to the lungs of an upright slice (rows anterior
    to posterior), HU in and out, labels unchanged (a negative: "dependent density is not
    lesion").

    The band is what supine healthy lungs show along the posterior pleura (less aerated
    dependent lung, gone when the patient lies prone): ``A * exp(-d / L) * w`` HU added to
    every lung pixel (``d``, ``w``: :func:`_band_geometry`, or ``geometry`` when given),
    ``A`` 100-400 HU and ``L`` 3-15 mm drawn per slice (normal lung at about -850 HU
    reaches about -450 to -750 HU at the pleura). Vessels and lesions keep their contrast
    (the band is added, not blended).
    """
    if geometry is None:
        geometry = _band_geometry(hu, lesion, mm)
        if geometry is None:
            return hu
    amp, length = rng.uniform(100, 400), rng.uniform(3, 15)
    d_mm, w = geometry
    return (hu + amp * np.exp(-d_mm / length) * w).astype(np.float32)


def _dense_consolidation(hu: np.ndarray, lesion: np.ndarray, mm: float,
                         rng: np.random.Generator,
                         geometry: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """Paint one homogeneous consolidation at the lung's edge of an upright slice, HU and
    labels out (a positive: "soft-tissue-dense lung at the pleura or the mediastinum is
    consolidation").

    A lobulated blob (a disc of radius 10-35 mm whose edge is moved by smooth noise) is
    centred on a lung pixel within 3 mm of the lung's edge anywhere around the lung
    (``geometry``: :func:`_band_geometry`'s distance map), kept inside the lung, filled
    with -40 to +60 HU and a smooth texture of 5-20 HU (no air bronchograms: the airless,
    homogeneous consolidation the synthetic ground truth draws and the MedSeg-only network
    misses, ``bench/probe_lesion_recall_by_hu.py``), blended over one pixel inside the
    lung, and labelled consolidation. A slice without lung edge pixels is returned as it is.
    """
    d_mm, _ = geometry
    lung = d_mm > 0
    edge = np.flatnonzero((lung & (d_mm <= 3.0)).ravel())
    if not len(edge):
        return hu, lesion
    cy, cx = np.unravel_index(edge[rng.integers(len(edge))], hu.shape)
    radius_px = rng.uniform(10, 35) / mm
    yy, xx = np.ogrid[:hu.shape[0], :hu.shape[1]]
    r = np.hypot(yy - cy, xx - cx) / radius_px
    wobble = ndi.gaussian_filter(rng.standard_normal(hu.shape).astype(np.float32),
                                 max(1.0, radius_px / 3))
    wobble /= max(float(np.abs(wobble).max()), 1e-6)
    blob = (r + 0.35 * wobble < 1.0) & lung
    if not blob.any():
        return hu, lesion
    texture = ndi.gaussian_filter(rng.standard_normal(hu.shape).astype(np.float32), 2.0)
    texture *= rng.uniform(5, 20) / max(float(texture.std()), 1e-6)
    fill = rng.uniform(-40, 60) + texture
    alpha = ndi.gaussian_filter(blob.astype(np.float32), 0.7) * lung  # the lung's only
    out_hu = (hu * (1 - alpha) + fill * alpha).astype(np.float32)
    out_les = lesion.copy()
    out_les[blob] = 2
    return out_hu, out_les


def _paste_lesions(hu: np.ndarray, lesion: np.ndarray, geometry: tuple[np.ndarray, np.ndarray],
                   donor: D.Slice, donor_geometry: tuple[np.ndarray, np.ndarray],
                   mirror: bool) -> tuple[np.ndarray, np.ndarray]:
    """Paste the expert-labelled lesions of ``donor`` into the lungs of an upright slice,
    HU and labels out (copy-paste augmentation: real lesions, real texture, other lungs).

    The donor (mirrored left-right when ``mirror``) is mapped onto the slice by its lungs'
    box onto the slice's lungs' box (each slice's :func:`_band_geometry` lungs; rows and
    columns scaled apart), its HU linearly and its labels
    by nearest neighbour; its lesion pixels that land in the slice's lungs replace the
    slice's HU, blended over about one pixel at their edge (inside the lungs only), and
    take the donor's class (1 GGO, 2 consolidation). The slice's own lesions elsewhere stay.
    """
    d_hu, d_les, d_lung = donor.hu, donor.lesion, donor_geometry[0] > 0
    if mirror:
        d_hu, d_les, d_lung = d_hu[:, ::-1], d_les[:, ::-1], d_lung[:, ::-1]
    rows, cols = bbox((geometry[0] > 0)[None], (0, 0, 0))[1:]
    d_rows, d_cols = bbox(d_lung[None], (0, 0, 0))[1:]
    yy, xx = np.mgrid[rows, cols].astype(np.float32)
    coords = np.stack(
        [d_rows.start + (yy - rows.start + 0.5) * (d_rows.stop - d_rows.start)
         / (rows.stop - rows.start) - 0.5,
         d_cols.start + (xx - cols.start + 0.5) * (d_cols.stop - d_cols.start)
         / (cols.stop - cols.start) - 0.5])
    m_les = ndi.map_coordinates(d_les, coords, order=0, mode="nearest")
    lung = geometry[0][rows, cols] > 0
    paste = ((m_les == 1) | (m_les == 2)) & lung
    if not paste.any():
        return hu, lesion
    m_hu = ndi.map_coordinates(np.ascontiguousarray(d_hu, dtype=np.float32), coords,
                               order=1, mode="nearest")
    alpha = np.where(paste, 1.0, ndi.gaussian_filter(paste.astype(np.float32), 0.7) * lung)
    out_hu = hu.astype(np.float32, copy=True)
    out_les = lesion.copy()
    out_hu[rows, cols] = hu[rows, cols] * (1 - alpha) + m_hu * alpha
    out_les[rows, cols] = np.where(paste, m_les, lesion[rows, cols])
    return out_hu, out_les


def make_batch(medseg: list[D.Slice], synth: list[D.Slice], n_med: int, n_syn: int,
               crop: int, rng: np.random.Generator,
               extra: tuple[tuple[list[D.Slice], int], ...] = (),
               coarse: float = 0.0, net_mm: float = SPACING_MM,
               dependent: float = 0.0,
               bands: dict[str, tuple | None] | None = None,
               dense: float = 0.0, paste: float = 0.0) -> tuple[torch.Tensor, ...]:
    """One augmented batch: input (N,1,crop,crop), lung and lesion targets (N,crop,crop),
    pixels of ``net_mm`` mm.

    ``extra``: more (slices, number per batch) sources (real lesion-free CT, pseudo-labelled
    slices); ``coarse`` is the probability of the coarse-pixel augmentation of
    :func:`_intensity`, ``dependent`` that of the dependent-density band on a MedSeg slice
    (:func:`_dependent_density`; ``bands``: each MedSeg slice's :func:`_band_geometry` by
    name, computed here when missing and kept there), ``dense`` that of a painted homogeneous
    consolidation on a MedSeg slice (:func:`_dense_consolidation`, after the band),
    ``paste`` that of another MedSeg slice's lesions pasted into a MedSeg slice
    (:func:`_paste_lesions`, first; the donor drawn from ``medseg``, so from the fold's
    training slices only). With none, the random draws are those of the first phase."""
    items = [medseg[i] for i in rng.integers(len(medseg), size=n_med)] if medseg else []
    if synth:
        items += [synth[i] for i in rng.integers(len(synth), size=n_syn)]
    for pool, n in extra:
        if pool and n:
            items += [pool[i] for i in rng.integers(len(pool), size=n)]
    bands = {} if bands is None else bands

    def geometry(s: D.Slice) -> tuple | None:
        if s.name not in bands:  # the slice as drawn, before any band or blob
            bands[s.name] = _band_geometry(s.hu, s.lesion, s.mm)
        return bands[s.name]

    xs, lungs, lesions = [], [], []
    for s in items:
        if paste > 0 and s.kind == "medseg" and rng.random() < paste and len(medseg) > 1:
            j = int(rng.integers(len(medseg)))
            donor = medseg[(j + 1) % len(medseg)] if medseg[j] is s else medseg[j]
            mirror = bool(rng.random() < 0.5)
            geo, d_geo = geometry(s), geometry(donor)
            if geo is not None and d_geo is not None:
                hu, les = _paste_lesions(s.hu, s.lesion, geo, donor, d_geo, mirror)
                s = replace(s, hu=hu, lesion=les)
        if dependent > 0 and s.kind == "medseg" and rng.random() < dependent:
            geo = geometry(s)
            if geo is not None:
                s = replace(s, hu=_dependent_density(s.hu, s.lesion, s.mm, rng, geo))
        if dense > 0 and s.kind == "medseg" and rng.random() < dense:
            geo = geometry(s)
            if geo is not None:
                hu, les = _dense_consolidation(s.hu, s.lesion, s.mm, rng, geo)
                s = replace(s, hu=hu, lesion=les)
        hu, lung, lesion = _warp(s, rng, crop, net_mm)
        xs.append(_intensity(hu, s.kind, rng, coarse))
        lungs.append(lung)
        lesions.append(lesion)
    x = normalise_hu(torch.from_numpy(np.stack(xs))[:, None])
    return (x, torch.from_numpy(np.stack(lungs)).long(),
            torch.from_numpy(np.stack(lesions)).long())


def unlabelled_views(pool: list[D.Slice], n: int, crop: int, rng: np.random.Generator,
                     coarse: float = 0.0,
                     net_mm: float = SPACING_MM) -> tuple[torch.Tensor, ...]:
    """``n`` unlabelled slices drawn from ``pool``, each warped once and seen twice: a weak
    view (the warped slice as mapped, no intensity change) for the teacher's pseudo
    labels and a strong view of the same pixels (:func:`_intensity`: window, coarse
    pixels, kernel, noise) for the student; and the pixels inside the image (N, crop,
    crop, bool). Consistency training (:func:`train`'s ``consistency``)."""
    weak, strong, valid = [], [], []
    for i in rng.integers(len(pool), size=n):
        s = pool[i]
        inside = np.zeros(s.hu.shape, np.uint8)  # 0 inside the image, UNKNOWN outside
        hu, _, lab = _warp(replace(s, lesion=inside), rng, crop, net_mm)
        weak.append(hu)
        strong.append(_intensity(hu, s.kind, rng, coarse))
        valid.append(lab != D.UNKNOWN)
    return (normalise_hu(torch.from_numpy(np.stack(weak))[:, None]),
            normalise_hu(torch.from_numpy(np.stack(strong))[:, None]),
            torch.from_numpy(np.stack(valid)))


def consistency_loss(student_lesion: torch.Tensor, teacher_lesion: torch.Tensor,
                     valid: torch.Tensor, conf: float) -> tuple[torch.Tensor, float]:
    """Cross-entropy of the student's lesion logits on the strong views against the
    teacher's class on the weak views where the teacher's probability is >= ``conf``
    (background, GGO or consolidation alike), summed over those pixels and divided by all
    pixels inside the images (FixMatch's mean: few confident pixels weigh little); and the
    share of confident pixels."""
    prob = torch.softmax(teacher_lesion.float(), 1)
    best, cls = prob.max(1)
    mask = (best >= conf) & valid
    ce = F.cross_entropy(student_lesion.float(), cls, reduction="none")
    n = valid.sum().clamp(min=1)
    return (ce * mask).sum() / n, float(mask.sum()) / float(n)


def _soft_dice(prob: torch.Tensor, onehot: torch.Tensor, valid: torch.Tensor,
               per_slice: bool = False) -> torch.Tensor:
    """1 - soft Dice, per channel, averaged: over the batch, or (``per_slice``) of each
    slice that holds the channel's class, averaged over those (slice, channel) pairs, as
    the mean per-slice Dice the MedSeg acceptance scores (the cross-entropy alone then
    answers for slices without the class)."""
    v = valid[:, None].float()
    if not per_slice:
        inter = (prob * onehot * v).sum((0, 2, 3))
        den = ((prob + onehot) * v).sum((0, 2, 3))
        return 1 - ((2 * inter + 1) / (den + 1)).mean()
    inter = (prob * onehot * v).sum((2, 3))
    den = ((prob + onehot) * v).sum((2, 3))
    has = (onehot * v).sum((2, 3)) > 0
    if not has.any():
        return prob.sum() * 0.0
    return 1 - ((2 * inter + 1) / (den + 1))[has].mean()


def loss_fn(lung_logits: torch.Tensor, lesion_logits: torch.Tensor, lung: torch.Tensor,
            lesion: torch.Tensor, per_slice: bool = False) -> torch.Tensor:
    """Cross-entropy + soft Dice (lesion: GGO, consolidation and their union; lung: the two
    sides where labelled) + "lesion pixels are lung" where the sides are unknown.
    ``per_slice``: the lesion head's Dice term per slice (:func:`_soft_dice`)."""
    unk = D.UNKNOWN
    les_valid = lesion != unk
    les_t = torch.where(les_valid, lesion, 0)
    loss = F.cross_entropy(lesion_logits, lesion, ignore_index=unk)
    p = torch.softmax(lesion_logits, 1)
    oh = F.one_hot(les_t, 3).permute(0, 3, 1, 2).float()
    pu = torch.stack([p[:, 1], p[:, 2], p[:, 1] + p[:, 2]], 1)
    ohu = torch.stack([oh[:, 1], oh[:, 2], oh[:, 1] + oh[:, 2]], 1)
    loss = loss + _soft_dice(pu, ohu, les_valid, per_slice)
    lung_valid = lung != unk
    if lung_valid.any():
        loss = loss + F.cross_entropy(lung_logits, lung, ignore_index=unk)
        q = torch.softmax(lung_logits, 1)
        lt = torch.where(lung_valid, lung, 0)
        ohl = F.one_hot(lt, 3).permute(0, 3, 1, 2).float()
        loss = loss + _soft_dice(q[:, 1:], ohl[:, 1:], lung_valid)
    weak = (~lung_valid) & (les_t > 0)
    if weak.any():
        p_bg = torch.softmax(lung_logits, 1)[:, 0]
        loss = loss - 0.5 * torch.log1p(-p_bg[weak].clamp(max=1 - 1e-4)).mean()
    return loss


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def evaluate_medseg(net: LesionNet, slices: list[D.Slice], device: str = "cpu") -> list[dict]:
    """Per-slice Dice on MedSeg slices at their own resolution: lesion, and GGO /
    consolidation both by the learned class and by HU bands inside the predicted lesion
    (``net`` on ``device``, a resolved device)."""
    net.eval()
    rows = []
    for s in slices:
        _, les = predict_labels(net, s.hu[None], (s.mm, s.mm), device=device)
        les = les[0]
        t, p = s.lesion, les > 0
        cons_hu = p & (s.hu >= CONS_HU)
        row = {"slice": s.name, "lesion_dice": dice(t > 0, p),
               "ggo_dice": dice(t == 1, les == 1), "consolidation_dice": dice(t == 2, les == 2),
               "ggo_dice_hu": dice(t == 1, p & ~cons_hu),
               "consolidation_dice_hu": dice(t == 2, cons_hu),
               "has_ggo": bool((t == 1).any()), "has_consolidation": bool((t == 2).any()),
               "true_px": {str(c): int((t == c).sum()) for c in (1, 2)},
               "inter_px": {"lesion": int(((t > 0) & p).sum()),
                            "ggo": int(((t == 1) & (les == 1)).sum()),
                            "cons": int(((t == 2) & (les == 2)).sum()),
                            "ggo_hu": int(((t == 1) & p & ~cons_hu).sum()),
                            "cons_hu": int(((t == 2) & cons_hu).sum())},
               "pred_px": {"lesion": int(p.sum()), "ggo": int((les == 1).sum()),
                           "cons": int((les == 2).sum()), "ggo_hu": int((p & ~cons_hu).sum()),
                           "cons_hu": int(cons_hu.sum())}}
        rows.append(row)
    net.train()
    return rows


def summary(rows: list[dict]) -> dict[str, float]:
    """Mean per-slice Dice over the slices holding the class."""
    out = {"lesion_dice": float(np.mean([r["lesion_dice"] for r in rows]))}
    for key, has in (("ggo_dice", "has_ggo"), ("consolidation_dice", "has_consolidation")):
        for suffix in ("", "_hu"):
            vals = [r[key + suffix] for r in rows if r[has]]
            out[key + suffix] = float(np.mean(vals)) if vals else float("nan")
    return out


@torch.inference_mode()
def pseudo_label(net: LesionNet, slices: list[D.Slice], conf: float,
                 device: str = "cpu") -> list[D.Slice]:
    """``slices`` with the lesion class ``net`` (on ``device``) gives with probability >=
    ``conf`` (0 none, 1 GGO, 2 consolidation) and :data:`models.data.UNKNOWN` elsewhere
    (self-training)."""
    from lesionquant.segment.model._infer import _net_logits, net_grid

    out = []
    for s in slices:
        h, w = s.hu.shape
        size = net_grid((h, w), (s.mm, s.mm), net.spacing_mm)
        logits = _net_logits(net, torch.from_numpy(s.hu)[None, None], size, device)[:, 3:]
        prob = torch.softmax(F.interpolate(logits, size=(h, w), mode="bilinear",
                                           align_corners=False), 1)[0]
        best, cls = prob.max(0)
        lesion = torch.where(best >= conf, cls, D.UNKNOWN).to(torch.uint8).numpy()
        out.append(D.Slice(s.name, s.hu, s.lung, lesion, s.mm, s.kind))
    return out


def _environment() -> dict[str, str]:
    """Where a run trains: library versions, torch's CPU kernels, processor, platform
    (CPU runs are bit for bit reproducible on one machine, not across machines)."""
    return {"torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "processor": platform.processor() or platform.machine(),
            "platform": platform.platform()}


def _save(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(run: Path, *, fold: int, k: int = 5, steps: int = 300, seed: int = 0,
          medseg_per_batch: int = 5, synth_per_batch: int = 3, crop: int = 128,
          base: int = 16, lr: float = 2e-3, val_every: int = 100, ckpt_every: int = 25,
          threads: int = 2, generation: str = "all", synth: list[D.Slice] | None = None,
          medseg: list[D.Slice] | None = None, stop_after: int | None = None,
          real_per_batch: int = 0, real: list[D.Slice] | None = None, coarse: float = 0.0,
          init: Path | None = None, pseudo_per_batch: int = 0, pseudo_conf: float = 0.7,
          teacher: Path | None = None, dice: str = "batch",
          spacing_mm: float = SPACING_MM, dependent: float = 0.0,
          device: str = "auto", dense: float = 0.0, paste: float = 0.0,
          consistency: int = 0,
          consistency_conf: float = 0.9, consistency_weight: float = 1.0,
          consistency_ramp: tuple[int, int] = (250, 500), ema: float = 0.99,
          unlabelled: list[D.Slice] | None = None) -> LesionNet:
    """Train (or resume) one run; returns the network. See the module docstring.

    ``synth`` / ``medseg`` / ``real`` replace the data of :mod:`models.data` (tests);
    ``stop_after`` stops after that many steps as an interruption would (after its
    checkpoint). ``init``: start from the weights of this checkpoint (a second phase;
    optimizer and schedule start afresh), ``real_per_batch`` real lesion-free slices a
    step, ``coarse`` the probability of the coarse-pixel augmentation;
    ``pseudo_per_batch`` unlabelled COVID-19 slices a step with the lesion classes the
    ``teacher`` checkpoint (default ``init``) gives with probability >= ``pseudo_conf``
    (:func:`pseudo_label`; the other pixels are ignored). ``dice``: the lesion head's soft
    Dice over the ``"batch"`` or per ``"slice"`` (:func:`_soft_dice`); ``spacing_mm`` the
    network's pixel size (``crop`` counts its pixels); ``dependent`` the probability of
    the dependent-density band on a MedSeg slice (:func:`_dependent_density`); ``device``
    ``"auto"``, ``"cpu"`` or ``"cuda[:N]"`` (:func:`~lesionquant.segment.resolve_device`;
    bfloat16 autocast on CUDA); ``dense`` the probability of a painted homogeneous
    consolidation on a MedSeg slice (:func:`_dense_consolidation`); ``paste`` that of
    another training slice's lesions pasted into a MedSeg slice (:func:`_paste_lesions`).

    ``consistency``: unlabelled COVID-19 slices a step (``unlabelled``, default
    :func:`models.data.load_unlabelled`) trained by consistency (FixMatch with a mean
    teacher): the teacher, an exponential moving average of the network's weights
    (``ema`` per step, kept in the checkpoint), labels the weak view of each slice where
    its lesion probability is >= ``consistency_conf``; the network learns those labels on
    the strong view (:func:`unlabelled_views`, :func:`consistency_loss`), weighted by
    ``consistency_weight`` times a ramp from 0 at step ``consistency_ramp[0]`` to 1 at
    ``consistency_ramp[1]``. The labelled batches are drawn first from each step's
    generator, so they are those of the same run without it. The network kept and
    evaluated is the student, as in every other run.
    """
    dev = resolve_device(device)
    amp = dev.startswith("cuda")
    run.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    ids = D.medseg_ids()
    held = D.folds(ids, k)[fold] if fold >= 0 else []
    all_med = medseg if medseg is not None else D.load_medseg(ids)
    train_med = [s for s in all_med if s.name not in held]
    val_med = [s for s in all_med if s.name in held]
    syn = synth if synth is not None else D.load_synthetic(generation)
    logger.info("fold %d: %d MedSeg train, %d held out, %d synthetic slices", fold,
                len(train_med), len(val_med), len(syn))
    real_sl = (real if real is not None else D.load_synthetic("real")) if real_per_batch else []
    pseudo: list[D.Slice] = []
    if pseudo_per_batch:
        src = teacher or init
        if src is None:
            raise ValueError("pseudo labels need a teacher (--teacher or --init)")
        tnet = LesionNet(base=base, spacing_mm=spacing_mm)
        tnet.load_state_dict(torch.load(src, map_location="cpu", weights_only=True)["model"])
        pseudo = pseudo_label(tnet.eval().to(dev), D.load_unlabelled(), pseudo_conf, dev)
        logger.info("pseudo labels from %s on %d slices", src, len(pseudo))
    net = LesionNet(base=base, spacing_mm=spacing_mm)
    if init is not None:
        net.load_state_dict(torch.load(init, map_location="cpu", weights_only=True)["model"])
        logger.info("initialised from %s", init)
    net.to(dev)
    unl: list[D.Slice] = []
    teacher_net: LesionNet | None = None
    if consistency:
        unl = unlabelled if unlabelled is not None else D.load_unlabelled()
        teacher_net = copy.deepcopy(net).eval().requires_grad_(False)
        logger.info("consistency training on %d unlabelled slices", len(unl))
    logger.info("training on %s%s", dev, " (bfloat16 autocast)" if amp else "")
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    warm = min(20, steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(i, steps)
                                                                       / steps)))
    start = 0
    ckpt = run / "ckpt.pt"
    if ckpt.exists():
        st = torch.load(ckpt, map_location="cpu", weights_only=True)
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        if teacher_net is not None:
            teacher_net.load_state_dict(st["ema"])
        start = int(st["step"])
        logger.info("resumed %s at step %d", run, start)
    meta = {"fold": fold, "k": k, "steps": steps, "seed": seed, "held_out": held,
            "medseg_per_batch": medseg_per_batch, "synth_per_batch": synth_per_batch,
            "crop": crop, "base": base, "lr": lr, "generation": generation,
            "n_synth": len(syn), "real_per_batch": real_per_batch, "n_real": len(real_sl),
            "coarse": coarse, "init": str(init) if init else None,
            "pseudo_per_batch": pseudo_per_batch, "pseudo_conf": pseudo_conf,
            "teacher": str(teacher or init) if pseudo_per_batch else None,
            "dice": dice, "dependent": dependent, "dense": dense, "paste": paste,
            "device": dev,
            "consistency": consistency, "consistency_conf": consistency_conf,
            "consistency_weight": consistency_weight,
            "consistency_ramp": list(consistency_ramp), "ema": ema,
            "env": _environment(), "config": net.config}
    (run / "meta.json").write_text(json.dumps(meta, indent=1))
    bands = ({s.name: _band_geometry(s.hu, s.lesion, s.mm) for s in train_med}
             if dependent > 0 or dense > 0 or paste > 0 else None)
    net.train()
    log = (run / "log.jsonl").open("a")
    t0 = time.perf_counter()
    for i in range(start, steps if stop_after is None else min(steps, stop_after)):
        rng = np.random.default_rng([seed, i])
        torch.manual_seed(seed * 1_000_003 + i)
        x, lung, lesion = make_batch(train_med, syn, medseg_per_batch, synth_per_batch,
                                     crop, rng, ((real_sl, real_per_batch),
                                                 (pseudo, pseudo_per_batch)), coarse,
                                     spacing_mm, dependent, bands, dense, paste)
        x, lung, lesion = (t.to(dev, non_blocking=True) for t in (x, lung, lesion))
        n_lab = x.shape[0]
        if teacher_net is not None:
            xw, xs, valid = unlabelled_views(unl, consistency, crop, rng, coarse, spacing_mm)
            x = torch.cat([x, xs.to(dev)])
        with torch.autocast(device_type="cuda" if amp else "cpu", dtype=torch.bfloat16,
                            enabled=amp):
            a, b = net(x)
            if teacher_net is not None:
                with torch.no_grad():
                    tb = teacher_net(xw.to(dev))[1]
        loss = loss_fn(a[:n_lab].float(), b[:n_lab].float(), lung, lesion, dice == "slice")
        extra = {}
        if teacher_net is not None:
            lo, hi = consistency_ramp
            ramp = min(1.0, max(0.0, (i - lo) / max(hi - lo, 1)))
            lu, frac = consistency_loss(b[n_lab:], tb, valid.to(dev), consistency_conf)
            loss = loss + consistency_weight * ramp * lu
            extra = {"u_loss": round(lu.item(), 5), "u_conf": round(frac, 4)}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if teacher_net is not None:
            with torch.no_grad():
                for pt, ps in zip(teacher_net.parameters(), net.parameters(), strict=True):
                    pt.mul_(ema).add_(ps.detach(), alpha=1 - ema)
                for bt, bs in zip(teacher_net.buffers(), net.buffers(), strict=True):
                    bt.copy_(bs)
        rec = {"step": i + 1, "loss": round(loss.item(), 5), "lr": sched.get_last_lr()[0],
               "s": round(time.perf_counter() - t0, 1), **extra}
        if val_med and ((i + 1) % val_every == 0 or i + 1 == steps):
            rec["val"] = summary(evaluate_medseg(net, val_med, dev))
            logger.info("step %d val %s", i + 1, rec["val"])
        log.write(json.dumps(rec) + "\n")
        log.flush()
        if (i + 1) % 10 == 0:
            logger.info("step %d loss %.4f (%.1f s)", i + 1, rec["loss"], rec["s"])
        if (i + 1) % ckpt_every == 0 or i + 1 in (steps, stop_after):
            _save(ckpt, {"model": net.state_dict(), "opt": opt.state_dict(),
                         "sched": sched.state_dict(), "step": i + 1,
                         **({"ema": teacher_net.state_dict()} if teacher_net else {})})
    log.close()
    if val_med and (stop_after is None or stop_after >= steps):
        rows = evaluate_medseg(net, val_med, dev)
        (run / "val.json").write_text(json.dumps({"summary": summary(rows), "rows": rows},
                                                 indent=1))
    net.eval()
    return net


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, required=True, help="run folder (checkpoint, logs)")
    p.add_argument("--fold", type=int, default=-1, help="held-out fold, -1 = none")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--medseg", type=int, default=5, help="MedSeg slices per batch")
    p.add_argument("--synth", type=int, default=3, help="synthetic slices per batch")
    p.add_argument("--crop", type=int, default=128, help="crop, the network's pixels")
    p.add_argument("--base", type=int, default=16, help="channels of the first level")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument("--ckpt-every", type=int, default=25)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--synthetic", choices=sorted(D.GENERATIONS), default="all",
                   help="cached synthetic generation(s) to train on (models/data.py)")
    p.add_argument("--real", type=int, default=0,
                   help="real lesion-free slices per batch (models/data.py REAL_NEGATIVES)")
    p.add_argument("--coarse", type=float, default=0.0,
                   help="probability of the coarse-pixel augmentation (2.25-4.5 mm)")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this checkpoint's weights (second phase)")
    p.add_argument("--pseudo", type=int, default=0,
                   help="pseudo-labelled unlabelled COVID-19 slices per batch")
    p.add_argument("--pseudo-conf", type=float, default=0.7)
    p.add_argument("--teacher", type=Path, default=None,
                   help="checkpoint that makes the pseudo labels (default: --init)")
    p.add_argument("--dice", choices=("batch", "slice"), default="batch",
                   help="the lesion head's soft Dice over the batch or per slice")
    p.add_argument("--spacing", type=float, default=SPACING_MM,
                   help="the network's in-plane pixel size, mm")
    p.add_argument("--dependent", type=float, default=0.0,
                   help="probability of the dependent-density band on a MedSeg slice")
    p.add_argument("--dense", type=float, default=0.0,
                   help="probability of a painted homogeneous consolidation on a MedSeg "
                   "slice")
    p.add_argument("--paste", type=float, default=0.0,
                   help="probability of another training slice's lesions pasted into a "
                   "MedSeg slice")
    p.add_argument("--consistency", type=int, default=0,
                   help="unlabelled COVID-19 slices per batch, consistency training "
                   "(FixMatch with a mean teacher)")
    p.add_argument("--consistency-conf", type=float, default=0.9,
                   help="teacher probability at or above which a pixel is pseudo-labelled")
    p.add_argument("--consistency-weight", type=float, default=1.0)
    p.add_argument("--consistency-ramp", type=int, nargs=2, default=(250, 500),
                   metavar=("FROM", "TO"), help="steps over which the weight ramps 0 -> 1")
    p.add_argument("--ema", type=float, default=0.99, help="the teacher's decay per step")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when torch sees one, else CPU), cpu or cuda[:N]")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    train(a.run, fold=a.fold, k=a.folds, steps=a.steps, seed=a.seed,
          medseg_per_batch=a.medseg, synth_per_batch=a.synth, crop=a.crop, base=a.base,
          lr=a.lr, val_every=a.val_every, ckpt_every=a.ckpt_every, threads=a.threads,
          generation=a.synthetic, real_per_batch=a.real, coarse=a.coarse, init=a.init,
          pseudo_per_batch=a.pseudo, pseudo_conf=a.pseudo_conf, teacher=a.teacher,
          dice=a.dice, spacing_mm=a.spacing, dependent=a.dependent, device=a.device,
          dense=a.dense, paste=a.paste, consistency=a.consistency,
          consistency_conf=a.consistency_conf,
          consistency_weight=a.consistency_weight,
          consistency_ramp=tuple(a.consistency_ramp), ema=a.ema)


if __name__ == "__main__":
    main()
