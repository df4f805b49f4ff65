"""``lesionquant series PATH``: one row per series, the choice explained, no identifiers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lesionquant.cli import main

sys.path.insert(0, str(Path(__file__).parent / "io"))
from _dicomgen import write_series


@pytest.mark.realdata
def test_philips_export_chooses_s2010_and_explains(edge_dir, capsys):
    assert main(["series", str(edge_dir / "dcmqa-ct-philips-phantom-study-export")]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].split()[:5] == ["PATIENT", "STUDY", "UID", "DESCRIPTION", "MODALITY"]
    chosen = [ln for ln in lines if "CHOSEN" in ln]
    assert len(chosen) == 1
    assert "STD BRAIN 5MM" in chosen[0] and " 28 " in chosen[0] and "only candidate" in chosen[0]
    assert any("LOCALIZER" in ln and "excluded" in ln and "localizer" in ln for ln in lines)
    summary = [ln for ln in lines if "Exam Summary" in ln]
    assert summary and all("excluded" in ln and "burned-in" in ln for ln in summary)


@pytest.mark.realdata
def test_json_output_and_no_choice(edge_dir, capsys):
    assert main(["series", "--json", str(edge_dir / "dcmqa-mr-transfer-syntaxes")]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["modality"] == "MR" and rows[0]["status"] == "excluded"
    assert rows[0]["slices"] == 1  # 9 files, one position: the 9 transfer syntaxes


def test_never_prints_patient_identifiers(tmp_path, capsys):
    hu = np.full((3, 8, 8), -1000, np.int16)
    hu[:, 2:6, 2:6] = 30
    write_series(tmp_path / "Doe_John_12345", hu, PatientName="Doe^John",
                 PatientID="PID-98765", AccessionNumber="ACC-55555", StudyDate="19990101")
    for argv in (["series", str(tmp_path)], ["series", "--json", str(tmp_path)]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        for secret in ("Doe", "John", "98765", "55555", "19990101"):
            assert secret not in out


def test_missing_path_is_an_error(tmp_path, capsys):
    assert main(["series", str(tmp_path / "nope")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_subprocess_entry_point(tmp_path):
    hu = np.full((2, 8, 8), -1000, np.int16)
    hu[:, 2:6, 2:6] = 30
    write_series(tmp_path, hu)
    out = subprocess.run([sys.executable, "-m", "lesionquant", "series", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "CHOSEN" in out.stdout and "test series" in out.stdout


def test_says_what_run_quantifies_and_what_load_scan_takes(tmp_path, capsys):
    """Two patients; the first with two reconstructions of one study. `run` quantifies all
    three CT series (RUN yes); load_scan's choice is one per study (CHOSEN), and on the whole
    folder load_scan refuses (several patients)."""
    hu = np.full((4, 8, 8), -1000, np.int16)
    hu[:, 2:6, 2:6] = 30
    write_series(tmp_path / "p1" / "thin", hu, study_uid="1.2.3.1", PatientID="PID-1",
                 SeriesDescription="thin", thickness_mm=1.0)
    write_series(tmp_path / "p1" / "thick", hu[:2], study_uid="1.2.3.1", PatientID="PID-1",
                 SeriesDescription="thick", thickness_mm=3.0, spacing_mm=(1.0, 1.0, 3.0))
    write_series(tmp_path / "p2", hu, study_uid="1.2.3.2", PatientID="PID-2",
                 SeriesDescription="other")
    assert main(["series", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    table = {ln.split()[3]: ln.split() for ln in out.splitlines()[1:4]}
    # numbered, never identified; one patient and study for the two reconstructions
    assert table["thin"][:2] == table["thick"][:2] != table["other"][:2]
    assert {table["thin"][0], table["other"][0]} == {"1", "2"}
    assert [table[d][9:11] for d in ("thin", "thick", "other")] == [
        ["yes", "CHOSEN"], ["yes", "candidate"], ["yes", "CHOSEN"]]
    assert "lesionquant run quantifies the 3 series" in out and "2 studies of 2" in out
    assert "load_scan / quantify on this path: refused" in out
    assert "PID-" not in out
    assert main(["series", "--json", str(tmp_path / "p1")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted((r["description"], r["run"], r["status"]) for r in rows) == [
        ("thick", "yes", "candidate"), ("thin", "yes", "CHOSEN")]
