"""Slice-wise inference: HU slices at any in-plane pixel size -> class probabilities.

Slices are resampled to :data:`~lesionquant.segment.model._net.SPACING_MM` (bilinear,
antialiased), padded with air to a multiple of the network's stride, run in batches of
``batch`` slices (bounded memory), and the logits resampled back to the input grid
(bilinear) before the argmax, so boundaries stay smooth at the input's resolution.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lesionquant.segment.model._net import SPACING_MM, LesionNet, normalise_hu

__all__ = ["predict_labels"]

AIR_HU = -1024.0


def _forward(net: LesionNet, hu: torch.Tensor, spacing_yx: tuple[float, float],
             device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``hu`` (N, 1, H, W) float32 on CPU -> logits (lung, lesion), each (N, 3, H, W)."""
    h, w = hu.shape[2:]
    th = max(1, round(h * spacing_yx[0] / SPACING_MM))
    tw = max(1, round(w * spacing_yx[1] / SPACING_MM))
    x = hu.to(device)
    if (th, tw) != (h, w):
        x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False,
                          antialias=th < h or tw < w)
    m = net.multiple
    ph, pw = (-th) % m, (-tw) % m
    x = F.pad(normalise_hu(x), (0, pw, 0, ph), value=float(normalise_hu(torch.tensor(AIR_HU))))
    use_amp = x.device.type == "cuda"
    with torch.autocast(device_type=x.device.type, dtype=torch.float16, enabled=use_amp):
        lung, lesion = net(x)
    out = []
    for logits in (lung, lesion):
        logits = logits[:, :, :th, :tw].float()
        if (th, tw) != (h, w):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        out.append(logits.cpu())
    return out[0], out[1]


@torch.inference_mode()
def predict_labels(net: LesionNet, hu: np.ndarray, spacing_yx: tuple[float, float], *,
                  device: str = "cpu", batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
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

    Returns
    -------
    lung, lesion : (Z, Y, X) ndarray of uint8
        Lung (0 background, 1 right, 2 left) and lesion (0 none, 1 GGO, 2 consolidation)
        labels; the lesion labels are not restricted to the lung here.
    """
    z, y, x = hu.shape
    lung = np.empty((z, y, x), np.uint8)
    lesion = np.empty((z, y, x), np.uint8)
    for i in range(0, z, batch):
        t = torch.from_numpy(np.ascontiguousarray(hu[i:i + batch], dtype=np.float32))[:, None]
        a, b = _forward(net, t, spacing_yx, device)
        lung[i:i + batch] = a.argmax(1).numpy()
        lesion[i:i + batch] = b.argmax(1).numpy()
    return lung, lesion
