"""The real pipeline through run_batch: real data with a broken scan in the batch, the
sample scans with their manifest (the two-visit patient's change from baseline), and the
sample scans on a real Dask cluster equal to the local run."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import _dask_cluster
import pytest
import SimpleITK as sitk
from _dask_cluster import (
    committed,
    equal_results,
    leftovers,
    settings_cache,
)
from _segcheck import assert_seg_matches, dciodvfy_errors

from lesionquant.batch import run_batch

#: The Dask cluster and client fixtures (tests/batch/_dask_cluster.py).
cluster = _dask_cluster.cluster
client = _dask_cluster.client

REPO = Path(__file__).resolve().parents[2]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.realdata
@pytest.mark.slow
def test_real_batch_with_a_broken_scan_finishes_the_others(chest_dir, edge_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(edge_dir / "cip-chest-ct-64-dicom-series-implicit-vr", broken)
    victim = sorted(broken.iterdir())[40]
    victim.write_bytes(victim.read_bytes()[:-3000])  # truncated pixel data mid-series
    out = tmp_path / "out"
    s = run_batch([broken, chest_dir / "tcia-covid19-ny-sbu-axial-slices"], out, workers=2,
                  progress=False, qa_hooks=())
    assert (s.done, s.failed) == (10, 1)
    (err,) = read_csv(out / "errors.csv")
    assert victim.name in err["reason"] and "truncated" in err["reason"]
    rows = read_csv(out / "results.csv")
    assert sum(r["status"] == "done" for r in rows) == 10
    ep = read_csv(out / "endpoint.csv")
    assert len({r["patient"] for r in ep}) == 5 and len(ep) == 10  # 5 patients x 2 dates
    for r in ep:  # change from baseline recomputed from the per-scan results
        base = json.loads((out / r["baseline_scan_id"] / "result.json").read_text())
        rec = json.loads((out / r["scan_id"] / "result.json").read_text())
        want = rec["measures"]["lesion_pct"] - base["measures"]["lesion_pct"]
        # CSV numbers have 6 significant digits (docs/batch.md)
        assert float(r["lesion_change_pp"]) == pytest.approx(want, rel=5e-6, abs=1e-9)
        assert int(r["days_since_baseline"]) >= 0


SAMPLES = REPO / "sample_scans"
#: Allowed error of the measured change from baseline against the phantom truth, pp. The
#: pipeline's own per-scan accuracy is tested (and tuned) in tests/measure; this only guards
#: that the batch compares the right visits in the right order.
CHANGE_TOLERANCE_PP = 2.0


@pytest.fixture(scope="module")
def sample_batch(tmp_path_factory):
    manifest = SAMPLES / "manifest.json"
    if not manifest.is_file():
        pytest.fail(f"{manifest} is missing (sample scans are part of the repository)")
    out = tmp_path_factory.mktemp("samples") / "out"
    summary = run_batch([SAMPLES], out, workers=2, progress=False, salt="samples")
    return json.loads(manifest.read_text()), out, summary


@pytest.mark.slow
def test_sample_batch_has_one_result_per_case_and_valid_segs(sample_batch):
    manifest, out, summary = sample_batch
    cases = manifest["cases"]
    assert (summary.done, summary.failed) == (len(cases), 0), summary.failures
    rows = read_csv(out / "results.csv")
    assert len(rows) == len(cases)
    by_date = {r["study_date"].replace("-", ""): r for r in rows}
    for case in cases:
        row = by_date[case["study_date"]]
        assert float(row["lung_ml"]) == pytest.approx(case["lung_ml"], rel=0.1)
        folder = out / row["scan_id"]
        assert {"result.json", "labels.nii.gz", "seg.dcm", "overlay.png",
                "report.html"} <= {p.name for p in folder.iterdir()}
    # one SEG checked in full: highdicom read-back and dciodvfy
    row = by_date[cases[-1]["study_date"]]
    files = sorted(str(p) for p in (SAMPLES / cases[-1]["dicom"]).iterdir())
    assert dciodvfy_errors(out / row["scan_id"] / "seg.dcm") == []
    assert_seg_matches(out / row["scan_id"] / "seg.dcm",
                       sitk.ReadImage(str(out / row["scan_id"] / "labels.nii.gz")), files)
    assert (out / "index.html").is_file()


@pytest.mark.slow
def test_sample_patient_change_from_baseline(sample_batch):
    manifest, out, _ = sample_batch
    visits: dict[str, list[dict]] = {}
    for case in manifest["cases"]:
        visits.setdefault(case["patient_id"], []).append(case)
    ((base, follow),) = [sorted(v, key=lambda c: c["day"]) for v in visits.values()
                         if len(v) == 2]
    ep = read_csv(out / "endpoint.csv")
    rows = {r["study_date"].replace("-", ""): r for r in ep}
    b, f = rows[base["study_date"]], rows[follow["study_date"]]
    assert b["patient"] == f["patient"] and b["is_baseline"] == "true"
    assert f["baseline_scan_id"] == b["scan_id"] and f["is_baseline"] == "false"
    assert int(f["days_since_baseline"]) == follow["day"] - base["day"] == 28
    # exact arithmetic on the per-scan results (result.json: full precision; the CSV has 6
    # significant digits)
    recs = {r["scan_id"]: json.loads((out / r["scan_id"] / "result.json").read_text())
            for r in (b, f)}
    for m in ("lesion", "ggo", "consolidation"):
        now = recs[f["scan_id"]]["measures"][f"{m}_pct"]
        then = recs[b["scan_id"]]["measures"][f"{m}_pct"]
        assert float(f[f"{m}_pct"]) == pytest.approx(now, rel=5e-6)
        assert float(f[f"{m}_change_pp"]) == pytest.approx(now - then, rel=5e-6)
        assert float(f[f"{m}_change_rel_pct"]) == pytest.approx(100 * (now - then) / then,
                                                                rel=5e-6)
    # against the phantom truth
    true_change = follow["lesion_pct"] - base["lesion_pct"]
    assert float(f["lesion_change_pp"]) == pytest.approx(true_change, abs=CHANGE_TOLERANCE_PP)
    true_ggo = 100 * (follow["ggo_ml"] / follow["lung_ml"] - base["ggo_ml"] / base["lung_ml"])
    assert float(f["ggo_change_pp"]) == pytest.approx(true_ggo, abs=CHANGE_TOLERANCE_PP)
    # the other patients are their own baselines
    assert sum(r["is_baseline"] == "true" for r in ep) == len(visits)


@pytest.mark.slow
def test_sample_scans_on_dask_equal_the_local_run(sample_batch, client, tmp_path):
    _, ref, ref_summary = sample_batch
    before = settings_cache(client)
    out = tmp_path / "out"
    s = run_batch([SAMPLES], out, client=client, progress=False, salt="samples")
    assert (s.done, s.failed) == (ref_summary.done, 0) == (5, 0), s.failures
    equal_results(out, ref)
    for sid in (r["scan_id"] for r in read_csv(out / "results.csv")):
        assert {"result.json", "labels.nii.gz", "seg.dcm", "overlay.png",
                "report.html"} <= {p.name for p in (out / sid).iterdir()}
    assert (out / "index.html").is_file() and leftovers(out) == []
    # settings and pipeline loaded once per worker process (warm-up plugin), not per scan
    after = settings_cache(client)
    assert set(after) == set(before) and len(after) == 2
    assert all(built == 1 for _, built in after.values())
    calls = sum(after[w][0] - before[w][0] for w in after)
    assert calls == 5 + 2  # one per scan + one warm-up per worker


@pytest.mark.slow
def test_cli_scheduler_file_and_relative_paths(sample_batch, cluster, tmp_path, capsys,
                                              monkeypatch):
    """Relative INPUT and OUT work although the workers run in another folder."""
    from lesionquant.cli import main

    _, ref, _ = sample_batch
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    rc = main(["run", os.path.relpath(SAMPLES / "healthy"), "-o", "out", "--salt", "samples",
               "--scheduler", str(cluster.scheduler_file), "--no-qa", "--no-seg"])
    assert rc == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(
        "lesionquant run: 1 done, 0 skipped, 0 failed")
    ((sid, _),) = [(p.parent.name, p) for p in committed(out)]
    assert (out / sid / "labels.nii.gz").read_bytes() == (ref / sid / "labels.nii.gz").read_bytes()
    assert {p.name for p in (out / sid).iterdir()} == {"result.json", "labels.nii.gz"}


@pytest.mark.slow
def test_sample_pages_show_patients_visits_and_trajectories(sample_batch):
    """index.html and each report.html: patient pseudonym, study date, day since baseline,
    the patient's trajectory plot and the change from baseline (filled in by the batch)."""
    _, out, _ = sample_batch
    ep = read_csv(out / "endpoint.csv")
    follow = next(r for r in ep if r["is_baseline"] == "false")
    index = (out / "index.html").read_text(encoding="utf-8")
    for r in ep:
        assert f'id="{r["patient"]}"' in index and r["study_date"] in index
    assert f"day {follow['days_since_baseline']}" in index
    # one trajectory per patient + the cohort plot + nothing else
    assert index.count("data:image/png;base64,") == len({r["patient"] for r in ep}) + 1
    report = (out / follow["scan_id"] / "report.html").read_text(encoding="utf-8")
    section = report[report.index("<h2>Patient and visit</h2>"):
                     report.index("<h2>Key numbers</h2>")]
    assert follow["patient"] in section and follow["study_date"] in section
    assert f"<b>{follow['days_since_baseline']}</b>" in section and "2 of 2" in section
    assert section.count("data:image/png;base64,") == 1
    change = float(follow["lesion_change_pp"])
    assert f"\u2212{abs(change):.2f}" in section or f"+{change:.2f}" in section
    # what the report says of the run: no load stage (the batch loads outside quantify,
    # its time is in result.json) and "n/a" for the weights of the classical method
    assert "<th>load</th>" not in report
    assert "n/a (the classical method uses no weights)" in report
