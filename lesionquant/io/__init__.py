"""Loading: whatever a hospital exports -> one CT volume in HU (:class:`~lesionquant.Scan`).

>>> from lesionquant.io import load_scan  # doctest: +SKIP
>>> scan = load_scan("study_folder/")     # doctest: +SKIP

See ``docs/loader.md`` for the decisions (irregular spacing, gaps, tilt, single slices).
"""

from __future__ import annotations

import logging
import os
import stat
from typing import TYPE_CHECKING, Any

from lesionquant.errors import IncompleteSeriesError, InvalidInputError
from lesionquant.io._discover import (
    Discovery,
    SeriesInfo,
    choose_series,
    discover_series,
    suspects_of,
)

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

    from lesionquant.scan import Scan

__all__ = ["Discovery", "SeriesInfo", "discover_series", "load_scan"]

logger = logging.getLogger(__name__)


def load_scan(source: Any, series_uid: str | None = None, *,
              allow_incomplete: bool = False,
              spacing_mm: Sequence[float] | None = None,
              origin_mm: Sequence[float] | None = None,
              direction: Sequence[float] | None = None) -> Scan:
    """Load a CT scan in Hounsfield units from any supported source.

    Parameters
    ----------
    source : str, os.PathLike, SimpleITK.Image or numpy.ndarray
        A folder of DICOM files (searched recursively; the CT series is chosen as
        ``lesionquant series`` explains), one DICOM file, a volume file (``.nii``, ``.nii.gz``,
        ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``), a 3D ``SimpleITK.Image`` in HU, or a
        ``(z, y, x)`` numpy array in HU (then ``spacing_mm`` is required).
    series_uid : str, optional
        Force this SeriesInstanceUID (or a key like ``UID#2`` shown by ``lesionquant series``).
    allow_incomplete : bool
        Quantify a series that has lost slices anyway: unreadable, empty or cut files beside
        its slices are skipped and missing slices interpolated over (gaps up to 3x the
        spacing), each recorded as an ``incomplete series:`` warning. Default ``False``: such a
        series raises :class:`~lesionquant.errors.IncompleteSeriesError` naming the file or
        the positions of the gap.
    spacing_mm : sequence of 3 float, optional
        For numpy arrays only: voxel spacing in **(x, y, z)** order, mm.
    origin_mm : sequence of 3 float, optional
        For numpy arrays only: LPS position of voxel ``[0, 0, 0]`` (x, y, z), mm.
    direction : sequence of 9 float, optional
        For numpy arrays only: row-major direction cosines (SimpleITK convention).

    Returns
    -------
    Scan
        ``scan.image`` is a 3D ``SimpleITK.Image`` in LPS, mm, HU (``sitkInt16`` when the HU
        values are integers, else ``sitkFloat32``); ``scan.warnings`` lists what was corrected.

    Raises
    ------
    lesionquant.errors.InvalidInputError
        Or one of its subclasses (``NoSeriesError``, ``DicomDecodeError``,
        ``UnsupportedDicomError``, ``NotCTError``, ``GeometryError``,
        ``IncompleteSeriesError``, ``ImplausibleValueError``) for every bad input; the
        one-line message names the input and the problem. ``AmbiguousInputError`` when a
        folder holds CT series of several patients or studies and no ``series_uid`` picks
        one (the message lists them).
    """
    import numpy as np

    if isinstance(source, np.ndarray):
        from lesionquant.io._volumes import from_array

        return from_array(source, spacing_mm=spacing_mm, origin_mm=origin_mm,
                          direction=direction)
    if spacing_mm is not None or origin_mm is not None or direction is not None:
        raise TypeError("spacing_mm/origin_mm/direction apply to numpy arrays only")
    if type(source).__name__ == "Image" and type(source).__module__.startswith("SimpleITK"):
        from lesionquant.io._volumes import from_sitk

        return from_sitk(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path, SimpleITK.Image or numpy array, not "
                        f"{type(source).__name__}")
    path = os.fspath(source)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:  # missing, dangling link, symlink loop, no permission
        reason = "no such file or folder" if isinstance(exc, FileNotFoundError) else (
            f"cannot be read ({exc.strerror or exc})")
        raise InvalidInputError(reason, source=path) from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InvalidInputError("not a regular file or folder (named pipe, socket or device)",
                                source=path)
    if os.path.isfile(path):
        from lesionquant.io._volumes import is_volume_file, read_volume_file

        if os.path.getsize(path) == 0:
            raise InvalidInputError("empty file", source=path)
        if is_volume_file(path):
            return read_volume_file(path)
    from lesionquant.io._dicom import load_series

    disc = discover_series(path, strict=os.path.isfile(path))
    series, warns = choose_series(disc, series_uid)
    lost = suspects_of(disc, series)
    if lost and not allow_incomplete:
        first = next(iter(lost))
        more = f" (and {len(lost) - 1} more)" if len(lost) > 1 else ""
        raise IncompleteSeriesError(
            f"a file beside the series' slices looks like a lost slice: {first}: "
            f"{lost[first]}{more}; not quantified (allow_incomplete / "
            "--allow-incomplete-series quantifies anyway)", source=path)
    for lost_path, why in lost.items():
        warns.append(f"incomplete series: {lost_path}: {why}; skipped")
    others = len(disc.suspects) - len(lost)
    if others:
        warns.append(f"{path}: {others} unreadable file(s) outside the series' folder(s) "
                     "skipped")
    logger.info("%s: loading series %s (%s)", path, series.short_uid,
                series.reason or series.excluded)
    return load_series(series, path, warns, allow_incomplete=allow_incomplete)
