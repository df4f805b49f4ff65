"""Volumes for the viewer: load a scan's CT and label map on demand, cache a few, and
render axial slices as PNG (server-side windowing, overlay as a transparent layer)."""

from __future__ import annotations

import collections
import io
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesionquant.errors import InvalidInputError
from lesionquant.qa._display import (
    COLOURS,
    WINDOWS,
    DisplayVolume,
    check_renderable,
    fill_rgba,
    to_display,
    window_uint8,
)
from lesionquant.qa._outdir import ScanEntry
from lesionquant.segment import LUNG_LABELS, Label

logger = logging.getLogger(__name__)

__all__ = ["ViewVolume", "VolumeCache", "match_inputs"]

#: Overlays are drawn at least this many pixels across, so a 1-pixel contour stays thin
#: when a small (e.g. 64 x 64) scan is shown large.
_MIN_OVERLAY_PX = 512


@dataclass(frozen=True)
class ViewVolume:
    """A scan prepared for the viewer.

    Attributes
    ----------
    vol : DisplayVolume
        CT and labels in display orientation.
    ggo_voxels, consolidation_voxels : (Z,) ndarray of int
        Lesion voxels per axial slice (for the profile strip and the start slice).
    lung_range : tuple of int
        First and last axial slice with lung.
    """

    vol: DisplayVolume
    ggo_voxels: np.ndarray
    consolidation_voxels: np.ndarray
    lung_range: tuple[int, int]

    @classmethod
    def build(cls, vol: DisplayVolume) -> ViewVolume:
        lab = vol.labels
        ggo = np.count_nonzero(lab == Label.GGO, axis=(1, 2))
        con = np.count_nonzero(lab == Label.CONSOLIDATION, axis=(1, 2))
        zs = np.flatnonzero(vol.lung.any(axis=(1, 2)))
        rng = (int(zs[0]), int(zs[-1])) if zs.size else (0, lab.shape[0] - 1)
        return cls(vol, ggo, con, rng)

    @property
    def n_slices(self) -> int:
        return int(self.vol.hu.shape[0])

    @property
    def start_slice(self) -> int:
        """The slice with the most lesion, else the middle of the lungs."""
        total = self.ggo_voxels + self.consolidation_voxels
        if total.any():
            return int(np.argmax(total))
        return (self.lung_range[0] + self.lung_range[1]) // 2

    def info(self) -> dict[str, object]:
        """JSON-ready geometry and per-slice lesion profile."""
        nz, ny, nx = self.vol.hu.shape
        return {
            "n_slices": int(nz), "rows": int(ny), "cols": int(nx),
            "spacing_mm": list(self.vol.spacing_mm),
            "z_mm": [round(self.vol.z_mm(k), 2) for k in range(nz)],
            "ggo_voxels": self.ggo_voxels.tolist(),
            "consolidation_voxels": self.consolidation_voxels.tolist(),
            "lung_range": list(self.lung_range), "start_slice": self.start_slice,
        }

    def _check(self, k: int) -> None:
        if not 0 <= k < self.n_slices:
            raise IndexError(f"slice {k} outside 0..{self.n_slices - 1}")

    def ct_png(self, k: int, window: str) -> bytes:
        """Axial slice ``k`` windowed (``"lung"`` or ``"mediastinum"``) as greyscale PNG."""
        from PIL import Image

        self._check(k)
        grey = window_uint8(self.vol.hu[k], WINDOWS[window])
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(grey), mode="L").save(buf, format="PNG",
                                                                   compress_level=1)
        return buf.getvalue()

    def overlay_png(self, k: int) -> bytes:
        """Axial slice ``k`` overlay: opaque lesion fills and the lung contour, RGBA PNG.

        Transparency is applied by the page (opacity slider), so fills are opaque here.
        """
        from PIL import Image
        from scipy import ndimage

        self._check(k)
        lab = self.vol.labels[k]
        scale = max(1, -(-_MIN_OVERLAY_PX // max(lab.shape)))
        if scale > 1:
            lab = np.repeat(np.repeat(lab, scale, axis=0), scale, axis=1)
        rgba = fill_rgba(lab)
        lut = np.zeros(256, dtype=bool)
        lut[list(LUNG_LABELS)] = True
        lung = lut[lab]
        edge = lung & ~ndimage.binary_erosion(lung, iterations=max(1, scale // 3))
        h = COLOURS["lung"].lstrip("#")
        rgba[edge] = (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255)
        buf = io.BytesIO()
        Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG", compress_level=1)
        return buf.getvalue()


def _load_ct(entry: ScanEntry, hint: tuple[str, str | None] | None):
    """The CT of a result, loaded with :func:`lesionquant.load_scan`.

    The input comes from ``result.json`` when the batch recorded it (``--keep-identifiers``)
    or from ``hint`` (``(source, series_uid)`` found by matching the review's ``--input``
    paths to the scan ids).
    """
    import lesionquant

    where = entry.folder / "result.json"
    if hint is not None:
        source, series_uid = hint
    else:
        source, series_uid = entry.source, entry.series_uid or None
    if not source:
        raise InvalidInputError(
            "the input of this scan is not recorded (pseudonymous batch); start the viewer "
            "with --input pointing at the batch's inputs to see the CT", source=where)
    if not Path(source).exists():
        raise InvalidInputError(f"input {source} is no longer there; cannot show the CT",
                                source=where)
    scan = lesionquant.load_scan(source, series_uid=series_uid)
    return scan.image, scan.acquisition


class VolumeCache:
    """Load scans on demand and keep the ``size`` most recently used in memory.

    Parameters
    ----------
    size : int
        How many scans to keep (a 512 x 512 x 300 scan takes about 230 MB).
    sources : dict, optional
        ``scan_id -> (source, series_uid)`` for scans whose ``result.json`` does not record
        its input (see :func:`match_inputs`).
    """

    def __init__(self, size: int = 3,
                 sources: dict[str, tuple[str, str | None]] | None = None) -> None:
        self._size = size
        self._sources = dict(sources or {})
        self._items: collections.OrderedDict[str, ViewVolume] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, entry: ScanEntry) -> ViewVolume:
        """The prepared volume of ``entry`` (loaded on first use).

        Raises
        ------
        LesionQuantError
            When the CT or label map cannot be loaded or must not be rendered.
        """
        key = str(entry.folder.resolve())
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            lock = self._loading.setdefault(key, threading.Lock())
        with lock:  # one load per scan even when the page asks for many slices at once
            with self._lock:
                if key in self._items:
                    return self._items[key]
            view = self._load(entry, self._sources.get(entry.scan_id))
            with self._lock:
                self._items[key] = view
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
        return view

    @staticmethod
    def _load(entry: ScanEntry, hint: tuple[str, str | None] | None) -> ViewVolume:
        import SimpleITK as sitk

        ct, acquisition = _load_ct(entry, hint)
        check_renderable(acquisition, entry.scan_id)
        if not entry.labels_path.is_file():
            raise InvalidInputError("labels.nii.gz is missing", source=entry.folder)
        try:
            labels = sitk.ReadImage(str(entry.labels_path))
        except RuntimeError as exc:
            raise InvalidInputError(f"cannot read label map ({str(exc).splitlines()[0]})",
                                    source=entry.labels_path) from exc
        # The label map was written from the CT's grid; NIfTI stores geometry in float32,
        # so put it back on the CT grid exactly when it matches to within rounding.
        if labels.GetSize() == ct.GetSize() and np.allclose(
                labels.GetSpacing(), ct.GetSpacing(), rtol=1e-4) and np.allclose(
                labels.GetDirection(), ct.GetDirection(), atol=1e-4):
            labels.CopyInformation(ct)
        view = ViewVolume.build(to_display(ct, sitk.Cast(labels, sitk.sitkUInt8),
                                           source=entry.scan_id))
        logger.info("viewer: loaded %s (%d slices)", entry.scan_id, view.n_slices)
        return view


def match_inputs(out_dir: Path, inputs: list[str], *, salt: str | None = None
                 ) -> dict[str, tuple[str, str | None]]:
    """Find the input of each scan of ``OUT`` among ``inputs`` (scan ids are salted hashes).

    The inputs are expanded into jobs exactly as ``lesionquant run`` does, with the same
    salt (``salt``, else ``LESIONQUANT_SALT``, else ``OUT/.salt``), so each job's scan id is
    the folder name of its result.

    Returns
    -------
    dict
        ``scan_id -> (source, series_uid)``.

    Raises
    ------
    InvalidInputError
        When no salt is known (the scan ids cannot be recomputed).
    """
    import os

    from lesionquant.batch import SALT_ENV, expand_inputs

    salt_file = Path(out_dir) / ".salt"
    salt = salt or os.environ.get(SALT_ENV) or (
        salt_file.read_text(encoding="utf-8").strip() if salt_file.is_file() else "")
    if not salt:
        raise InvalidInputError(f"no pseudonym salt ({salt_file} missing and {SALT_ENV} "
                                "unset); cannot match --input to scan ids", source=out_dir)
    jobs, errors = expand_inputs([str(p) for p in inputs], salt)
    for err in errors:
        logger.warning("%s: %s", err.source, err.reason)
    found = {job.scan_id: (job.source, job.series_uid) for job in jobs}
    logger.info("viewer: %d input series matched", len(found))
    return found
