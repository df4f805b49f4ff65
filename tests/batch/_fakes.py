"""A stand-in for quantify, injected through run_batch's private ``_compute``.

It loads the scan for real (lesionquant.load_scan), labels voxels with plain thresholds and
returns a real :class:`lesionquant.measure.Result`, so the batch machinery (workers, outputs,
resume, tables) is tested fast and independently of the pipeline's accuracy. Importable by
spawned workers because pytest puts this folder on sys.path.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import numpy as np
import SimpleITK as sitk


def fake_compute(job: Any, settings: Any) -> Any:
    """Threshold 'quantification'. Descriptions containing CRASH kill the worker process;
    SLOW sleeps 1 s (for kill -9 tests); HOG allocates 50 MB every 50 ms (up to 4 GB), for a
    Dask worker's memory limit to kill."""
    import lesionquant
    from lesionquant.measure import Provenance, Result

    if "CRASH" in job.description:
        os.kill(os.getpid(), signal.SIGKILL)
    if "SLOW" in job.description:
        time.sleep(1.0)
    if "HOG" in job.description:
        hog = []
        for _ in range(80):
            hog.append(np.ones(50_000_000 // 8))  # touched pages: resident memory
            time.sleep(0.05)
        raise MemoryError(f"HOG allocated {len(hog) * 50} MB and was not stopped")
    scan = lesionquant.load_scan(job.source, series_uid=job.series_uid)
    hu = sitk.GetArrayViewFromImage(scan.image)
    lab = np.zeros(hu.shape, np.uint8)
    lung = (hu < -300) & (hu > -950)
    lab[lung] = 1
    lab[lung & (np.arange(hu.shape[2])[None, None, :] >= hu.shape[2] // 2)] = 2
    lab[(hu >= -750) & (hu < -300)] = 3
    image = sitk.GetImageFromArray(lab)
    image.CopyInformation(scan.image)
    ml = float(np.prod(scan.image.GetSpacing())) / 1000.0
    lung_ml = float(np.count_nonzero(lab)) * ml
    ggo_ml = float(np.count_nonzero(lab == 3)) * ml
    numbers = {"lung_ml": lung_ml, "lesion_ml": ggo_ml, "ggo_ml": ggo_ml,
               "consolidation_ml": 0.0, "lesion_pct": 100.0 * ggo_ml / lung_ml,
               "ggo_pct": 100.0 * ggo_ml / lung_ml, "consolidation_pct": 0.0}
    prov = Provenance(version="test", method="classical", device="cpu",
                      settings=settings.to_dict(), timings_s={"total": 0.0},
                      warnings=tuple(scan.warnings), series_uid=scan.identifiers.series_uid)
    lungs = sitk.Cast(sitk.Clamp(image, upperBound=2), sitk.sitkUInt8)
    return Result(measurements=numbers, labelmap=image, lungs=lungs, scan=scan, provenance=prov)


def record_qa(result: Any, folder: Any, *, scan_id: str) -> None:
    """A QA hook that leaves a marker file in the scan folder."""
    (folder / "qa-marker.txt").write_text(scan_id)


def slow_qa(result: Any, folder: Any, *, scan_id: str) -> None:
    """A QA hook that leaves a marker and then holds the scan's unfinished folder open for
    1.5 s (labels written, result.json not yet): the window for a mid-scan kill."""
    (folder / "qa-marker.txt").write_text(scan_id)
    time.sleep(1.5)


def fake_compute_incomplete(job: Any, settings: Any) -> Any:
    """:func:`fake_compute` for a batch run with ``allow_incomplete_series``: the scan is loaded
    with ``allow_incomplete=True`` (as the real worker does), so its warnings name lost files."""
    import lesionquant

    original = lesionquant.load_scan

    def load(source: Any, series_uid: Any = None, **kw: Any) -> Any:
        return original(source, series_uid, allow_incomplete=True)

    lesionquant.load_scan = load
    try:
        return fake_compute(job, settings)
    finally:
        lesionquant.load_scan = original
