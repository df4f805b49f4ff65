"""The network: a compact 2D U-Net with two heads (lungs, lesions), alone or as a pair.

Input: one axial slice (or a few adjacent ones, as channels) in HU, resampled to the
network's in-plane pixel size (:attr:`LesionNet.spacing_mm`, :data:`SPACING_MM` unless its
``config`` names another) and normalised by :func:`normalise_hu`. Output: two logit maps,
``lungs`` (0 background, 1 right lung, 2 left lung; lesions count as lung) and ``lesions``
(0 none, 1 ground-glass opacity, 2 consolidation: the experts' region class).

:class:`NetEnsemble` averages several such networks (the mean of their softmax per head,
returned as its log, so every consumer of logits takes the same argmax).

:class:`NetPair` holds two such networks, one trained for each job: the lungs come from
the first one's lung head and the lesions from the second one's lesion head (the lung
stage runs only the first, the lesion stage only the second; the second may be an
ensemble). :class:`FlipMean` runs a network on a slice and on its left-right mirror and
averages the two as :class:`NetEnsemble` averages its members. :func:`build_net` makes any
of them from the ``config`` stored with the weights.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["HU_WINDOW", "SPACING_MM", "FlipMean", "LesionNet", "NetEnsemble", "NetPair",
           "NetWrapper", "build_net", "normalise_hu", "shared_spacing_mm"]

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


class NetEnsemble(nn.Module):
    """Equal-weight ensemble of :class:`LesionNet` of one pixel size: per head, the log of
    the mean of the members' softmax (a log-probability, used as logits: its argmax is the
    class the averaged probabilities favour).

    Parameters
    ----------
    nets : list of LesionNet
        The members (at least one), all working at one pixel size.
    """

    def __init__(self, nets: list[LesionNet]) -> None:
        super().__init__()
        if not nets:
            raise ValueError("an ensemble needs at least one network")
        self.nets = nn.ModuleList(nets)
        shared_spacing_mm(list(nets))  # refuse mixed pixel sizes when built
        self.config = {"ensemble": [dict(n.config) for n in nets]}

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return max(n.multiple for n in self.nets)

    @property
    def spacing_mm(self) -> float:
        """In-plane pixel size every member works at, mm."""
        return shared_spacing_mm(list(self.nets))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (N, C, H, W) normalised -> (lung, lesion) log mean softmax, each
        (N, 3, H, W)."""
        outs = [n(x) for n in self.nets]
        if len(outs) == 1:
            return outs[0]
        return _log_mean_softmax(outs)


def _log_mean_softmax(outs: list[tuple[torch.Tensor, torch.Tensor]]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per head, the log of the mean softmax of several (lung, lesion) logit pairs."""
    return tuple(torch.log(torch.stack([o[i].float().softmax(1) for o in outs]).mean(0)
                           + 1e-8) for i in range(2))


#: The lung head's channels of a left-right mirrored slice in the slice's own order
#: (background, right, left: the mirror's right lung is the slice's left lung).
_MIRROR_LUNG = [0, 2, 1]


class NetWrapper(nn.Module):
    """A module around one network ``net`` that works at its pixel size and input
    multiple (the attributes :func:`~lesionquant.segment.model._infer.predict_labels`
    reads)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return self.net.multiple

    @property
    def spacing_mm(self) -> float:
        """In-plane pixel size the network works at, mm."""
        return self.net.spacing_mm


class FlipMean(NetWrapper):
    """A network run on a slice and on its left-right mirror (mirrored back, the lung
    head's right and left swapped), the two averaged per head as :class:`NetEnsemble`
    averages its members: the log of the mean softmax. Training mirrors half the slices,
    so the mirror is a view the network knows; it costs a second forward pass.

    Parameters
    ----------
    net : LesionNet or NetEnsemble
        The network averaged over the mirror.
    """

    def __init__(self, net: LesionNet | NetEnsemble) -> None:
        super().__init__(net)
        self.config = {"flip": dict(net.config)}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (N, C, H, W) normalised -> (lung, lesion) log mean softmax of the slice and
        its mirror, each (N, 3, H, W). The mirror's pixel blocks are the slice's when W is a
        multiple of :attr:`multiple` (as :func:`~lesionquant.segment.model._infer.predict_labels`
        pads it)."""
        lung, lesion = self.net(torch.cat([x, x.flip(-1)]))
        n = x.shape[0]
        mirror = (lung[n:].flip(-1)[:, _MIRROR_LUNG], lesion[n:].flip(-1))
        return _log_mean_softmax([(lung[:n], lesion[:n]), mirror])


class NetPair(nn.Module):
    """Two :class:`LesionNet`: the lung head of ``lungs`` and the lesion head of ``lesions``.

    Parameters
    ----------
    lungs : LesionNet
        The network whose lung head gives the lungs (its lesion head is not used).
    lesions : LesionNet or NetEnsemble
        The network (or ensemble) whose lesion head gives the lesions (its lung head is
        not used).
    """

    def __init__(self, lungs: LesionNet,
                 lesions: LesionNet | NetEnsemble | FlipMean) -> None:
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


def build_net(config: dict) -> LesionNet | NetEnsemble | NetPair:
    """The (untrained) network a weights file's ``config`` describes: a :class:`NetPair`
    when it names ``lungs`` and ``lesions``, a :class:`NetEnsemble` when it names
    ``ensemble`` (a list of member configs), a :class:`FlipMean` when it names ``flip``
    (the config of the network it wraps), else a :class:`LesionNet`."""
    if "lungs" in config and "lesions" in config:
        return NetPair(LesionNet(**config["lungs"]), build_net(config["lesions"]))
    if "ensemble" in config:
        return NetEnsemble([LesionNet(**c) for c in config["ensemble"]])
    if "flip" in config:
        return FlipMean(build_net(config["flip"]))
    return LesionNet(**config)
