"""Patients and visits in index.html, report.html and the review list: pseudonym, study date,
day since baseline, the trajectory plot beside the change from baseline, the cohort view.

A real batch folder (two scans of the QA phantoms) is turned into two visits of one patient
28 days apart by editing their result.json, as a batch of a trial writes them.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_report import assert_self_contained

from lesionquant.batch import compute_endpoint
from lesionquant.qa import update_report_patient_sections, write_index
from lesionquant.qa._patients import PATIENT_SECTION_START, visits_by_patient
from lesionquant.qa._trajectory import render_cohort_plot, render_patient_plot

PATIENT = "P-0123456789ab"
DATES = ("2020-03-01", "2020-03-29")


@pytest.fixture()
def visits_out(batch_out: Path) -> tuple[Path, list[str]]:
    """The batch folder with its two scans as day 0 and day 28 of one patient."""
    scans = sorted(p.parent.name for p in batch_out.glob("S-*/result.json"))
    assert len(scans) == 2
    for scan_id, date in zip(scans, DATES, strict=True):
        path = batch_out / scan_id / "result.json"
        rec = json.loads(path.read_text())
        rec.update(patient=PATIENT, study_date=date)
        path.write_text(json.dumps(rec))
    compute_endpoint(batch_out)
    return batch_out, scans


def _pngs(text: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
            for src in re.findall(r'src="(data:image/png;base64,[^"]+)"', text)]


def test_report_gets_patient_study_date_day_and_trajectory(visits_out):
    out, (base, follow) = visits_out
    before = (out / follow / "report.html").read_text(encoding="utf-8")
    # the batch placed each scan as its own patient (the inputs had no patient id)
    assert PATIENT_SECTION_START in before and "1 of 1" in before and PATIENT not in before
    assert update_report_patient_sections(out) == 2
    assert update_report_patient_sections(out) == 0, "unchanged reports are not rewritten"
    text = (out / follow / "report.html").read_text(encoding="utf-8")
    assert_self_contained(text)
    section = text[text.index("<h2>Patient and visit</h2>"):text.index("<h2>Key numbers</h2>")]
    for fact in (PATIENT, DATES[1], "2 of 2", "<b>28</b>", "day 28", "day 0", DATES[0]):
        assert fact in section, fact
    # the baseline is linked, this visit is marked
    assert f'href="../{base}/report.html"' in section
    assert 'class="this"' in section
    # change from baseline beside the plot, from the visits' own result.json
    recs = [json.loads((out / s / "result.json").read_text())["measures"] for s in (base, follow)]
    change = recs[1]["lesion_pct"] - recs[0]["lesion_pct"]
    assert f"{abs(change):.2f}" in section
    (plot,) = _pngs(section)
    assert plot.size == (880, 500), "drawn at twice its 440 x 250 CSS size"


def test_index_groups_by_patient_with_trajectories_and_the_cohort(visits_out):
    out, (base, follow) = visits_out
    text = write_index(out).read_text(encoding="utf-8")
    assert_self_contained(text)
    for section in ("Cohort: change from baseline", "Patients and visits", "All scans",
                    "Failed scans"):
        assert f"{section}</h2>" in text
    cohort = text[text.index('id="cohort"'):text.index('id="patients"')]
    patients = text[text.index('id="patients"'):text.index('id="all-scans"')]
    scans = text[text.index('id="all-scans"'):]
    # one patient card with both visits, in visit order, and its plot
    assert patients.count('class="patient"') == 1 and f'id="{PATIENT}"' in patients
    assert patients.index(base) < patients.index(follow)
    assert "day 0" in patients and "day 28" in patients and DATES[1] in patients
    assert len(_pngs(patients)) == 1
    # the cohort: plot and the endpoint table's rows
    (cohort_png,) = _pngs(cohort)
    assert cohort_png.size == (1920, 600)
    assert cohort.count("<tr") == 3  # header + 2 visits
    # the flat scan table says patient, date and day too
    row = re.search(rf'<tr data-scan="{follow}"[^>]*>(.*?)</tr>', scans).group(1)
    assert PATIENT in row and DATES[1] in row and "day 28" in row


def _plot(ggo_then: float, ggo_now: float) -> np.ndarray:
    rows = [{"scan_id": "S-a", "days_since_baseline": 0, "is_baseline": True,
             "lesion_pct": ggo_then + 10, "ggo_pct": ggo_then, "consolidation_pct": 10.0},
            {"scan_id": "S-b", "days_since_baseline": 28, "is_baseline": False,
             "lesion_pct": ggo_now + 2, "ggo_pct": ggo_now, "consolidation_pct": 2.0}]
    return np.asarray(Image.open(io.BytesIO(render_patient_plot(rows))).convert("RGB"))


def _colour_rows(img: np.ndarray, rgb: tuple[int, int, int]) -> tuple[float, float]:
    """Mean row of the pixels of colour ``rgb`` in the left and the right third of the plot
    area (below the legend)."""
    mask = np.all(np.abs(img.astype(int) - rgb) < 30, axis=-1)
    h, w = mask.shape
    mask[: int(h * 0.22)] = False  # the legend
    ys, xs = np.nonzero(mask)
    return float(ys[xs < w * 0.4].mean()), float(ys[xs > w * 0.7].mean())


def test_patient_plot_draws_the_measures_against_days():
    falling, rising = _plot(20.0, 8.0), _plot(8.0, 20.0)
    for img in (falling, rising):  # GGO orange and consolidation blue, as in the montage
        for rgb in ((0xE6, 0x9F, 0x00), (0x00, 0x72, 0xB2)):
            assert np.all(np.abs(img.astype(int) - rgb) < 30, axis=-1).sum() > 200
    left, right = _colour_rows(falling, (0xE6, 0x9F, 0x00))
    assert left < right - 20, "GGO falls: higher (smaller row) on day 0 than on day 28"
    left, right = _colour_rows(rising, (0xE6, 0x9F, 0x00))
    assert left > right + 20


def test_cohort_plot_skips_patients_without_follow_up():
    one = [{"scan_id": "S-x", "days_since_baseline": 0, "is_baseline": True}]
    two = [{"scan_id": "S-a", "days_since_baseline": 0, "is_baseline": True,
            "lesion_change_pp": 0.0},
           {"scan_id": "S-b", "days_since_baseline": 10, "is_baseline": False,
            "lesion_change_pp": -4.0, "ggo_change_pp": -3.0, "consolidation_change_pp": -1.0}]
    png = render_cohort_plot({"P-1": one, "P-2": two})
    assert Image.open(io.BytesIO(png)).size == (1920, 600)


def test_stale_endpoint_baseline_falls_back_to_first_visit(visits_out):
    out, (base, follow) = visits_out
    compute_endpoint(out, baseline=[follow])  # the user chose the day-28 scan
    assert visits_by_patient(out)[PATIENT][1]["is_baseline"]
    (out / follow / "result.json").unlink()  # that scan is gone now
    rows = visits_by_patient(out)[PATIENT]
    assert [r["scan_id"] for r in rows] == [base] and rows[0]["is_baseline"]
