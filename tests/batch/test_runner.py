"""run_batch with a threshold stand-in for quantify (fast): failures, crashes, resume, tables.

The pipeline itself runs in tests/batch/test_end_to_end.py and tests/test_cli_run.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from _dicom import write_series
from _fakes import fake_compute, record_qa

from lesionquant.batch import run_batch, write_tables
from lesionquant.errors import LesionQuantError, OutputExistsError
from lesionquant.settings import Settings


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Three good series (two visits of DOE^JANE, one of ROE^RICHARD) and a truncated one."""
    root = tmp_path_factory.mktemp("in")
    write_series(root / "jane" / "v1", patient_id="PAT001", study_date="20200301")
    write_series(root / "jane" / "v2", patient_id="PAT001", study_date="20200329")
    write_series(root / "rich" / "v1", patient_id="PAT002", patient_name="ROE^RICHARD",
                 study_date="20200305")
    bad = write_series(root / "broken", patient_id="PAT003", study_date="20200305")
    f = Path(bad["files"][3])
    f.write_bytes(f.read_bytes()[:-60])
    return root


def run(inputs, out, **kw):
    kw.setdefault("_compute", fake_compute)
    kw.setdefault("qa_hooks", [record_qa])
    kw.setdefault("salt", "test-salt")
    return run_batch(inputs, out, progress=False, **kw)


def test_broken_scan_and_missing_input_do_not_stop_the_batch(inputs, tmp_path):
    out = tmp_path / "out"
    s = run([inputs, inputs / "nothere"], out, workers=2)
    assert (s.done, s.skipped, s.failed) == (3, 0, 2) and not s.ok
    rows = read_csv(out / "results.csv")
    done = [r for r in rows if r["status"] == "done"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(done) == 3 and len(failed) == 2 and len({r["scan_id"] for r in rows}) == 5
    errors = read_csv(out / "errors.csv")
    assert {e["scan_id"] for e in errors} == {r["scan_id"] for r in failed}
    assert any("truncated" in e["reason"] for e in errors)
    assert any("no such file" in e["reason"] for e in errors)
    for r in done:
        folder = out / r["scan_id"]
        assert {p.name for p in folder.iterdir()} == {"result.json", "labels.nii.gz",
                                                      "seg.dcm", "qa-marker.txt"}
        assert (folder / "qa-marker.txt").read_text() == r["scan_id"]  # QA before commit
        assert float(r["lesion_pct"]) == pytest.approx(100 * float(r["ggo_ml"])
                                                       / float(r["lung_ml"]))
    # two visits of one patient share a pseudonym; days since first scan
    jane = sorted((r for r in done if r["study_date"].startswith("2020-03-")
                   and r["days_since_first_scan"] in ("0", "28")), key=lambda r: r["study_date"])
    assert jane[0]["patient"] == jane[-1]["patient"] != ""
    assert [r["days_since_first_scan"] for r in done if r["patient"] == jane[0]["patient"]] \
        == ["0", "28"]
    ep = read_csv(out / "endpoint.csv")
    assert sorted(r["days_since_baseline"] for r in ep) == ["0", "0", "28"]
    assert not [p for p in out.iterdir() if p.name.startswith((".tmp", ".old"))]


def test_outputs_carry_no_identifiers_unless_asked(inputs, tmp_path):
    out = tmp_path / "out"
    run([inputs / "jane", inputs / "rich"], out, endpoint=True)
    secrets = [b"PAT001", b"PAT002", b"DOE", b"ROE^RICHARD", b"ACC123", b"19700101",
               str(inputs).encode()]
    for path in out.rglob("*"):
        if path.is_file() and path.name not in (".salt", ".lock"):
            data = path.read_bytes()
            leaked = [s for s in secrets if s in data]
            assert not leaked, f"{path.relative_to(out)} holds {leaked}"
    out2 = tmp_path / "out2"
    run([inputs / "jane"], out2, keep_identifiers=True)
    rec = json.loads(next(out2.glob("S-*/result.json")).read_text())
    assert rec["identifiers"]["patient_id"] == "PAT001"
    assert rec["identifiers"]["patient_name"] == "DOE^JANE"
    assert "patient_id" in read_csv(out2 / "results.csv")[0]


def test_resume_skips_done_scans_and_retries_failed_ones(inputs, tmp_path):
    out = tmp_path / "out"
    first = run([inputs], out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("S-*/result.json")}
    again = run([inputs], out)
    assert (again.done, again.skipped, again.failed) == (0, 3, 1)
    assert {p: p.stat().st_mtime_ns for p in out.glob("S-*/result.json")} == mtimes
    assert read_csv(out / "results.csv") == read_csv(out / "results.csv")
    assert len(read_csv(out / "results.csv")) == first.done + first.failed
    with pytest.raises(OutputExistsError, match="--overwrite"):
        run([inputs], out, resume=False)
    redo = run([inputs / "jane"], out, overwrite=True)
    assert (redo.done, redo.skipped) == (2, 0)
    assert len(read_csv(out / "results.csv")) == 4  # still one row per scan
    with pytest.raises(OutputExistsError, match="other settings"):
        run([inputs], out, settings=Settings(min_lesion_volume_ml=1.0))


def test_a_worker_that_dies_is_recorded_and_the_batch_goes_on(inputs, tmp_path, monkeypatch):
    crash = tmp_path / "crash"
    write_series(crash, patient_id="PAT009")
    import pydicom

    for f in crash.iterdir():  # the fake kills its own process for this description
        ds = pydicom.dcmread(f)
        ds.SeriesDescription = "CRASH me"
        ds.save_as(f)
    s = run([inputs / "jane", crash, inputs / "rich"], tmp_path / "out", workers=2)
    assert (s.done, s.failed) == (3, 1)
    (reason,) = [r for _, r in s.failures]
    assert "worker process died" in reason


def test_refuses_a_foreign_folder_and_a_concurrent_run(inputs, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.docx").write_text("precious")
    with pytest.raises(OutputExistsError, match="not a lesionquant output"):
        run([inputs / "jane"], home)
    from lesionquant.batch import _outputs

    out = tmp_path / "out"
    with _outputs.batch_lock(out), pytest.raises(LesionQuantError, match="another"):
        run([inputs / "jane"], out)


def test_write_tables_merges_verdicts(inputs, tmp_path):
    out = tmp_path / "out"
    run([inputs / "rich"], out, endpoint=False)
    assert not (out / "endpoint.csv").exists()
    (scan_id,) = [p.name for p in out.glob("S-*")]
    (out / "verdicts.json").write_text(json.dumps({"format": "lesionquant-verdicts",
                                                   "verdicts": {scan_id: {
                                                       "verdict": "reject", "comment": "motion",
                                                       "reader": "AB",
                                                       "time_utc": "2026-01-01T00:00:00Z"}}}))
    write_tables(out)
    (row,) = read_csv(out / "results.csv")
    assert (row["qa_verdict"], row["qa_comment"], row["qa_reader"]) == ("reject", "motion", "AB")
