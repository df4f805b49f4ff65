"""Results with known label maps, independent of the segmentation pipeline's accuracy.

``truth_compute`` stands in for quantify through run_batch's ``_compute`` hook (importable by
the batch's worker processes because pytest puts this folder on sys.path): it loads the CT
for real and takes the label map from the sidecar ``<name>.labels.nii.gz`` next to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk


def labels_path(ct_path: str | Path) -> Path:
    p = Path(ct_path)
    return p.with_name(p.name.replace(".nii.gz", ".labels.nii.gz"))


def make_result(scan: Any, labels: sitk.Image, settings: Any = None) -> Any:
    """A real :class:`lesionquant.Result` whose numbers are counted from ``labels``."""
    from lesionquant.measure import Provenance, Result
    from lesionquant.settings import Settings

    labels = sitk.Cast(labels, sitk.sitkUInt8)
    labels.CopyInformation(scan.image)
    lab = sitk.GetArrayViewFromImage(labels)
    ml = float(np.prod(scan.image.GetSpacing())) / 1000.0
    counts = np.bincount(lab.ravel(), minlength=6)
    lung_ml = float(counts[1:5].sum()) * ml
    ggo_ml, con_ml = float(counts[3]) * ml, float(counts[4]) * ml
    numbers = {"lung_ml": lung_ml, "lesion_ml": ggo_ml + con_ml, "ggo_ml": ggo_ml,
               "consolidation_ml": con_ml,
               "lesion_pct": 100.0 * (ggo_ml + con_ml) / lung_ml,
               "ggo_pct": 100.0 * ggo_ml / lung_ml, "consolidation_pct": 100.0 * con_ml / lung_ml}
    settings = settings or Settings()
    prov = Provenance(version="test", method="truth", device="cpu", settings=settings.to_dict(),
                      timings_s={"total": 0.0}, warnings=tuple(scan.warnings),
                      series_uid=scan.identifiers.series_uid)
    lungs = sitk.Cast(sitk.Clamp(labels, upperBound=2), sitk.sitkUInt8)
    return Result(measurements=numbers, labelmap=labels, lungs=lungs, scan=scan, provenance=prov)


def truth_compute(job: Any, settings: Any) -> Any:
    import lesionquant

    scan = lesionquant.load_scan(job.source, series_uid=job.series_uid)
    return make_result(scan, sitk.ReadImage(str(labels_path(job.source))), settings)
