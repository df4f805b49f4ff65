"""Verdicts: round trip, history, durability across processes, corrupt files, concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from lesionquant.errors import InvalidInputError
from lesionquant.qa import Verdict, load_verdicts, save_verdict


def test_round_trip_and_history(tmp_path):
    assert load_verdicts(tmp_path) == {}
    first = save_verdict(tmp_path, "S-a", "reject", comment="lung base missed", reader="AB")
    assert isinstance(first, Verdict) and first.time_utc.endswith("Z")
    second = save_verdict(tmp_path, "S-a", "accept", comment="ok after re-run", reader="CD")
    save_verdict(tmp_path, "S-b", "pending", comment="ask a second reader")
    got = load_verdicts(tmp_path)
    assert set(got) == {"S-a", "S-b"}
    assert got["S-a"].verdict == "accept" and got["S-a"].comment == "ok after re-run"
    assert got["S-a"].reader == "CD" and got["S-a"].time_utc == second.time_utc
    assert [h["verdict"] for h in got["S-a"].history] == ["reject"]
    assert got["S-a"].history[0]["comment"] == "lung base missed"
    assert got["S-b"].verdict == "pending"
    doc = json.loads((tmp_path / "verdicts.json").read_text(encoding="utf-8"))
    assert doc["format"] == "lesionquant-verdicts" and doc["version"] == 1
    assert not list(tmp_path.glob(".verdicts.json.*")), "no temp file left behind"


def test_survives_a_new_process(tmp_path):
    save_verdict(tmp_path, "S-a", "reject", comment="ünïcödé ✓")
    code = ("import sys; from lesionquant.qa import load_verdicts; "
            "v = load_verdicts(sys.argv[1])['S-a']; print(v.verdict, v.comment)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, encoding="utf-8", check=True).stdout.strip()
    assert out == "reject ünïcödé ✓"


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="verdict must be one of"):
        save_verdict(tmp_path, "S-a", "maybe")
    with pytest.raises(ValueError, match="invalid scan id"):
        save_verdict(tmp_path, "../etc", "accept")
    with pytest.raises(InvalidInputError, match="does not exist"):
        save_verdict(tmp_path / "nope", "S-a", "accept")
    (tmp_path / "verdicts.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"verdicts\.json: not valid JSON"):
        load_verdicts(tmp_path)
    with pytest.raises(InvalidInputError):
        save_verdict(tmp_path, "S-a", "accept")  # never overwrites a corrupt file
    assert (tmp_path / "verdicts.json").read_text(encoding="utf-8") == "{not json"
    (tmp_path / "verdicts.json").write_text('{"a": 1}', encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not a lesionquant verdicts file"):
        load_verdicts(tmp_path)


def test_concurrent_writers_lose_nothing(tmp_path):
    ids = [f"S-{i:02d}" for i in range(24)]
    threads = [threading.Thread(target=save_verdict, args=(tmp_path, i, "accept"))
               for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(load_verdicts(tmp_path)) == ids
