"""The network: a compact 2D U-Net with two heads (lungs, lesions), alone or as a pair.

Input: one axial slice (or a few adjacent ones, as channels) in HU, resampled to the
network's in-plane pixel size (:attr:`LesionNet.spacing_mm`, :data:`SPACING_MM` unless its
``config`` names another) and normalised by :func:`normalise_hu`. Output: two logit maps,
``lungs`` (0 background, 1 right lung, 2 left lung; lesions count as lung) and ``lesions``
(0 none, 1 ground-glass opacity, 2 consolidation: the experts' region class).

:class:`NetPair` holds two such networks, one trained for each job: the lungs come from
the first one's lung head and the lesions from the second one's lesion head (the lung
stage runs only the first, the lesion stage only the second). :func:`build_net` makes
either from the ``config`` stored with the weights.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["HU_WINDOW", "SPACING_MM", "LesionNet", "NetPair", "build_net", "normalise_hu",
           "shared_spacing_mm"]

#: In-plane pixel size a network works at unless its ``config`` names another, mm.
SPACING_MM = 1.5
#: HU range the network sees (a lung window, as the 8-bit training JPEGs); values outside
#: are clipped. (low, high) HU.
HU_WINDOW = (-1100.0, 400.0)


def normalise_hu(hu: torch.Tensor) -> torch.Tensor:
    """HU -> network input: clipped to :data:`HU_WINDOW`, scaled to about [-1, 1]."""
    lo, hi = HU_WINDOW
    return (hu.clamp(lo, hi) - (lo + hi) / 2.0) / ((hi - lo) / 2.0)


class _Block(nn.Sequential):
    """Two 3x3 convolutions, each with batch norm and ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class LesionNet(nn.Module):
    """2D U-Net (``levels`` resolutions, ``base`` channels doubling per level) with a
    3-class lung head and a 3-class lesion head.

    Parameters
    ----------
    in_channels : int
        Adjacent slices given as channels (1 = one slice).
    base : int
        Channels of the first level.
    levels : int
        Resolution levels (the input size must be divisible by ``2 ** (levels - 1)``).
    spacing_mm : float
        In-plane pixel size the network works at (inputs are resampled to it), mm.
    """

    def __init__(self, in_channels: int = 1, base: int = 16, levels: int = 4,
                 spacing_mm: float = SPACING_MM) -> None:
        super().__init__()
        if not spacing_mm > 0:
            raise ValueError(f"spacing_mm must be positive, got {spacing_mm}")
        self.config = {"in_channels": in_channels, "base": base, "levels": levels,
                       "spacing_mm": float(spacing_mm)}
        ch = [base * 2**i for i in range(levels)]
        self.down = nn.ModuleList()
        cin = in_channels
        for c in ch:
            self.down.append(_Block(cin, c))
            cin = c
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for c_lo, c_hi in zip(ch[:0:-1], ch[-2::-1], strict=True):
            self.up.append(nn.ConvTranspose2d(c_lo, c_hi, 2, stride=2))
            self.dec.append(_Block(2 * c_hi, c_hi))
        self.lung_head = nn.Conv2d(base, 3, 1)
        self.lesion_head = nn.Conv2d(base, 3, 1)

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** (self.config["levels"] - 1)

    @property
    def spacing_mm(self) -> float:
        """In-plane pixel size the network works at, mm."""
        return self.config["spacing_mm"]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (N, C, H, W) normalised -> (lung logits, lesion logits), each (N, 3, H, W)."""
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = nn.functional.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for up, dec, skip in zip(self.up, self.dec, skips[-2::-1], strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.lung_head(x), self.lesion_head(x)


class NetPair(nn.Module):
    """Two :class:`LesionNet`: the lung head of ``lungs`` and the lesion head of ``lesions``.

    Parameters
    ----------
    lungs, lesions : LesionNet
        The network whose lung head gives the lungs, and the one whose lesion head gives
        the lesions (each network's other head is not used).
    """

    def __init__(self, lungs: LesionNet, lesions: LesionNet) -> None:
        super().__init__()
        self.lungs = lungs
        self.lesions = lesions
        self.config = {"lungs": dict(lungs.config), "lesions": dict(lesions.config)}

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return max(self.lungs.multiple, self.lesions.multiple)

    @property
    def spacing_mm(self) -> float:
        """In-plane pixel size both networks work at, mm (a pair run as one needs one)."""
        return shared_spacing_mm([self.lungs, self.lesions])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (N, C, H, W) normalised -> (lung logits of ``lungs``, lesion logits of
        ``lesions``), each (N, 3, H, W)."""
        return self.lungs(x)[0], self.lesions(x)[1]


def shared_spacing_mm(nets: list[nn.Module]) -> float:
    """The one pixel size (mm) of networks run together on one input (a pair, an
    ensemble); ``ValueError`` when they work at different pixel sizes."""
    sizes = sorted({n.spacing_mm for n in nets})
    if len(sizes) != 1:
        raise ValueError(f"networks run together work at different pixel sizes {sizes} mm: "
                         "run each network on its own")
    return sizes[0]


def build_net(config: dict) -> LesionNet | NetPair:
    """The (untrained) network a weights file's ``config`` describes: a :class:`NetPair`
    when it names ``lungs`` and ``lesions``, else a :class:`LesionNet`."""
    if "lungs" in config and "lesions" in config:
        return NetPair(LesionNet(**config["lungs"]), LesionNet(**config["lesions"]))
    return LesionNet(**config)
