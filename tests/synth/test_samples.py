"""sample_scans/: the shipped series, label maps and manifest agree and reproduce."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lesionquant.io import load_scan
from lesionquant.synth import make_phantom

SAMPLES = Path(__file__).resolve().parents[2] / "sample_scans"
MANIFEST = json.loads((SAMPLES / "manifest.json").read_text())
CASES = {c["case"]: c for c in MANIFEST["cases"]}


def test_folder_is_small_and_complete():
    total = sum(f.stat().st_size for f in SAMPLES.rglob("*") if f.is_file())
    assert total < 20e6
    assert {"healthy", "mild_ggo", "severe_mixed"} <= set(CASES)
    assert CASES["healthy"]["lesion_ml"] == 0
    assert 2 < CASES["mild_ggo"]["lesion_pct"] < 6 and CASES["mild_ggo"]["ggo_ml"] > 0.9 * (
        CASES["mild_ggo"]["lesion_ml"])
    sev = CASES["severe_mixed"]
    assert sev["lesion_pct"] > 25 and sev["consolidation_ml"] > 0.3 * sev["lesion_ml"]


def test_two_visits_of_one_patient():
    visits = sorted((c for c in CASES.values() if c["patient_id"] == "SYNTH-0004"),
                    key=lambda c: c["study_date"])
    assert [v["visit"] for v in visits] == ["baseline", "day28"]
    d0, d1 = (dt.date.fromisoformat(f"{v['study_date'][:4]}-{v['study_date'][4:6]}-"
                                    f"{v['study_date'][6:]}") for v in visits)
    assert (d1 - d0).days == 28
    assert visits[1]["lesion_ml"] < 0.6 * visits[0]["lesion_ml"]
    assert visits[0]["lung_ml"] == visits[1]["lung_ml"]  # same patient, same anatomy


@pytest.mark.parametrize("case", sorted(CASES))
def test_series_labels_and_manifest_agree(case):
    c = CASES[case]
    scan = load_scan(SAMPLES / c["dicom"])
    labels = sitk.ReadImage(str(SAMPLES / c["labels"]))
    assert scan.image.GetSize() == labels.GetSize() == tuple(c["size_xyz"])
    assert scan.image.GetSpacing() == pytest.approx(labels.GetSpacing(), abs=1e-4)
    assert scan.image.GetOrigin() == pytest.approx(labels.GetOrigin(), abs=1e-3)
    lab = sitk.GetArrayFromImage(labels)
    vox_ml = np.prod(labels.GetSpacing()) / 1000.0
    assert c["lung_ml"] == pytest.approx(((lab >= 1) & (lab <= 4)).sum() * vox_ml, abs=1e-3)
    assert c["ggo_ml"] == pytest.approx((lab == 3).sum() * vox_ml, abs=1e-3)
    assert c["consolidation_ml"] == pytest.approx((lab == 4).sum() * vox_ml, abs=1e-3)
    assert scan.identifiers.patient_id == c["patient_id"]
    assert scan.identifiers.study_date == c["study_date"]
    hu = sitk.GetArrayFromImage(scan.image)
    assert -900 < np.median(hu[(lab == 1) | (lab == 2)]) < -700


def test_manifest_truth_reproduces_from_its_parameters():
    c = CASES["mild_ggo"]
    p = dict(c["params"], size_xyz=tuple(c["params"]["size_xyz"]),
             spacing_mm=tuple(c["params"]["spacing_mm"]))
    ph = make_phantom(**p)
    assert ph.lesion_ml == pytest.approx(c["lesion_ml"], abs=1e-3)
    assert ph.lung_ml == pytest.approx(c["lung_ml"], abs=1e-3)
    assert np.array_equal(sitk.GetArrayFromImage(ph.labels),
                          sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLES / c["labels"]))))
