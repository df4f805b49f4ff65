"""Endpoint arithmetic on hand-made result records (exact values)."""

from __future__ import annotations

import csv

import pytest

from lesionquant.batch import _outputs
from lesionquant.batch._endpoint import ENDPOINT_COLUMNS, compute_endpoint, endpoint_rows
from lesionquant.errors import InvalidInputError


def rec(scan_id, patient, date, lesion, ggo, cons, lung=4000.0, thick=1.0, time=""):
    return {"scan_id": scan_id, "patient": patient, "study": f"ST-{scan_id}",
            "study_date": date, "study_time": time, "series_uid": f"1.2.{scan_id}",
            "acquisition": {"slice_thickness_mm": thick},
            "measures": {"lesion_pct": lesion, "ggo_pct": ggo, "consolidation_pct": cons,
                         "lung_ml": lung},
            "provenance": {"settings": {"method": "classical"}}}


RECORDS = [
    rec("S-d28", "P-a", "2020-03-29", 4.0, 3.0, 1.0, lung=4400.0),
    rec("S-d0", "P-a", "2020-03-01", 10.0, 6.0, 4.0),
    rec("S-d10", "P-a", "2020-03-11", 12.5, 6.0, 6.5),
    rec("S-nodate", "P-a", "", 1.0, 1.0, 0.0),
    rec("S-b0", "P-b", "2020-04-02", 0.0, 0.0, 0.0),
    rec("S-b90", "P-b", "2020-07-01", 2.0, 2.0, 0.0),
]


def by_id(rows):
    return {r["scan_id"]: r for r in rows}


def test_first_visit_is_baseline_and_changes_are_exact():
    rows = endpoint_rows(RECORDS)
    assert [r["scan_id"] for r in rows] == ["S-d0", "S-d10", "S-d28", "S-nodate", "S-b0",
                                             "S-b90"]
    r = by_id(rows)
    assert r["S-d0"]["is_baseline"] and r["S-d0"]["lesion_change_pp"] == 0.0
    assert [r[k]["days_since_baseline"] for k in ("S-d0", "S-d10", "S-d28")] == [0, 10, 28]
    assert r["S-d28"]["lesion_change_pp"] == pytest.approx(4.0 - 10.0)
    assert r["S-d28"]["lesion_change_rel_pct"] == pytest.approx(-60.0)
    assert r["S-d28"]["ggo_change_pp"] == pytest.approx(-3.0)
    assert r["S-d28"]["consolidation_change_rel_pct"] == pytest.approx(-75.0)
    assert r["S-d10"]["consolidation_change_pp"] == pytest.approx(2.5)
    assert r["S-d28"]["lung_change_rel_pct"] == pytest.approx(10.0)
    assert r["S-nodate"]["days_since_baseline"] is None  # undated visits come last, no days
    assert r["S-nodate"]["visit"] == 3
    # a zero baseline has no relative change, but an absolute one
    assert r["S-b90"]["baseline_scan_id"] == "S-b0"
    assert r["S-b90"]["lesion_change_pp"] == 2.0
    assert r["S-b90"]["lesion_change_rel_pct"] is None
    assert r["S-b90"]["days_since_baseline"] == 90


def test_user_chosen_baseline_gives_negative_days_before_it():
    r = by_id(endpoint_rows(RECORDS, baseline=["S-d10"]))
    assert r["S-d10"]["is_baseline"] and not r["S-d0"]["is_baseline"]
    assert r["S-d0"]["days_since_baseline"] == -10
    assert r["S-d0"]["lesion_change_pp"] == pytest.approx(-2.5)
    assert r["S-d0"]["lesion_change_rel_pct"] == pytest.approx(-20.0)
    assert r["S-b90"]["baseline_scan_id"] == "S-b0"  # other patients keep their first visit


def test_same_day_series_ordered_by_time_then_thinner_slices():
    recs = [rec("S-thick", "P-c", "2020-01-01", 5.0, 5.0, 0.0, thick=5.0),
            rec("S-thin", "P-c", "2020-01-01", 6.0, 6.0, 0.0, thick=1.0)]
    assert endpoint_rows(recs)[0]["scan_id"] == "S-thin"


@pytest.mark.parametrize("baseline, match", [(["S-unknown"], "not a completed scan"),
                                             (["S-d0", "S-d28"], "two baselines")])
def test_bad_baseline_choices_are_refused(baseline, match):
    with pytest.raises(InvalidInputError, match=match):
        endpoint_rows(RECORDS, baseline=baseline)


def test_compute_endpoint_reads_committed_results_and_writes_the_csv(tmp_path):
    for r in RECORDS[:3]:
        _outputs.write_json_atomic(tmp_path / r["scan_id"] / "result.json", r)
    _outputs.write_json_atomic(tmp_path / "verdicts.json",
                               {"verdicts": {"S-d10": {"verdict": "reject", "comment": "x"}}})
    compute_endpoint(tmp_path)
    with open(tmp_path / "endpoint.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == ENDPOINT_COLUMNS
        rows = list(reader)
    assert [r["scan_id"] for r in rows] == ["S-d0", "S-d10", "S-d28"]
    assert float(rows[2]["lesion_change_pp"]) == -6.0 and rows[2]["days_since_baseline"] == "28"
    assert rows[1]["qa_verdict"] == "reject"
    assert rows[0]["is_baseline"] == "true"
