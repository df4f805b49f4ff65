"""A lung volume outside the plausible adult range is flagged, not hidden (issue 22)."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from lesionquant import load_scan, quantify
from lesionquant.api import PLAUSIBLE_LUNG_ML
from lesionquant.batch._tables import scan_flags
from lesionquant.qa import write_scan_qa

REPO = Path(__file__).resolve().parents[2]


def test_partial_lung_coverage_is_flagged_in_result_and_report(tmp_path):
    scan = load_scan(REPO / "sample_scans" / "healthy" / "dicom")
    # (the whole scan, 3840 mL, is not flagged: tests/batch/test_badinput_batch.py)
    part = quantify(scan.image[:, :, 24:36])  # 12 of 60 slices: about a fifth of the lungs
    assert part["lung_ml"] < PLAUSIBLE_LUNG_ML[0]
    flagged = [w for w in part.provenance.warnings if w.startswith("lung volume implausible")]
    assert len(flagged) == 1 and f"{part['lung_ml']:.0f} mL" in flagged[0]
    assert scan_flags(list(part.provenance.warnings)) == ["lung_volume_implausible"]
    _, html = write_scan_qa(part, tmp_path, scan_id="S-part")
    assert "lung volume implausible" in html.read_text(encoding="utf-8")
    assert sitk.GetArrayViewFromImage(part.labelmap).any()
