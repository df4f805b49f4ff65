"""Assemble one DICOM series into a :class:`~lesionquant.scan.Scan` (HU, LPS, mm)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from lesionquant.errors import DicomDecodeError, GeometryError, InvalidInputError
from lesionquant.io._discover import SeriesInfo
from lesionquant.io._geometry import build_image, plan_stack
from lesionquant.io._header import SliceHeader
from lesionquant.io._pixels import (
    MAX_VOLUME_VOXELS,
    SliceDecoder,
    check_declared_size,
    check_looks_like_hu,
    hu_dtype,
    new_volume,
)
from lesionquant.scan import Acquisition, Identifiers, Scan

__all__ = ["load_series"]

logger = logging.getLogger(__name__)


def _identifiers(h: SliceHeader) -> Identifiers:
    return Identifiers(patient_id=h.patient_id, patient_name=h.patient_name,
                       study_uid=h.study_uid, series_uid=h.series_uid, study_date=h.study_date,
                       study_time=h.study_time, accession=h.accession)


def _acquisition(h: SliceHeader, tilt_deg: float) -> Acquisition:
    return Acquisition(modality=h.modality, series_description=h.series_description,
                       image_type=h.image_type, slice_thickness_mm=h.slice_thickness_mm,
                       kernel=h.kernel, manufacturer=h.manufacturer, model=h.model, kvp=h.kvp,
                       contrast=h.contrast, gantry_tilt_deg=tilt_deg)


def load_series(series: SeriesInfo, source: str, warnings_in: Sequence[str] = (), *,
                allow_incomplete: bool = False) -> Scan:
    """Decode, sort and calibrate one series.

    Parameters
    ----------
    series : SeriesInfo
        From :func:`lesionquant.io.discover_series`.
    source : str
        The folder or file the user gave (named in messages).
    warnings_in : sequence of str
        Warnings from discovery, carried into the scan.
    allow_incomplete : bool
        Drop slices whose pixel data is cut and interpolate over missing slices, with an
        ``incomplete series:`` warning each, instead of raising.

    Returns
    -------
    Scan
    """
    warns = list(warnings_in)
    headers = []
    for h in series.headers:
        try:
            check_declared_size(h)  # every file, before any decoding
        except DicomDecodeError as exc:
            if not (allow_incomplete and exc.problem.startswith("truncated")):
                raise
            warns.append(f"incomplete series: {h.label}: {exc.problem}; slice dropped")
            continue
        headers.append(h)
    if not headers:
        raise DicomDecodeError("every slice of the series is cut", source=source)
    if not series.first.modality:
        warns.append(f"{source}: Modality (0008,0060) missing; treated as CT because the "
                     "image is calibrated like CT (checked below)")
    plan = plan_stack(headers, source, allow_gaps=allow_incomplete)
    warns.extend(plan.warnings)
    rows, cols = series.first.rows, series.first.columns
    n = len(plan.order)
    if n * rows * cols > MAX_VOLUME_VOXELS:  # type: ignore[operator]
        raise InvalidInputError(f"series of {n} x {cols} x {rows} voxels exceeds the size limit",
                                source=source)
    dtype = hu_dtype(headers)
    decoder = SliceDecoder(dtype)
    # The output image is allocated once and filled slice by slice (no stacking, no copy).
    image, volume = new_volume((n, rows, cols), dtype)
    for k, idx in enumerate(plan.order):
        decoder.to_hu(headers[idx], volume[k])
    scratch = np.empty((rows, cols), dtype=dtype)
    for kept, others in plan.duplicates:
        k = plan.order.index(kept)
        for idx in others:
            decoder.to_hu(headers[idx], scratch)
            if not np.array_equal(scratch, volume[k]):
                raise GeometryError(
                    f"conflicting duplicate slices at the same position: "
                    f"{headers[kept].label} and {headers[idx].label} differ", source=source)
        warns.append(f"{source}: {len(others)} identical duplicate slice(s) of "
                     f"{headers[kept].label} dropped")
    warns.extend(check_looks_like_hu(volume, source))
    result = build_image(volume, plan, image=image, source=source)
    del volume  # the writable view must not outlive the image it points into
    image = result
    for w in warns:
        logger.warning("%s", w)
    files = tuple(dict.fromkeys(headers[i].path for i in plan.order))  # multi-frame: once
    return Scan(image=image, source=source, identifiers=_identifiers(series.first),
                acquisition=_acquisition(series.first, plan.tilt_deg), warnings=tuple(warns),
                files=files)
