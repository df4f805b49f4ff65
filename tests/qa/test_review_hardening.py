"""The review server under hostile or broken requests (issue 22): 400 and never a traceback,
socket timeouts, Origin checks, no framing, stale temp files, refused verdict files."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time

import pytest

from lesionquant.errors import InvalidInputError
from lesionquant.qa import ReviewServer


@pytest.fixture()
def server(batch_out):
    srv = ReviewServer(batch_out, port=0).start()
    yield srv
    srv.close()


def _token(srv: ReviewServer) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("GET", "/")
    page = conn.getresponse().read()
    return re.search(rb'name="lq-token" content="([^"]+)"', page).group(1).decode()


def _scan_id(srv: ReviewServer) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("GET", "/api/scans")
    return json.loads(conn.getresponse().read())["scans"][0]["id"]


def _raw(srv: ReviewServer, request: bytes) -> bytes:
    """Send raw bytes, return the whole raw response."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _post(srv: ReviewServer, body: bytes, *, length: str | None = None,
          extra: dict[str, str] | None = None) -> bytes:
    scan = _scan_id(srv)
    headers = {"Host": f"127.0.0.1:{srv.port}", "X-LesionQuant-Token": _token(srv),
               "Content-Type": "application/json",
               "Content-Length": str(len(body)) if length is None else length,
               "Connection": "close", **(extra or {})}
    head = f"POST /api/scans/{scan}/verdict HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return _raw(srv, head.encode("latin-1") + body)


@pytest.mark.parametrize("body, length, expected", [
    (b'{"verdict": "accept", "comment": "\xff\xfe"}', None, b"not UTF-8"),
    (b"[" * 20000 + b"]" * 20000, None, b"nested too deep"),
    (b'{"verdict": "accept"}', "abc", b"Content-Length"),
    (b'{"verdict": "accept"}', "-5", b"Content-Length"),
    (b'{"verdict": "accept"}', "99999999", b"Content-Length"),
    (b"not json", None, b"expected JSON"),
    (b'["verdict"]', None, b"expected JSON"),
])
def test_malformed_posts_get_400_without_traceback(server, capfd, body, length, expected):
    reply = _post(server, body, length=length)
    assert reply.startswith(b"HTTP/1.0 400") or reply.startswith(b"HTTP/1.1 400"), reply[:200]
    assert expected in reply
    time.sleep(0.1)
    assert "Traceback" not in capfd.readouterr().err
    # the server still answers
    assert _scan_id(server)


def test_every_response_forbids_framing(server):
    for path in ("/", "/api/scans", "/static/viewer.js", "/nothing"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        assert r.getheader("X-Frame-Options") == "DENY", path
        assert "frame-ancestors 'none'" in r.getheader("Content-Security-Policy"), path


@pytest.mark.parametrize("extra", [{"Origin": "http://evil.example"}, {"Origin": "null"},
                                   {"Sec-Fetch-Site": "cross-site"}])
def test_cross_origin_posts_are_refused(server, batch_out, extra):
    reply = _post(server, b'{"verdict": "accept"}', extra=extra)
    assert b" 403 " in reply.split(b"\r\n", 1)[0] and b"another origin" in reply
    assert not (batch_out / "verdicts.json").exists()
    ok = _post(server, b'{"verdict": "accept"}',
               extra={"Origin": f"http://127.0.0.1:{server.port}"})
    assert b" 200 " in ok.split(b"\r\n", 1)[0]


def test_a_stalled_client_is_dropped(batch_out):
    srv = ReviewServer(batch_out, port=0)
    srv._httpd.RequestHandlerClass.timeout = 0.5
    srv.start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"GET /api/scans HTTP/1.1\r\nHost: 127.0.0.1")  # never finished
            t0 = time.monotonic()
            assert s.recv(100) == b""  # closed by the server
            assert time.monotonic() - t0 < 5
    finally:
        srv.close()


def test_stale_temp_files_are_removed_at_start(batch_out):
    dead = batch_out / ".results.csv.4194303.0123abcd.tmp"  # pid above pid_max: dead
    dead.write_text("half")
    import os

    alive = batch_out / f".index.html.{os.getpid()}.89abcdef.tmp"  # a live writer's
    alive.write_text("in progress")
    other = batch_out / "notes.tmp"
    other.write_text("not ours")
    ReviewServer(batch_out, port=0).close()
    assert not dead.exists() and alive.exists() and other.exists()


@pytest.mark.parametrize("content, match", [
    (b'{"format": "lesionquant-verdicts", "version": 1, "verdicts": {"S-1": '
     b'{"verdict": "accept", "comment": "\xff"}}}', "not UTF-8"),
    (b'{"format": "lesionquant-verdicts", "version": 2, "verdicts": {}}', "version 2"),
    (b'{"format": "lesionquant-verdicts", "version": "1", "verdicts": {}}', 'version "1"'),
    (b'{"format": "lesionquant-verdicts", "verdicts": {}}', "version null"),
    (b"[" * 100000 + b"]" * 100000, "nested too deep"),
])
def test_bad_verdicts_file_is_a_typed_refusal(batch_out, content, match):
    (batch_out / "verdicts.json").write_bytes(content)
    with pytest.raises(InvalidInputError, match=match):
        ReviewServer(batch_out, port=0)
