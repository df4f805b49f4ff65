"""The QA montage: one PNG per scan that a radiologist judges in seconds.

Layout (fixed size, :data:`MONTAGE_SIZE_PX`, black background):

* a header with the pseudonymous scan id and the key numbers (lung mL, lesion %, GGO %,
  consolidation %);
* left, up to 16 axial slices evenly spaced through the lungs (z-range of labels 1-4),
  most superior first, all cropped to the same box around the lungs, R/L markers on each;
* right, a coronal reformat through the lungs' centre and a sagittal reformat through
  each lung, superior up;
* lung window W1500/L-600, the lung contour as a thin line, GGO and consolidation as
  translucent fills (palette and its reasons in :mod:`lesionquant.qa._display`);
* a legend at the bottom.

matplotlib is imported inside the functions (Agg canvas, no pyplot global state), so
``import lesionquant`` stays light and rendering is safe from the viewer's threads.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lesionquant.qa._display import (
    COLOURS,
    LUNG_WINDOW,
    DisplayVolume,
    blend_fills,
    check_renderable,
    to_display,
    window_uint8,
)

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from lesionquant.scan import Acquisition

logger = logging.getLogger(__name__)

__all__ = ["MONTAGE_SIZE_PX", "Montage", "Panel", "render_montage"]

#: Width and height of every montage, pixels.
MONTAGE_SIZE_PX = (2000, 1250)
_DPI = 100
_HEADER_PX = 78
_FOOTER_PX = 40
_AXIAL_WIDTH_PX = 1240
_GAP_PX = 6
#: Reformats are drawn only when the scan has at least this many slices.
_MIN_SLICES_FOR_REFORMAT = 8
_TEXT = "#f0f0f0"
_DIM_TEXT = "#b0b0b0"


@dataclass(frozen=True)
class Panel:
    """Where one view landed in the montage.

    Attributes
    ----------
    view : str
        ``"axial"``, ``"coronal"`` or ``"sagittal"``.
    index : int
        Slice index in the display volume: z for axial, y for coronal, x for sagittal.
    rows, cols : tuple of int
        Half-open ranges ``(start, stop)`` of the displayed plane's rows and columns that
        the panel shows (the crop). For reformats rows count from the top (superior).
    bbox_px : tuple of float
        ``(x0, y0, x1, y1)`` of the image in montage pixels, origin top-left.
    """

    view: str
    index: int
    rows: tuple[int, int]
    cols: tuple[int, int]
    bbox_px: tuple[float, float, float, float]

    def to_pixel(self, row: float, col: float) -> tuple[float, float]:
        """Montage pixel ``(x, y)`` of the centre of plane pixel ``(row, col)``."""
        x0, y0, x1, y1 = self.bbox_px
        fx = (col - self.cols[0] + 0.5) / (self.cols[1] - self.cols[0])
        fy = (row - self.rows[0] + 0.5) / (self.rows[1] - self.rows[0])
        return x0 + fx * (x1 - x0), y0 + fy * (y1 - y0)


@dataclass(frozen=True)
class Montage:
    """A rendered QA montage.

    Attributes
    ----------
    png : bytes
        The PNG file, :data:`MONTAGE_SIZE_PX` pixels.
    panels : tuple of Panel
        Where each view is in the picture (for tests and image maps).
    """

    png: bytes
    panels: tuple[Panel, ...]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the PNG atomically (temp file in the same folder, then ``os.replace``)."""
        from lesionquant._atomic import write_bytes_atomic

        return write_bytes_atomic(Path(path), self.png)


def _fmt(numbers: Mapping[str, Any], key: str, unit: str, digits: int) -> str:
    value = numbers.get(key)
    if value is None:
        return "n/a"
    try:
        return f"{float(value):,.{digits}f}{unit}"
    except (TypeError, ValueError):
        return "n/a"


def caption_text(numbers: Mapping[str, Any]) -> str:
    """The one-line numbers caption, e.g. ``"lesion 12.3 % of lung (GGO 10.1 %, ...)"``."""
    return (
        f"lesion {_fmt(numbers, 'lesion_pct', ' %', 1)} of lung   "
        f"(GGO {_fmt(numbers, 'ggo_pct', ' %', 1)}, "
        f"consolidation {_fmt(numbers, 'consolidation_pct', ' %', 1)})   "
        f"lung {_fmt(numbers, 'lung_ml', ' mL', 0)}"
    )


def _bbox(mask: np.ndarray, shape: tuple[int, ...], margin: tuple[int, ...]
          ) -> list[tuple[int, int]]:
    """Per-axis half-open bounding box of ``mask`` (whole extent if empty), plus margin."""
    out = []
    for axis, (n, m) in enumerate(zip(shape, margin, strict=True)):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other)) if mask.any() else np.array([0, n - 1])
        out.append((max(0, int(hit[0]) - m), min(n, int(hit[-1]) + 1 + m)))
    return out


def _view_box(vol: DisplayVolume, lung: np.ndarray, ks: np.ndarray
              ) -> list[tuple[int, int]]:
    """Half-open ``(z, y, x)`` ranges shown: the body in-plane, the lungs (+30 mm) in z.

    In-plane the crop covers the whole body (voxels above -400 HU on the shown slices) and
    not just the segmented lungs, so lung the segmentation missed (dense consolidation
    outside the contour) is still on the picture.
    """
    nz, ny, nx = vol.hu.shape
    sx, sy, sz = vol.spacing_mm
    body = (vol.hu[ks] > -400).any(axis=0)  # (Y, X): body and table, not outside-FOV padding
    inplane = _bbox(body[None] | lung[ks].any(axis=0)[None], (1, ny, nx),
                    (0, int(np.ceil(5 / sy)), int(np.ceil(5 / sx))))[1:]
    z_range = _bbox(lung, (nz, ny, nx), (int(np.ceil(30 / sz)), 0, 0))[0]
    return [z_range, *inplane]


def _axial_indices(lung_z: np.ndarray, nz: int, n_axial: int) -> np.ndarray:
    """Up to ``n_axial`` slices evenly spaced through the lung z-range, superior first."""
    zs = np.flatnonzero(lung_z)
    z0, z1 = (int(zs[0]), int(zs[-1])) if zs.size else (0, nz - 1)
    count = min(n_axial, z1 - z0 + 1)
    centres = z0 + (np.arange(count) + 0.5) * (z1 - z0 + 1) / count
    ks = np.unique(np.clip(np.floor(centres).astype(int), z0, z1))
    return ks[::-1]


def _grid(n: int, width: float, height: float, aspect: float) -> tuple[int, int]:
    """Columns and rows for ``n`` tiles of ``aspect`` (h/w) that make the tiles largest."""
    best, best_size = (1, n), -1.0
    for cols in range(1, n + 1):
        rows = -(-n // cols)
        tile_w = min(width / cols, height / rows / aspect)
        if tile_w > best_size + 1e-9:
            best, best_size = (cols, rows), tile_w
    return best


class _Canvas:
    """A fixed-size Agg figure placed in pixel units (origin top-left)."""

    def __init__(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.w, self.h = MONTAGE_SIZE_PX
        self.fig = Figure(figsize=(self.w / _DPI, self.h / _DPI), dpi=_DPI, facecolor="black")
        self.canvas = FigureCanvasAgg(self.fig)
        self.axes: list[tuple[Any, str, int, tuple[int, int], tuple[int, int]]] = []

    def add_image(self, box: tuple[float, float, float, float], rgb: np.ndarray,
                  lung: np.ndarray, aspect: float, *, view: str, index: int,
                  rows: tuple[int, int], cols: tuple[int, int]) -> Any:
        x, y, w, h = box
        ax = self.fig.add_axes((x / self.w, 1 - (y + h) / self.h, w / self.w, h / self.h))
        ax.set_facecolor("black")
        ax.imshow(rgb, aspect=aspect, interpolation="antialiased")
        if lung.any() and min(lung.shape) > 1:
            ax.contour(lung.astype(np.float32), levels=[0.5], colors=[COLOURS["lung"]],
                       linewidths=0.9, antialiased=True)
        ax.set_xlim(-0.5, rgb.shape[1] - 0.5)
        ax.set_ylim(rgb.shape[0] - 0.5, -0.5)
        ax.set_axis_off()
        self.axes.append((ax, view, index, rows, cols))
        return ax

    def text(self, x: float, y: float, s: str, **kw: Any) -> None:
        kw.setdefault("color", _TEXT)
        self.fig.text(x / self.w, 1 - y / self.h, s, **kw)

    def render(self) -> tuple[bytes, tuple[Panel, ...]]:
        self.canvas.draw()
        panels = []
        for ax, view, index, rows, cols in self.axes:
            bb = ax.get_window_extent()
            panels.append(Panel(view, index, rows, cols,
                                (float(bb.x0), float(self.h - bb.y1),
                                 float(bb.x1), float(self.h - bb.y0))))
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=_DPI, facecolor="black")
        return buf.getvalue(), tuple(panels)


def _tile(canvas: _Canvas, box: tuple[float, float, float, float], hu: np.ndarray,
          labels: np.ndarray, lung: np.ndarray, aspect: float, corners: tuple[str, str, str],
          note: str, *, view: str, index: int, rows: tuple[int, int],
          cols: tuple[int, int]) -> None:
    """Draw one view cropped to ``rows`` x ``cols`` with orientation letters and a note."""
    sl = (slice(*rows), slice(*cols))
    rgb = blend_fills(window_uint8(hu[sl], LUNG_WINDOW), labels[sl])
    ax = canvas.add_image(box, rgb, lung[sl], aspect, view=view, index=index,
                          rows=rows, cols=cols)
    # Letters and notes sit on a dark box: chest wall is white in the lung window.
    backing = {"facecolor": "black", "alpha": 0.65, "edgecolor": "none", "pad": 1.5}
    style = {"color": _TEXT, "fontsize": 10, "fontweight": "bold", "transform": ax.transAxes,
             "bbox": backing}
    left, right, top = corners
    ax.text(0.012, 0.5, left, ha="left", va="center", **style)
    ax.text(0.988, 0.5, right, ha="right", va="center", **style)
    if top:
        ax.text(0.5, 0.985, top, ha="center", va="top", **style)
    ax.text(0.012, 0.015, note, ha="left", va="bottom", color=_TEXT, fontsize=8,
            transform=ax.transAxes, bbox=backing)


def _draw_axials(canvas: _Canvas, vol: DisplayVolume, lung: np.ndarray, ks: np.ndarray,
                 area: tuple[float, float, float, float], yx_box: list[tuple[int, int]]
                 ) -> None:
    x0, y0, w, h = area
    nz = vol.hu.shape[0]
    rows, cols = yx_box
    aspect = vol.axial_aspect * (rows[1] - rows[0]) / (cols[1] - cols[0])
    ncols, nrows = _grid(len(ks), w, h, aspect)
    tw, th = w / ncols, h / nrows
    for n, k in enumerate(ks):
        r, c = divmod(n, ncols)
        box = (x0 + c * tw + _GAP_PX / 2, y0 + r * th + _GAP_PX / 2, tw - _GAP_PX, th - _GAP_PX)
        hu, lab = vol.axial(int(k))
        _tile(canvas, box, hu, lab, lung[k], vol.axial_aspect, ("R", "L", ""),
              # Numbered from the top as the viewer counts: "slice 20/140" is the same there.
              f"{nz - k}/{nz}  z {vol.z_mm(int(k)):.0f} mm", view="axial", index=int(k),
              rows=rows, cols=cols)


def _draw_reformats(canvas: _Canvas, vol: DisplayVolume, lung: np.ndarray,
                    area: tuple[float, float, float, float],
                    box_zyx: list[tuple[int, int]]) -> None:
    x0, y0, w, h = area
    nz = vol.hu.shape[0]
    (z_lo, z_hi), rows_y, cols_x = box_zyx
    zr = (nz - z_hi, nz - z_lo)  # rows of the vertically flipped reformat
    labels = vol.labels
    cy = int(np.rint(np.flatnonzero(lung.any(axis=(0, 2))).mean())) if lung.any() \
        else labels.shape[1] // 2
    hu_c, lab_c = vol.coronal(cy)
    half = h * 0.5
    _tile(canvas, (x0, y0, w, half - _GAP_PX), hu_c, lab_c, lung[::-1, cy, :],
          vol.coronal_aspect, ("R", "L", "S"), f"coronal #{cy}", view="coronal", index=cy,
          rows=zr, cols=cols_x)
    lung_x = lung.any(axis=(0, 1))
    right = _lung_centre_x(labels, 1, lung_x, first_half=True)
    left = _lung_centre_x(labels, 2, lung_x, first_half=False)
    for n, (cx, name) in enumerate(((right, "right"), (left, "left"))):
        hu_s, lab_s = vol.sagittal(cx)
        box = (x0 + n * w / 2, y0 + half, w / 2 - _GAP_PX, half - _GAP_PX)
        _tile(canvas, box, hu_s, lab_s, lung[::-1, :, cx], vol.sagittal_aspect,
              ("A", "P", "S"), f"sagittal {name} #{cx}", view="sagittal", index=cx,
              rows=zr, cols=rows_y)


def _lung_centre_x(labels: np.ndarray, value: int, lung_x: np.ndarray, *, first_half: bool
                   ) -> int:
    """Column through the centre of one lung (label ``value``), or of that half of the lungs.

    Counted on every 2nd row and slice: a centre needs no more, and a 512 x 512 x 300 scan
    is read 4x faster.
    """
    per_x = np.count_nonzero(labels[::2, ::2, :] == value, axis=(0, 1)).astype(float)
    if per_x.sum() == 0:
        xs = np.flatnonzero(lung_x)
        if xs.size == 0:
            xs = np.arange(labels.shape[2])
        mid = (xs[0] + xs[-1]) / 2
        xs = xs[xs <= mid] if first_half else xs[xs >= mid]
        return int(np.rint(xs.mean()))
    return int(np.rint((np.arange(per_x.size) * per_x).sum() / per_x.sum()))


def _draw_header_footer(canvas: _Canvas, scan_id: str, numbers: Mapping[str, Any],
                        n_axial: int, extra: str) -> None:
    from matplotlib.patches import Patch

    canvas.text(14, 34, f"{scan_id or 'scan'}    {caption_text(numbers)}", fontsize=20,
                fontweight="bold", va="baseline")
    canvas.text(14, 62, f"{n_axial} axial slices through the lungs, most superior first; "
                f"lung window {LUNG_WINDOW.label}; right lung on image left. {extra}",
                fontsize=11, color=_DIM_TEXT, va="baseline")
    handles = [
        Patch(facecolor=COLOURS["ggo"], alpha=0.85, label="GGO (ground-glass opacity)"),
        Patch(facecolor=COLOURS["consolidation"], alpha=0.85, label="consolidation"),
        Patch(facecolor="none", edgecolor=COLOURS["lung"], linewidth=2, label="lung contour"),
    ]
    canvas.fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False,
                      fontsize=12, labelcolor=_TEXT, bbox_to_anchor=(0.5, 0.0),
                      handlelength=2.5)


def render_montage(
    image: sitk.Image,
    labels: sitk.Image,
    *,
    scan_id: str = "",
    numbers: Mapping[str, Any] | None = None,
    acquisition: Acquisition | None = None,
    note: str = "",
    n_axial: int = 16,
) -> Montage:
    """Render the QA montage of a CT and its label map.

    Parameters
    ----------
    image : SimpleITK.Image
        3D CT, HU (LPS; any direction is reoriented for display).
    labels : SimpleITK.Image
        uint8 label map on the CT grid: 0 background, 1 right lung, 2 left lung, 3 GGO,
        4 consolidation (5 airway is drawn as background).
    scan_id : str
        Pseudonymous scan id shown in the header. Never pass a patient name or ID.
    numbers : mapping, optional
        ``Result.to_dict()``-like numbers; ``lung_ml``, ``lesion_pct``, ``ggo_pct`` and
        ``consolidation_pct`` are shown.
    acquisition : Acquisition, optional
        When given, derived and secondary-capture images are refused.
    note : str
        Extra text for the subtitle (e.g. method and version).
    n_axial : int
        Maximum number of axial slices (fewer when the lungs span fewer slices).

    Returns
    -------
    Montage
        PNG bytes of :data:`MONTAGE_SIZE_PX` pixels and the panel positions.

    Raises
    ------
    UnsupportedDicomError
        For derived or secondary-capture images.
    GeometryError
        When the label map is not on the CT grid.
    """
    if n_axial < 1:
        raise ValueError("render_montage: n_axial must be >= 1")
    check_renderable(acquisition, scan_id or "scan")
    vol = to_display(image, labels, source=scan_id or "scan")
    lung = vol.lung
    nz = vol.hu.shape[0]
    ks = _axial_indices(lung.any(axis=(1, 2)), nz, n_axial)
    box = _view_box(vol, lung, ks)

    canvas = _Canvas()
    top = _HEADER_PX
    height = canvas.h - _HEADER_PX - _FOOTER_PX
    reformat = nz >= _MIN_SLICES_FOR_REFORMAT
    axial_w = _AXIAL_WIDTH_PX if reformat else canvas.w
    _draw_axials(canvas, vol, lung, ks, (0, top, axial_w, height), box[1:])
    if reformat:
        _draw_reformats(canvas, vol, lung, (axial_w + _GAP_PX, top,
                                            canvas.w - axial_w - _GAP_PX, height), box)
        extra = ""
    else:
        extra = f"No reformats: {nz} slice(s)."
    _draw_header_footer(canvas, scan_id, numbers or {}, len(ks),
                        " ".join(s for s in (extra, note) if s))
    png, panels = canvas.render()
    logger.debug("montage %s: %d axial slices, %d bytes", scan_id, len(ks), len(png))
    return Montage(png=png, panels=panels)

