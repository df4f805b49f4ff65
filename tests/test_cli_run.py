"""`lesionquant run` / `lesionquant endpoint` end to end on real data, in-process and as a
real subprocess killed with SIGKILL mid-batch."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lesionquant.cli import main

REPO = Path(__file__).resolve().parents[1]
NUMERIC = ("lung_ml", "lesion_ml", "ggo_ml", "consolidation_ml", "lesion_pct", "ggo_pct",
           "consolidation_pct", "right_lung_ml", "left_lung_ml")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_run_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "--workers" in text and "--no-resume" in text


def test_bad_settings_file_is_a_one_line_error(tmp_path, capsys):
    cfg = tmp_path / "s.toml"
    cfg.write_text("ggo_hu = [-300, -750]\n")
    assert main(["run", str(tmp_path), "-o", str(tmp_path / "out"), "--config", str(cfg)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s.toml: invalid settings" in err[0]


@pytest.mark.realdata
def test_run_then_endpoint_via_main(edge_dir, tmp_path, capsys):
    series = edge_dir / "cip-chest-ct-64-dicom-series-implicit-vr"
    cfg = tmp_path / "settings.toml"
    cfg.write_text("[settings]\nmin_lesion_volume_ml = 0.1\n")
    out = tmp_path / "out"
    argv = ["run", str(series), str(tmp_path / "missing"), "-o", str(out), "--salt", "s",
            "--config", str(cfg), "--device", "cpu"]
    assert main(argv) == 1  # the missing input fails, the scan is done
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "1 done, 0 skipped, 1 failed" in summary
    (folder,) = out.glob("S-*")
    rec = json.loads((folder / "result.json").read_text())
    assert rec["provenance"]["settings"]["min_lesion_volume_ml"] == 0.1
    assert rec["provenance"]["input_series_uid"] == rec["series_uid"] != ""
    assert rec["measures"]["lung_ml"] > 1000
    assert {p.name for p in folder.iterdir()} >= {"result.json", "labels.nii.gz", "seg.dcm",
                                                  "overlay.png", "report.html"}
    assert (out / "index.html").is_file()
    # resume: nothing to do but the missing input, which still fails
    assert main(argv) == 1
    assert "0 done, 1 skipped, 1 failed" in capsys.readouterr().out
    # refusing to overwrite, then overwriting
    assert main([*argv[:-4], "--no-resume"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["endpoint", str(out)]) == 0
    assert "1 visit(s) of 1 patient(s)" in capsys.readouterr().out
    (row,) = read_csv(out / "endpoint.csv")
    assert row["is_baseline"] == "true" and float(row["lesion_change_pp"]) == 0.0


@pytest.mark.realdata
def test_run_with_the_model_lungs_and_classical_lesions(edge_dir, tmp_path, capsys):
    """``--lungs model``: the learned lung stage with the classical lesion stage, recorded
    as such (method and weights) in result.json and results.csv; the lung volume of the
    whole-chest COPD series is the CIP lung mask's (4554 mL) within 5 %."""
    from lesionquant.segment.model import weights_info

    series = edge_dir / "cip-chest-ct-64-dicom-series-implicit-vr"
    out = tmp_path / "out"
    assert main(["run", str(series), "-o", str(out), "--salt", "s", "--device", "cpu",
                 "--lungs", "model", "--no-qa", "--no-seg"]) == 0
    capsys.readouterr()
    (folder,) = out.glob("S-*")
    rec = json.loads((folder / "result.json").read_text())
    assert rec["provenance"]["method"] == "lungs:model+lesions:classical"
    assert rec["provenance"]["weights_sha256"] == weights_info()["sha256"]
    assert abs(rec["measures"]["lung_ml"] - 4554) / 4554 < 0.05
    (row,) = read_csv(out / "results.csv")
    assert row["method"] == "lungs:model+lesions:classical"


def _session_processes(sid: int) -> list[str]:
    """PIDs of the live processes of session ``sid`` (the killed batch and its workers)."""
    run = subprocess.run(["ps", "-e", "-o", "pid=,sid=,stat="], capture_output=True, text=True,
                         check=True)
    return [pid for pid, s, stat in (line.split() for line in run.stdout.splitlines())
            if int(s) == sid and not stat.startswith("Z")]


def _committed(out: Path) -> int:
    return len(list(out.glob("S-*/result.json")))


@pytest.mark.realdata
@pytest.mark.slow
def test_kill_9_mid_batch_then_resume_gives_the_same_results(chest_dir, edge_dir, tmp_path):
    inputs = [str(chest_dir / "tcia-covid19-ny-sbu-axial-slices"),
              str(edge_dir / "cip-chest-ct-64-dicom-series-implicit-vr"),
              str(chest_dir / "cip-copd-chest-ct-64" / "ct.nii.gz")]
    env = {**os.environ, "LESIONQUANT_SALT": "kill-test"}
    cmd = [sys.executable, "-m", "lesionquant", "-q", "run", *inputs, "--no-qa"]
    # reference: one uninterrupted run
    ref = tmp_path / "ref"
    done = subprocess.run([*cmd, "-o", str(ref), "--workers", "2"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    n_scans = _committed(ref)
    assert n_scans == 12
    # the same batch, killed with SIGKILL (process and its workers) after 2 scans
    out = tmp_path / "out"
    proc = subprocess.Popen([*cmd, "-o", str(out), "--workers", "1"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while _committed(out) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # the batch process only, as the OOM killer would
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = _committed(out)
    # its orphaned workers notice and exit without committing anything more
    deadline = time.monotonic() + 10
    while _session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftover = _session_processes(proc.pid)
    if leftover:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not leftover, "worker processes outlived the killed batch"
    assert _committed(out) == partial
    assert 2 <= partial < n_scans, "the kill came too late to test anything"
    # resume with the real CLI
    resumed = subprocess.run([*cmd, "-o", str(out), "--workers", "2"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{n_scans - partial} done, {partial} skipped, 0 failed" in resumed.stdout
    got, want = read_csv(out / "results.csv"), read_csv(ref / "results.csv")
    assert [r["scan_id"] for r in got] == [r["scan_id"] for r in want]
    assert len({r["scan_id"] for r in got}) == len(got) == n_scans  # nothing duplicated
    for g, w in zip(got, want, strict=True):
        for col in NUMERIC:
            assert float(g[col]) == pytest.approx(float(w[col]), rel=1e-9), (g["scan_id"], col)
    assert read_csv(out / "endpoint.csv") == read_csv(ref / "endpoint.csv")
    assert read_csv(out / "errors.csv") == []
    assert not [p for p in out.iterdir() if p.name.startswith((".tmp", ".old"))]
