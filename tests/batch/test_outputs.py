"""The commit protocol: atomic files, atomic scan folders, recovery after kill -9, the lock."""

from __future__ import annotations

import json

import pytest

from lesionquant.batch import _outputs
from lesionquant.errors import LesionQuantError


def _scan_dir(path, value):
    path.mkdir(parents=True)
    (path / "labels.nii.gz").write_bytes(b"x" * 10)
    _outputs.write_json_atomic(path / _outputs.RESULT_JSON, {"value": value})


def test_atomic_writers_leave_no_temp_files(tmp_path):
    _outputs.write_json_atomic(tmp_path / "a.json", {"x": float("nan"), "y": (1, 2)})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": None, "y": [1, 2]}
    _outputs.write_csv_atomic(tmp_path / "t.csv", ["a", "b"],
                              [{"a": 0.1, "b": None}, {"a": True, "c": 3}])
    assert (tmp_path / "t.csv").read_text() == "a,b\n0.1,\ntrue,\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "t.csv"]


def test_commit_moves_the_whole_folder_and_replaces_an_old_one(tmp_path):
    _scan_dir(tmp_path / ".tmp-S-1-99", 1)
    final = _outputs.commit_scan_dir(tmp_path, "S-1", tmp_path / ".tmp-S-1-99")
    assert _outputs.is_complete(tmp_path, "S-1")
    assert _outputs.read_json(final / "result.json") == {"value": 1}
    _scan_dir(tmp_path / ".tmp-S-1-100", 2)
    _outputs.commit_scan_dir(tmp_path, "S-1", tmp_path / ".tmp-S-1-100")
    assert _outputs.read_json(final / "result.json") == {"value": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["S-1"]


def test_commit_refuses_an_incomplete_folder(tmp_path):
    (tmp_path / ".tmp-S-1").mkdir()
    with pytest.raises(FileNotFoundError):
        _outputs.commit_scan_dir(tmp_path, "S-1", tmp_path / ".tmp-S-1")
    assert not (tmp_path / "S-1").exists()


def test_recover_after_a_kill_at_each_step_of_an_overwrite(tmp_path):
    # killed while writing: the temp folder is dropped
    _scan_dir(tmp_path / ".tmp-S-a-1", 1)
    # killed after "final -> .old" but before "tmp -> final": the old result comes back
    _scan_dir(tmp_path / ".old-S-b", "old b")
    # killed after "tmp -> final" but before deleting .old: the new result stays
    _scan_dir(tmp_path / "S-c", "new c")
    _scan_dir(tmp_path / ".old-S-c", "old c")
    _outputs.recover(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["S-b", "S-c"]
    assert _outputs.read_json(tmp_path / "S-b" / "result.json") == {"value": "old b"}
    assert _outputs.read_json(tmp_path / "S-c" / "result.json") == {"value": "new c"}


def test_lock_excludes_a_second_batch_and_is_released(tmp_path):
    with _outputs.batch_lock(tmp_path), pytest.raises(LesionQuantError, match="another"):
        with _outputs.batch_lock(tmp_path):
            pass
    with _outputs.batch_lock(tmp_path):  # released when the first one ended
        pass


def test_error_records_are_written_and_forgotten(tmp_path):
    _outputs.write_error(tmp_path, "S-1", {"scan_id": "S-1", "reason": "bad"})
    assert _outputs.read_json(tmp_path / ".errors" / "S-1.json")["reason"] == "bad"
    _outputs.remove_error(tmp_path, "S-1")
    _outputs.remove_error(tmp_path, "S-1")  # idempotent
    assert list((tmp_path / ".errors").iterdir()) == []


def test_csv_numbers_have_six_significant_digits(tmp_path):
    """The stated precision of docs/batch.md: 6 significant digits, integers as integers,
    missing values empty; pandas reads the numbers back within 5e-6 relative error."""
    import csv

    values = {"lung_ml": 4523.123456789, "lesion_pct": 4.653123456, "tiny_ml": 0.000490000001,
              "change_pp": -2.3456789, "score": 12, "nan": float("nan"), "none": None,
              "flag": True}
    _outputs.write_csv_atomic(tmp_path / "t.csv", list(values), [values])
    with open(tmp_path / "t.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert row == {"lung_ml": "4523.12", "lesion_pct": "4.65312", "tiny_ml": "0.00049",
                   "change_pp": "-2.34568", "score": "12", "nan": "", "none": "",
                   "flag": "true"}
    for key in ("lung_ml", "lesion_pct", "tiny_ml", "change_pp"):
        assert float(row[key]) == pytest.approx(values[key], rel=5e-6)
