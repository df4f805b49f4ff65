"""The review server over plain HTTP: routes, slices, safety checks, verdict side effects,
and ``lesionquant review`` as a real subprocess."""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.error
import urllib.request

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import start_review
from PIL import Image

from lesionquant.qa import ReviewServer, load_verdicts, serve_review
from lesionquant.qa._display import COLOURS, LUNG_WINDOW, MEDIASTINUM_WINDOW, window_uint8


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def _post(url: str, doc: object, token: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-LesionQuant-Token"] = token
    req = urllib.request.Request(url, data=json.dumps(doc).encode(), headers=headers,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _token(base: str) -> str:
    _, page, ctype = _get(base)
    assert ctype.startswith("text/html")
    m = re.search(rb'name="lq-token" content="([^"]+)"', page)
    assert m
    return m.group(1).decode()


@pytest.fixture()
def server(batch_out, batch_inputs):
    srv = ReviewServer(batch_out, port=0, inputs=batch_inputs).start()
    yield srv
    srv.close()


def test_scans_detail_and_slices(server, batch_out, batch_inputs):
    base = server.url
    assert base.startswith("http://127.0.0.1:")
    status, body, _ = _get(base + "api/scans")
    doc = json.loads(body)
    assert status == 200 and len(doc["scans"]) == 2
    assert len(doc["failed"]) == 1 and doc["failed"][0]["reason"] == (
        "<input>: no such file or folder")  # pseudonymised: no input path (issue 22)
    assert "source" not in doc["failed"][0]
    scan_id = doc["scans"][0]["id"]
    rec = json.loads((batch_out / scan_id / "result.json").read_text())
    assert doc["scans"][0]["numbers"]["lesion_pct"] == pytest.approx(
        rec["measures"]["lesion_pct"])

    detail = json.loads(_get(f"{base}api/scans/{scan_id}")[1])
    assert detail["error"] is None
    vol = detail["volume"]
    assert (vol["n_slices"], vol["rows"], vol["cols"]) == (36, 56, 64)
    assert vol["spacing_mm"] == [5.0, 5.0, 6.0]
    lesion = np.array(vol["ggo_voxels"]) + np.array(vol["consolidation_voxels"])
    assert lesion[vol["start_slice"]] == lesion.max() > 0

    # Which input is this scan? The one whose lesion voxel count matches.
    for path in batch_inputs:
        ct = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        lab = sitk.GetArrayFromImage(sitk.ReadImage(str(path).replace(".nii.gz",
                                                                      ".labels.nii.gz")))
        if np.count_nonzero(lab == 3) == sum(vol["ggo_voxels"]):
            break
    k = vol["start_slice"]
    status, png, ctype = _get(f"{base}api/scans/{scan_id}/ct/{k}.png?w=lung")
    assert status == 200 and ctype == "image/png"
    grey = np.asarray(Image.open(io.BytesIO(png)))
    assert grey.shape == (56, 64)
    np.testing.assert_array_equal(grey, window_uint8(ct[k], LUNG_WINDOW))
    grey_m = np.asarray(Image.open(io.BytesIO(
        _get(f"{base}api/scans/{scan_id}/ct/{k}.png?w=mediastinum")[1])))
    np.testing.assert_array_equal(grey_m, window_uint8(ct[k], MEDIASTINUM_WINDOW))

    over = np.asarray(Image.open(io.BytesIO(_get(f"{base}api/scans/{scan_id}/overlay/{k}.png")[1])))
    scale = over.shape[0] // 56
    assert over.shape == (56 * scale, 64 * scale, 4) and scale >= 8
    for value, colour in ((3, COLOURS["ggo"]), (4, COLOURS["consolidation"])):
        rows, cols = np.nonzero(lab[k] == value)
        if rows.size:
            r, c = int(np.median(rows)), int(np.median(cols))
            want = [int(colour[i:i + 2], 16) for i in (1, 3, 5)] + [255]
            assert over[r * scale + scale // 2, c * scale + scale // 2].tolist() == want
    assert over[2, 2, 3] == 0, "outside the lungs the overlay is transparent"

    rows, cols = np.nonzero(lab[k] == 3) if (lab[k] == 3).any() else np.nonzero(lab[k] == 4)
    r, c = int(rows[0]), int(cols[0])
    probe = json.loads(_get(f"{base}api/scans/{scan_id}/hu/{k}?r={r}&c={c}")[1])
    assert probe["hu"] == float(ct[k, r, c])
    assert probe["label"] == lab[k, r, c]
    assert probe["label_name"] in ("GGO", "consolidation")
    assert _get(f"{base}api/scans/{scan_id}/hu/{k}?r=999&c=0")[0] == 404


def test_errors_and_safety(server, batch_out):
    base = server.url
    scan_id = json.loads(_get(base + "api/scans")[1])["scans"][0]["id"]
    assert _get(f"{base}api/scans/{scan_id}/ct/999.png")[0] == 404
    assert _get(f"{base}api/scans/{scan_id}/ct/3.png?w=bone")[0] == 400
    assert _get(f"{base}api/scans/S-nonexistent")[0] == 404
    assert _get(f"{base}api/scans/..%2F..%2Fetc/ct/0.png")[0] == 404
    assert _get(base + "static/../_server.py")[0] == 404
    # DNS rebinding: a page served under another host name gets nothing.
    assert _get(base + "api/scans", {"Host": "evil.example:80"})[0] == 403
    # Writes need the page's token (another site in the same browser cannot post).
    assert _post(f"{base}api/scans/{scan_id}/verdict", {"verdict": "accept"}, None)[0] == 403
    assert _post(f"{base}api/scans/{scan_id}/verdict", {"verdict": "accept"}, "x")[0] == 403
    token = _token(base)
    assert _post(f"{base}api/scans/{scan_id}/verdict", {"verdict": "maybe"}, token)[0] == 400
    assert load_verdicts(batch_out) == {}


def test_verdict_updates_store_table_and_index(server, batch_out):
    base = server.url
    scan_id = json.loads(_get(base + "api/scans")[1])["scans"][1]["id"]
    status, doc = _post(f"{base}api/scans/{scan_id}/verdict",
                        {"verdict": "reject", "comment": "missed RLL consolidation",
                         "reader": "JD"}, _token(base))
    assert status == 200 and doc["verdict"] == "reject"
    v = load_verdicts(batch_out)[scan_id]
    assert (v.verdict, v.comment, v.reader) == ("reject", "missed RLL consolidation", "JD")
    rows = {r["scan_id"]: r for r in csv.DictReader(io.StringIO(
        (batch_out / "results.csv").read_text(encoding="utf-8")))}
    assert rows[scan_id]["qa_verdict"] == "reject"
    assert rows[scan_id]["qa_comment"] == "missed RLL consolidation"
    assert [r["qa_verdict"] for k, r in rows.items() if k != scan_id and r["status"] == "done"
            ] == [""]
    index = (batch_out / "index.html").read_text(encoding="utf-8")
    assert f'<tr data-scan="{scan_id}" data-status="reject">' in index
    assert "missed RLL consolidation" in index


def test_without_inputs_shows_the_montage(batch_out):
    """A pseudonymous batch does not record its inputs: the viewer says how to fix it and
    still shows the QA montage."""
    with serve_review(batch_out, port=0, block=False) as srv:
        scan_id = json.loads(_get(srv.url + "api/scans")[1])["scans"][0]["id"]
        detail = json.loads(_get(f"{srv.url}api/scans/{scan_id}")[1])
        assert detail["volume"] is None and "--input" in detail["error"]
        assert detail["has_montage"]
        status, png, _ = _get(f"{srv.url}api/scans/{scan_id}/montage.png")
        assert status == 200 and png == (batch_out / scan_id / "overlay.png").read_bytes()
        assert _get(f"{srv.url}api/scans/{scan_id}/ct/0.png")[0] == 409


def test_cli_review_subprocess(batch_out, batch_inputs):
    proc, url = start_review(batch_out, batch_inputs)
    try:
        doc = json.loads(_get(url + "api/scans")[1])
        assert len(doc["scans"]) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_review_bad_folder_and_busy_port(tmp_path, caplog):
    import socket

    from lesionquant.cli import main

    assert main(["review", str(tmp_path / "nope"), "--no-browser"]) == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["review", str(tmp_path), "--port", str(port), "--no-browser"]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in caplog.text


def test_empty_and_corrupt_folders(tmp_path):
    from lesionquant.errors import InvalidInputError
    from lesionquant.qa import write_index

    with ReviewServer(tmp_path, port=0).start() as srv:
        doc = json.loads(_get(srv.url + "api/scans")[1])
        assert doc["scans"] == [] and doc["failed"] == []
    assert "0 scans measured, 0 failed" in write_index(tmp_path).read_text(encoding="utf-8")
    (tmp_path / "verdicts.json").write_text("[]", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not a lesionquant verdicts file"):
        ReviewServer(tmp_path, port=0)


def test_viewer_refuses_derived_images(batch_out, batch_inputs, monkeypatch):
    """The viewer renders nothing of a derived / secondary-capture series either."""
    import dataclasses

    import lesionquant
    from lesionquant.scan import Acquisition

    real_load = lesionquant.load_scan

    def load_derived(source, series_uid=None, **kw):
        scan = real_load(source, series_uid=series_uid, **kw)
        return dataclasses.replace(scan, acquisition=Acquisition(
            modality="CT", image_type=("DERIVED", "SECONDARY", "SCREENSHOT")))

    monkeypatch.setattr(lesionquant, "load_scan", load_derived)
    with ReviewServer(batch_out, port=0, inputs=batch_inputs).start() as srv:
        scan_id = json.loads(_get(srv.url + "api/scans")[1])["scans"][0]["id"]
        detail = json.loads(_get(f"{srv.url}api/scans/{scan_id}")[1])
        assert detail["volume"] is None and "derived or secondary-capture" in detail["error"]
        status, body, _ = _get(f"{srv.url}api/scans/{scan_id}/ct/0.png")
        assert status == 409 and b"burned-in" in body
