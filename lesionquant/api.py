"""``quantify``: one scan in, one :class:`~lesionquant.measure.Result` out.

The stages run in order and are timed: load -> lungs -> lesions -> measure. Each stage is
also importable on its own (:func:`lesionquant.segment.segment_lungs`,
:func:`lesionquant.segment.segment_lesions`, :func:`lesionquant.measure.measure`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lesionquant._version import __version__
from lesionquant.scan import Scan
from lesionquant.settings import Method, Settings

if TYPE_CHECKING:  # pragma: no cover
    from lesionquant.measure import Result

__all__ = ["PLAUSIBLE_LUNG_ML", "quantify"]

logger = logging.getLogger(__name__)

PLAUSIBLE_LUNG_ML = (1500.0, 10000.0)
"""Lung volume of an adult chest CT covering both lungs, mL. Total lung capacity of adults is
about 4-8 L; CT in inspiration measures 3-7.5 L, severe COVID-19 or fibrosis down to about
2 L, hyperinflated COPD up to about 9.5 L. A volume outside this range means partial
coverage, a child, an expiration scan of a small patient, or a wrong spacing: the result is
kept but flagged (a ``lung volume implausible`` warning, in result.json, results.csv and the
report)."""


def quantify(source: Any, settings: Settings | None = None, **overrides: Any) -> Result:
    """Measure the GGO and consolidation burden of one CT scan.

    Parameters
    ----------
    source : Scan, SimpleITK.Image, str or os.PathLike
        An already loaded :class:`~lesionquant.scan.Scan`, a SimpleITK image in HU, or
        anything :func:`lesionquant.load_scan` accepts (DICOM folder or file, NIfTI, ...).
    settings : Settings, optional
        Pipeline settings; defaults to ``Settings()``.
    **overrides
        Individual settings replacing those of ``settings`` (e.g. ``ggo_hu=(-700, -300)``).

    Returns
    -------
    Result
        Volumes in mL, % of lung, zones, densities, severity score, the label map and the
        provenance.

    Raises
    ------
    NoLungError
        The scan holds no lung.
    InvalidInputError
        The source cannot be read.
    WeightsError
        ``method="model"`` was asked for but no model weights are available.
    """
    from lesionquant.measure import Provenance, Result, measure
    from lesionquant.segment import resolve_device, segment_lesions, segment_lungs

    s = settings or Settings()
    if overrides:
        s = s.replace(**overrides)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    t0 = time.perf_counter()
    scan = _load(source)
    if not isinstance(source, Scan):  # a Scan given in was loaded elsewhere: no load stage
        timings["load"] = time.perf_counter() - t0
    weights_sha256 = None
    if s.method is Method.MODEL:
        from lesionquant.segment.model import (
            load_model,
            segment_lesions_model,
            segment_lungs_model,
        )

        device = resolve_device(s.device)
        weights_sha256 = load_model(device).sha256
        lung_stage = functools.partial(segment_lungs_model, device=device)
        lesion_stage = functools.partial(segment_lesions_model, device=device)
    else:
        device = "cpu"  # the classical pipeline runs on the CPU whatever settings.device says
        lung_stage, lesion_stage = segment_lungs, segment_lesions
    with _collect_warnings("lesionquant.segment") as stage_warnings:
        t0 = time.perf_counter()
        lungs = lung_stage(scan.image, s)
        timings["lungs"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        labelmap = lesion_stage(scan.image, lungs, s)
        timings["lesions"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    numbers = measure(scan.image, labelmap, lungs)
    timings["measure"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    lo, hi = PLAUSIBLE_LUNG_ML
    if not lo <= numbers["lung_ml"] <= hi:
        stage_warnings.append(
            f"lung volume implausible for an adult chest CT: {numbers['lung_ml']:.0f} mL "
            f"outside {lo:.0f}-{hi:.0f} mL (partial coverage, child, or wrong spacing?)")
        logger.warning("%s: %s", scan.source, stage_warnings[-1])
    provenance = Provenance(
        version=__version__,
        method=s.method.value,
        device=device,
        settings=s.to_dict(),
        timings_s=timings,
        warnings=(*scan.warnings, *stage_warnings),
        series_uid=scan.identifiers.series_uid,
        weights_sha256=weights_sha256,
    )
    logger.info("%s: lung %.0f mL, lesion %.2f %% (%.1f s)", scan.source, numbers["lung_ml"],
                numbers["lesion_pct"], timings["total"])
    return Result(measurements=numbers, labelmap=labelmap, lungs=lungs, scan=scan,
                  provenance=provenance)


class _WarningCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(" ".join(record.getMessage().split()))


@contextlib.contextmanager
def _collect_warnings(logger_name: str) -> Iterator[list[str]]:
    """Collect the warnings a stage logs, so they reach the result's provenance too."""
    handler = _WarningCollector()
    stage_logger = logging.getLogger(logger_name)
    stage_logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        stage_logger.removeHandler(handler)


def _load(source: Any) -> Scan:
    """A Scan passes through; anything else (paths, SimpleITK images, arrays) goes through
    :func:`lesionquant.load_scan`, so padding, the HU check and geometry rules always apply."""
    if isinstance(source, Scan):
        return source
    from lesionquant.io import load_scan

    return load_scan(source)
