"""Slice-wise inference: HU slices at any pixel size -> lung and lesion labels.

Slices are resampled to the network's pixel size (``net.spacing_mm``; bilinear,
antialiased), padded with air to a multiple of the network's stride and run in batches of
``batch`` slices (bounded memory). On thin-slice scans the network runs on slices about
``z_step_mm`` apart and the logits of the slices between are interpolated linearly along
z (a 1 mm scan costs half the forward passes; the lesion boundaries move by less than a
slice). The logits are resampled back to the input grid (bilinear) before the argmax, so
boundaries stay smooth at the input's resolution. Only the box that holds the body (pixels
above :data:`BODY_HU` on any slice, plus :data:`BODY_MARGIN_MM`) goes through the network;
the air around it is background (a 360 mm field of view around a 300 x 220 mm chest
halves the work). With ``lesion_low`` the lesion grows by hysteresis into the pixels of
lesion probability at least ``lesion_low`` joined in-plane to what the argmax calls
(:func:`_lesion_classes`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from lesionquant.segment.model._net import LesionNet, normalise_hu

__all__ = ["net_grid", "predict_labels", "slices_to_run"]

AIR_HU = -1024.0
#: Pixels above this HU on any slice make the body's box (air and lung are below it).
BODY_HU = -500.0
#: Margin around the body's box, mm.
BODY_MARGIN_MM = 10.0
#: Logit of the foreground classes outside the ``box`` of :func:`predict_labels` (the
#: background / no-lesion class has 0 there).
OUTSIDE_LOGIT = -30.0


def body_box(hu: np.ndarray, spacing_yx: tuple[float, float]) -> tuple[slice, slice]:
    """Rows and columns of the box around everything denser than :data:`BODY_HU` on any
    slice of ``hu`` (Z, Y, X), widened by :data:`BODY_MARGIN_MM`; the whole slice when
    nothing is that dense."""
    dense = hu.max(axis=0) > BODY_HU  # no full-size temporary
    if not dense.any():
        return slice(None), slice(None)
    out = []
    for axis, mm in ((1, spacing_yx[0]), (0, spacing_yx[1])):
        idx = np.flatnonzero(dense.any(axis=axis))
        m = int(np.ceil(BODY_MARGIN_MM / mm))
        out.append(slice(max(0, idx[0] - m), min(dense.shape[1 - axis], idx[-1] + m + 1)))
    return out[0], out[1]


def slices_to_run(n: int, spacing_z_mm: float | None, z_step_mm: float) -> np.ndarray:
    """Indices of the slices the network runs on: every slice, or on slices thinner than
    ``z_step_mm`` one slice in ``floor(z_step_mm / spacing)`` plus the last one."""
    stride = 1 if not spacing_z_mm or spacing_z_mm <= 0 else max(1, int(z_step_mm
                                                                        // spacing_z_mm))
    idx = np.arange(0, n, stride)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def net_grid(shape_yx: tuple[int, int], spacing_yx: tuple[float, float],
             net_mm: float) -> tuple[int, int]:
    """Rows and columns of an image of ``shape_yx`` pixels of ``spacing_yx`` mm resampled
    to the network's ``net_mm`` pixels (at least one each)."""
    return (max(1, round(shape_yx[0] * spacing_yx[0] / net_mm)),
            max(1, round(shape_yx[1] * spacing_yx[1] / net_mm)))


def _net_logits(net: LesionNet, hu: torch.Tensor, size: tuple[int, int],
                device: str, crop: tuple[slice, slice] | None = None) -> torch.Tensor:
    """``hu`` (N, 1, H, W) -> logits (N, 6, th, tw) at the network's pixel size, on CPU:
    channels 0-2 lung (background, right, left), 3-5 lesion (none, GGO, consolidation).
    With ``crop`` (rows, columns of the network's grid, starting on multiples of
    ``net.multiple``) only that part goes through the network; every other pixel gets
    background / no lesion."""
    th, tw = size
    h, w = hu.shape[2:]
    x = hu.to(device)
    if (th, tw) != (h, w):
        x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False,
                          antialias=th < h or tw < w)
    if crop is not None:
        x = x[:, :, crop[0], crop[1]]
    ch, cw = x.shape[2:]
    m = net.multiple
    ph, pw = (-ch) % m, (-cw) % m
    x = F.pad(normalise_hu(x), (0, pw, 0, ph), value=float(normalise_hu(torch.tensor(AIR_HU))))
    use_amp = x.device.type == "cuda"
    with torch.autocast(device_type=x.device.type, dtype=torch.float16, enabled=use_amp):
        lung, lesion = net(x)
    out = torch.cat([lung, lesion], 1)[:, :, :ch, :cw].float().cpu()
    if crop is None:
        return out
    full = torch.full((out.shape[0], 6, th, tw), OUTSIDE_LOGIT)
    full[:, 0::3] = 0.0  # background lung / no lesion
    full[:, :, crop[0], crop[1]] = out
    return full


def _argmax3(x: torch.Tensor) -> np.ndarray:
    """``x.argmax(1)`` of (N, 3, H, W) logits as uint8, by two comparisons: the same
    answer (ties go to the lower class), without torch's strided reduction over the
    channel axis (7 of 11 s of a 512 x 512 x 100 lung stage)."""
    a, b, c = x[:, 0], x[:, 1], x[:, 2]
    first = b > a
    best = torch.where(first, b, a)
    out = torch.where(c > best, 2, first.to(torch.uint8))
    return out.to(torch.uint8).numpy()


#: In-plane 4-connectivity of a stack of slices (no link between slices).
_INPLANE = np.zeros((3, 3, 3), bool)
_INPLANE[1] = ndi.generate_binary_structure(2, 1)


def _grown(seed: np.ndarray, x: torch.Tensor, low: float) -> np.ndarray:
    """``seed`` (N, H, W) grown by hysteresis: the in-plane connected parts of the pixels
    whose lesion probability (1 - softmax's none) of the (N, 3, H, W) logits ``x`` is at
    least ``low``, or that are seeds, that hold a seed."""
    weak = (x.softmax(1)[:, 0] <= 1.0 - low).numpy() | seed
    lab, n = ndi.label(weak, structure=_INPLANE)
    keep = np.zeros(n + 1, bool)
    keep[lab[seed]] = True
    keep[0] = False
    return keep[lab]


def _lesion_classes(x: torch.Tensor, cons_bias: float,
                    lesion_low: float | None = None) -> np.ndarray:
    """Lesion labels of (N, 3, H, W) logits (none, GGO, consolidation) with ``cons_bias``
    added to the consolidation logit against the GGO logit only: a pixel is lesion
    exactly when :func:`_argmax3` says so (either lesion logit above the none logit), and
    consolidation when ``consolidation + cons_bias > GGO``. ``cons_bias = 0`` is
    :func:`_argmax3` to the bit (same ties). With ``lesion_low`` the lesion also takes the
    pixels :func:`_grown` adds (hysteresis: lesion probability >= ``lesion_low``, joined
    in-plane to lesion), of the same GGO-or-consolidation rule."""
    if cons_bias == 0.0 and lesion_low is None:
        return _argmax3(x)
    a, b, c = x[:, 0], x[:, 1], x[:, 2]
    lesion = ((b > a) | (c > a)).numpy()
    if lesion_low is not None:
        lesion = _grown(lesion, x, lesion_low)
    cons = ((c + cons_bias) > b).numpy()
    return (lesion * np.where(cons, 2, 1)).astype(np.uint8)


#: Logit channels of each part: the lung head's and the lesion head's.
PARTS = {"lungs": slice(0, 3), "lesions": slice(3, 6)}


def _keep(parts: tuple[str, ...]) -> slice:
    """The logit channels ``parts`` need: one head's 3, or all 6."""
    return PARTS[parts[0]] if len(parts) == 1 else slice(0, 6)


def _labels(logits: torch.Tensor, size: tuple[int, int],
            parts: tuple[str, ...], cons_bias: float = 0.0,
            lesion_low: float | None = None) -> dict[str, np.ndarray]:
    """Labels of ``parts`` from the (N, C, h, w) logits of :func:`_keep` (C = 3 for one
    part, 6 for both), resampled to ``size`` first (lesions: :func:`_lesion_classes`)."""
    if tuple(logits.shape[2:]) != size:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    out = {}
    for p, c in PARTS.items():
        if p in parts:
            x = logits if len(parts) == 1 else logits[:, c]
            out[p] = (_lesion_classes(x, cons_bias, lesion_low) if p == "lesions"
                      else _argmax3(x))
    return out


def _grid_crop(box_yx: tuple[slice, slice], shape: tuple[int, int], size: tuple[int, int],
               m: int) -> tuple[slice, slice] | None:
    """The rows and columns of the network's grid (``size``) that cover ``box_yx`` of an
    image of ``shape`` pixels, widened to start on multiples of ``m`` (the network's pooling
    then sees the same pixel blocks as on the whole image); ``None`` for the whole grid
    (also when the box holds no pixel of the image)."""
    out = []
    for sl, n, t in zip(box_yx, shape, size, strict=True):
        lo = max(0, int(np.floor(sl.start * t / n)) - 1) // m * m
        hi = min(t, int(np.ceil(sl.stop * t / n)) + 1)
        out.append(slice(lo, hi))
    whole = all(o.start == 0 and o.stop == t for o, t in zip(out, size, strict=True))
    if whole or any(o.start >= o.stop for o in out):  # or a box outside the image
        return None
    return out[0], out[1]


@torch.inference_mode()
def predict_labels(net: LesionNet, hu: np.ndarray, spacing_yx: tuple[float, float], *,
                   device: str = "cpu", batch: int = 8, spacing_z_mm: float | None = None,
                   z_step_mm: float = 2.0,
                   parts: tuple[str, ...] = ("lungs", "lesions"),
                   box: tuple[slice, slice, slice] | None = None,
                   cons_bias: float = 0.0, lesion_low: float | None = None,
                   ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The most probable lung and lesion class of every pixel of every slice.

    Parameters
    ----------
    net : LesionNet
        In eval mode, on ``device``.
    hu : (Z, Y, X) ndarray
        Upright axial slices in HU (row 0 anterior, column 0 the patient's right).
    spacing_yx : tuple of float
        Pixel size (row, column), mm.
    device : str
        ``"cpu"`` or ``"cuda:N"`` (mixed precision on CUDA).
    batch : int
        Slices per forward pass (memory grows linearly with it).
    spacing_z_mm : float, optional
        Slice spacing, mm; with ``z_step_mm`` it decides which slices the network runs on
        (:func:`slices_to_run`). ``None``: every slice.
    z_step_mm : float
        Largest distance between slices the network runs on, mm.
    parts : tuple of str
        The labels wanted, of ``"lungs"`` and ``"lesions"``; only their logits are
        resampled to the input grid (half the work for one part).
    box : tuple of slice, optional
        Slices, rows and columns of ``hu`` (each with its start and stop, as
        :func:`~lesionquant._box.bbox` gives them) where labels are wanted: the network runs only
        on the slices of the whole run that cover them and, in the network's grid, on the
        pixels that cover them (sampled as on the whole image; only the context beyond the
        box is missing); outside the network pixels that cover the box everything is
        background / no lesion.
    cons_bias : float
        Added to the consolidation logit against the GGO logit inside the lesion
        (:func:`_lesion_classes`; the lesion mask does not depend on it), a property of
        the weights (:attr:`~lesionquant.segment.model._weights.LoadedModel.cons_bias`).
    lesion_low : float, optional
        Hysteresis of the lesion mask (:func:`_grown`): pixels of lesion probability at
        least this, joined in-plane to the argmax's lesion, are lesion too; ``None``: the
        argmax alone. A property of the weights, as ``cons_bias``.

    Returns
    -------
    lung, lesion : (Z, Y, X) ndarray of uint8, or None when not in ``parts``
        Lung (0 background, 1 right, 2 left) and lesion (0 none, 1 GGO, 2 consolidation)
        labels; the lesion labels are not restricted to the lung here.
    """
    rows, cols = body_box(hu, spacing_yx)
    if hu[:, rows, cols].shape[1:] != hu.shape[1:]:
        inner_box = None
        if box is not None:  # the same box in the body box's rows and columns
            inner_box = (box[0], *(slice(max(0, b.start - o.start), max(0, b.stop - o.start))
                                   for b, o in zip(box[1:], (rows, cols), strict=True)))
        inner = predict_labels(net, hu[:, rows, cols], spacing_yx, device=device, batch=batch,
                               cons_bias=cons_bias, lesion_low=lesion_low,
                               spacing_z_mm=spacing_z_mm, z_step_mm=z_step_mm, parts=parts,
                               box=inner_box)
        out = []
        for part, lab in zip(PARTS, inner, strict=True):
            full = None
            if part in parts:
                full = np.zeros(hu.shape, np.uint8)
                full[:, rows, cols] = lab
            out.append(full)
        return out[0], out[1]
    z, y, x = hu.shape
    size = net_grid((y, x), spacing_yx, net.spacing_mm)
    run = slices_to_run(z, spacing_z_mm, z_step_mm)
    crop = None
    z0, z1 = 0, z
    if box is not None:
        z0, z1 = box[0].start, box[0].stop
        # the whole run's slices that hold or bracket the box's slices
        i0 = max(0, int(np.searchsorted(run, z0, side="right")) - 1)
        i1 = min(len(run) - 1, int(np.searchsorted(run, z1 - 1, side="left")))
        run = run[i0:i1 + 1]
        crop = _grid_crop(box[1:], (y, x), size, net.multiple)
    keep = _keep(parts)
    labels = {p: np.zeros((z, y, x), np.uint8) for p in parts}

    def put(sl: slice, logits: torch.Tensor) -> None:
        for p, lab in _labels(logits, (y, x), parts, cons_bias, lesion_low).items():
            labels[p][sl] = lab

    def logits_of(idx: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(hu[idx], dtype=np.float32))
        return _net_logits(net, t[:, None], size, device, crop)[:, keep]

    if run[-1] - run[0] == len(run) - 1:  # consecutive slices
        for i in range(0, len(run), batch):
            idx = run[i:i + batch]
            put(slice(int(idx[0]), int(idx[-1]) + 1), logits_of(idx))
        return labels.get("lungs"), labels.get("lesions")
    logits = torch.empty((len(run), keep.stop - keep.start, *size), dtype=torch.float32)
    for i in range(0, len(run), batch):
        logits[i:i + batch] = logits_of(run[i:i + batch])
    # every slice between two run slices a <= k <= b: logits (1 - w) L[a] + w L[b]
    ks = np.arange(max(run[0], z0), min(run[-1] + 1, z1))
    hi = np.clip(np.searchsorted(run, ks), 1, len(run) - 1)
    lo = hi - 1
    w = torch.from_numpy(((ks - run[lo]) / (run[hi] - run[lo])).astype(np.float32))
    for i in range(0, len(ks), batch):
        sl = slice(i, i + batch)
        wi = w[sl].view(-1, 1, 1, 1)
        put(slice(int(ks[sl][0]), int(ks[sl][-1]) + 1),
            (1 - wi) * logits[lo[sl]] + wi * logits[hi[sl]])
    return labels.get("lungs"), labels.get("lesions")
