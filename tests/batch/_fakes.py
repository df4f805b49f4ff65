"""A stand-in for load + quantify, injected through run_batch's private ``_compute``.

It loads the scan for real (lesionquant.load_scan) and labels voxels with plain thresholds,
so the batch machinery (workers, outputs, resume, tables) is tested without the pipeline.
Importable by spawned workers because pytest puts this folder on sys.path.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class FakeResult:
    scan: Any
    labelmap: sitk.Image

    @property
    def provenance(self) -> dict[str, Any]:
        return {"method": "fake", "device": "cpu", "timings": {"fake_s": 0.0},
                "source": self.scan.source}

    def to_dict(self) -> dict[str, Any]:
        lab = sitk.GetArrayViewFromImage(self.labelmap)
        ml = float(np.prod(self.labelmap.GetSpacing())) / 1000.0
        lung = float(np.count_nonzero(lab)) * ml
        ggo = float(np.count_nonzero(lab == 3)) * ml
        cons = float(np.count_nonzero(lab == 4)) * ml
        def pct(v: float) -> float:
            return 100.0 * v / lung if lung else 0.0

        return {"lung_ml": lung, "lesion_ml": ggo + cons, "ggo_ml": ggo,
                "consolidation_ml": cons, "lesion_pct": pct(ggo + cons), "ggo_pct": pct(ggo),
                "consolidation_pct": pct(cons), "zones": {"right_upper": {"lesion_pct": 0.0}},
                "provenance": self.provenance}


def fake_compute(job: Any, settings: Any) -> FakeResult:
    """Threshold 'quantification'; a scan whose description says CRASH kills its process."""
    import lesionquant

    if "CRASH" in job.description:
        os.kill(os.getpid(), signal.SIGKILL)
    scan = lesionquant.load_scan(job.source, series_uid=job.series_uid)
    hu = sitk.GetArrayViewFromImage(scan.image)
    lab = np.zeros(hu.shape, np.uint8)
    lung = (hu < -300) & (hu > -950)
    lab[lung] = 1
    lab[lung & (np.arange(hu.shape[2])[None, None, :] >= hu.shape[2] // 2)] = 2
    lab[(hu >= -750) & (hu < -300)] = 3
    image = sitk.GetImageFromArray(lab)
    image.CopyInformation(scan.image)
    return FakeResult(scan, image)


def record_qa(result: Any, folder: Any) -> None:
    """A QA hook that leaves a marker file in the scan folder."""
    (folder / "qa-marker.txt").write_text(result.scan.identifiers.series_uid)
