"""Issue 22 end to end: a batch survives symlink loops, pipes and broken series; no
identifier reaches a shareable output."""

from __future__ import annotations

import csv
import gzip
import os
import shutil
import zlib
from pathlib import Path

import pydicom
import pytest
from _dicom import write_series
from _fakes import fake_compute_incomplete

from lesionquant.batch import run_batch
from lesionquant.cli import main

REPO = Path(__file__).resolve().parents[2]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_loop_fifo_and_broken_series_fail_alone_the_good_scan_is_done(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop.name)  # a symlink to itself
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    broken = write_series(tmp_path / "broken", patient_id="PAT9")
    Path(broken["files"][2]).write_bytes(b"")  # a lost slice
    good = tmp_path / "good"
    shutil.copytree(REPO / "sample_scans" / "healthy" / "dicom", good)
    out = tmp_path / "out"
    status = main(["-q", "run", str(loop), str(fifo), str(tmp_path / "broken"), str(good),
                   "-o", str(out), "--salt", "s", "--no-endpoint"])
    assert status == 1
    rows = read_csv(out / "results.csv")
    done = [r for r in rows if r["status"] == "done"]
    assert len(done) == 1 and 3500 < float(done[0]["lung_ml"]) < 4300  # truth 3840 mL
    assert done[0]["flags"] == ""  # a plausible adult lung volume, a complete series
    errors = {e["source"]: e["reason"] for e in read_csv(out / "errors.csv")}
    assert set(errors) == {str(loop), str(fifo), str(tmp_path / "broken")}
    assert "symbolic links" in errors[str(loop)]
    assert "not a regular file" in errors[str(fifo)]
    assert "lost slice" in errors[str(tmp_path / "broken")]
    assert Path(broken["files"][2]).name in errors[str(tmp_path / "broken")]
    assert all("\n" not in r for r in errors.values())
    assert len([r for r in rows if r["status"] == "failed"]) == 3


# -- privacy -------------------------------------------------------------------------------
NAME, PID, INSTITUTION = "ZZSMITH^JOHNQ", "MRN99887766", "ZZELSEWHERE GENERAL"
NEEDLES = (b"ZZSMITH", b"JOHNQ", PID.encode(), b"ZZELSEWHERE")


def _png_texts(data: bytes) -> bytes:
    """The text chunks of a PNG, decompressed (zTXt / iTXt)."""
    out, pos = b"", 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"tEXt":
            out += body
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            out += key + zlib.decompress(rest[1:])
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            flag, rest = rest[0], rest[2:]
            _, _, rest = rest.partition(b"\0")
            _, _, text = rest.partition(b"\0")
            out += key + (zlib.decompress(text) if flag else text)
        pos += 12 + length
    return out


def _views(path: Path) -> list[bytes]:
    data = path.read_bytes()
    views = [data]
    if path.name.endswith(".gz"):
        views.append(gzip.decompress(data))
    if path.suffix == ".png":
        views.append(_png_texts(data))
    return views


def test_no_identifier_in_any_shareable_output(tmp_path):
    root = tmp_path / "ZZSMITH JOHNQ MRN99887766"  # folder names carry name and MRN
    info = write_series(root / "ct", patient_id=PID, patient_name=NAME, size=24, slices=6)
    for k, f in enumerate(info["files"]):
        ds = pydicom.dcmread(f)
        ds.InstitutionName, ds.InstitutionAddress = INSTITUTION, "1 ZZSMITH Lane"
        ds.save_as(f)
        os.rename(f, root / "ct" / f"ZZSMITH_JOHNQ_{k:03d}.dcm")
    (root / "ct" / "ZZSMITH_JOHNQ_lost").write_bytes(b"")  # lost slice: a warning naming it
    bad = write_series(root / "broken", patient_id=PID, patient_name=NAME)
    for f in bad["files"]:
        ds = pydicom.dcmread(f)
        ds.PixelSpacing = [1000, 1000]  # implausible: a failure whose reason names the file
        ds.save_as(f)
    out = tmp_path / "out"
    summary = run_batch([root / "ct", root / "broken", root / "ZZSMITH_missing"], out,
                        salt="s", progress=False, allow_incomplete_series=True,
                        _compute=fake_compute_incomplete)
    assert (summary.done, summary.failed) == (1, 2)
    rec = next(out.glob("S-*/result.json")).read_text()
    assert "incomplete series" in rec and "incomplete_series" in rec  # the warning is there
    local = {out / "errors.csv"}
    checked = []
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out)
        if not path.is_file() or path in local or rel.parts[0] in (".errors", ".salt",
                                                                    ".salt-id", ".lock"):
            continue
        checked.append(rel.as_posix())
        for view in _views(path):
            for needle in NEEDLES:
                assert needle not in view, f"{needle!r} in {rel}"
            assert str(root).encode() not in view
    scan_files = {Path(p).name for p in checked if p.startswith("S-")}
    assert {"result.json", "labels.nii.gz", "seg.dcm", "overlay.png",
            "report.html"} <= scan_files
    assert {"results.csv", "endpoint.csv", "index.html"} <= set(checked)
    # the test can fail: the local errors.csv does name the input
    assert b"ZZSMITH" in (out / "errors.csv").read_bytes()
    index = (out / "index.html").read_text()
    assert index.count("&lt;input&gt;") >= 2  # both failures listed, pseudonymised
    seg = pydicom.dcmread(next(out.glob("S-*/seg.dcm")))
    assert seg.PatientIdentityRemoved == "YES"
    assert [c.CodeValue for c in seg.DeidentificationMethodCodeSequence] == [
        "113100", "113110", "113106"]


@pytest.mark.parametrize("text, expected", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
    ("a\x00b\r\nc", "a b c"), ("-12.5", "-12.5"), ("+cmd", "'+cmd"), ("@SUM(1)", "'@SUM(1)")])
def test_csv_cells_are_neutralised(tmp_path, text, expected):
    from lesionquant.batch._outputs import write_csv_atomic

    write_csv_atomic(tmp_path / "t.csv", ["c", "n"], [{"c": text, "n": -3.5}])
    row = read_csv(tmp_path / "t.csv")[0]
    assert row == {"c": expected, "n": "-3.5"}
