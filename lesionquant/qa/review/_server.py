"""The review server: a local web page to scroll each scan and record verdicts.

Standard library only (``http.server``), bound to 127.0.0.1. Requests whose ``Host`` is
not this server (DNS rebinding) are refused, and writes need the per-server token that is
embedded in the page and an ``Origin`` (when the browser sends one) of this server, so another
web site open in the same browser cannot post verdicts. Every response forbids framing
(``X-Frame-Options: DENY``, CSP ``frame-ancestors 'none'``: no click-jacking of the verdict
buttons); malformed requests (bad ``Content-Length``, invalid UTF-8 or JSON, JSON nested too
deep) get ``400`` and never a traceback; a client that stalls is dropped after
:data:`SOCKET_TIMEOUT_S`. Temp files that a killed writer left in ``OUT`` are removed at start.

Routes (``<id>`` is a scan folder name in ``OUT``)::

    GET  /                                  the viewer page
    GET  /static/<file>                     its JS and CSS (package data)
    GET  /api/scans                         every scan: key numbers, verdict; failed scans
    GET  /api/scans/<id>                    one scan: numbers, warnings, geometry, profile
    GET  /api/scans/<id>/ct/<k>.png?w=lung  axial slice k (array index, z increasing
                                            superior), window lung | mediastinum
    GET  /api/scans/<id>/overlay/<k>.png    lesion fills + lung contour (RGBA)
    GET  /api/scans/<id>/hu/<k>?r=R&c=C     HU and label at row R, column C of slice k
    GET  /api/scans/<id>/montage.png        the QA montage (overlay.png)
    POST /api/scans/<id>/verdict            {"verdict", "comment", "reader"}
"""

from __future__ import annotations

import contextlib
import http.server
import importlib.resources
import json
import logging
import re
import secrets
import threading
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lesionquant._atomic import clean_stale_tmp
from lesionquant.errors import InvalidInputError, LesionQuantError
from lesionquant.qa._outdir import KEY_NUMBERS, ScanEntry, list_scans, read_errors
from lesionquant.qa._patients import visits_by_patient
from lesionquant.qa._verdicts import VERDICTS, load_verdicts, save_verdict
from lesionquant.qa.review._volumes import VolumeCache, match_inputs

logger = logging.getLogger(__name__)

__all__ = ["ReviewServer", "refresh_tables", "serve_review"]

HOST = "127.0.0.1"
_STATIC = {"viewer.js": "text/javascript", "viewer.css": "text/css"}
_ROUTE = re.compile(r"^/api/scans/(?P<id>[^/]+)(?:/(?P<what>ct|overlay)/(?P<k>\d+)\.png"
                    r"|/(?P<probe>hu)/(?P<pk>\d+)|/(?P<leaf>montage\.png|verdict))?$")
_LABEL_NAMES = {0: "", 1: "right lung", 2: "left lung", 3: "GGO", 4: "consolidation",
                5: "airway"}
_MAX_BODY = 64 * 1024
#: Seconds a client may stall on a connection before it is closed.
SOCKET_TIMEOUT_S = 20.0
_MAX_JSON_DEPTH = 8


def _static(name: str) -> bytes:
    return importlib.resources.files("lesionquant.qa.review").joinpath(
        "static", name).read_bytes()


def refresh_tables(out_dir: Path) -> None:
    """Rebuild ``results.csv`` (its ``qa_*`` columns) and ``index.html`` from the verdicts.

    Called after every verdict so the tables and the index always show the latest
    decision. Problems are logged, never raised: the verdict itself is already stored.
    """
    from lesionquant.batch import write_tables
    from lesionquant.qa._report import write_index

    try:
        write_tables(out_dir)
    except (OSError, LesionQuantError, ValueError) as exc:
        logger.warning("%s: results.csv not refreshed (%s)", out_dir, exc)
    try:
        write_index(out_dir)
    except (OSError, LesionQuantError) as exc:
        logger.warning("%s: index.html not refreshed (%s)", out_dir, exc)


class _App:
    """State shared by the request handlers of one server."""

    def __init__(self, out_dir: Path, port: int, token: str,
                 sources: dict[str, tuple[str, str | None]]) -> None:
        self.out_dir = out_dir
        self.port = port
        self.token = token
        self.cache = VolumeCache(sources=sources)
        self.refresh_lock = threading.Lock()
        self.scans_lock = threading.Lock()
        self._scans: dict[str, ScanEntry] = {}
        self._scans_stamp = -1

    def scans(self) -> dict[str, ScanEntry]:
        """The completed scans, re-read only when ``OUT`` changed (a scan folder is committed
        with a rename, which updates the folder's mtime), not on every slice request."""
        stamp = self.out_dir.stat().st_mtime_ns
        with self.scans_lock:
            if stamp != self._scans_stamp:
                self._scans = {s.scan_id: s for s in list_scans(self.out_dir)}
                self._scans_stamp = stamp
            return self._scans

    def summary(self) -> dict[str, Any]:
        verdicts = load_verdicts(self.out_dir)
        scans = self.scans()
        # Grouped by patient, visits in order (the endpoint table's order and days).
        visits = {str(r["scan_id"]): r for rows in visits_by_patient(
            self.out_dir, [s.result for s in scans.values()]).values() for r in rows}
        order = {sid: n for n, sid in enumerate(visits)}
        out = []
        for s in sorted(scans.values(), key=lambda s: (order.get(s.scan_id, len(order)),
                                                        s.scan_id)):
            v = verdicts.get(s.scan_id)
            visit = visits.get(s.scan_id, {})
            out.append({"id": s.scan_id, "patient": visit.get("patient"),
                        "study_date": visit.get("study_date") or None,
                        "day": visit.get("days_since_baseline"),
                        "numbers": {k: s.number(k) for k, _, _ in KEY_NUMBERS},
                        "verdict": v.verdict if v else None,
                        "comment": v.comment if v else "",
                        "warnings": len(s.warnings)})
        return {"scans": out, "failed": read_errors(self.out_dir),
                "labels": {k: label for k, label, _ in KEY_NUMBERS}}

    def detail(self, entry: ScanEntry) -> dict[str, Any]:
        v = load_verdicts(self.out_dir).get(entry.scan_id)
        doc: dict[str, Any] = {
            "id": entry.scan_id,
            "numbers": {k: entry.number(k) for k, _, _ in KEY_NUMBERS},
            "warnings": entry.warnings, "method": entry.method,
            "verdict": v.to_dict() if v else None,
            "has_montage": (entry.folder / "overlay.png").is_file(),
        }
        try:
            doc["volume"] = self.cache.get(entry).info()
            doc["error"] = None
        except LesionQuantError as exc:
            doc["volume"] = None
            doc["error"] = str(exc)
        return doc


def _json_depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text (brackets inside strings counted too: an upper
    bound), measured without recursion so a 20,000-deep body cannot exhaust the stack."""
    depth = best = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth -= 1
    return best


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "lesionquant-review"
    timeout = SOCKET_TIMEOUT_S  # socket timeout: a slow client cannot hold a thread forever
    app: _App  # set on the subclass made per server

    def handle_one_request(self) -> None:
        """Serve one request; any unexpected failure is a 500 answer and a log line, never a
        traceback on stderr or a connection closed without a response."""
        try:
            super().handle_one_request()
        except TimeoutError:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug: answer, log, keep serving
            logger.warning("review server: %s %s failed: %s: %s", self.command, self.path,
                           type(exc).__name__, exc)
            self.close_connection = True
            with contextlib.suppress(Exception):
                self._error(500, "internal error")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    # -- helpers -----------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, *, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "private, max-age=300" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy", "frame-ancestors 'none'")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                # The page moved on (a prefetched slice it no longer needs): not an error.
                logger.debug("client closed the connection before %s was sent", self.path)

    def _json(self, status: int, doc: Any) -> None:
        self._send(status, json.dumps(doc).encode("utf-8"), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        return host in (f"127.0.0.1:{self.app.port}", f"localhost:{self.app.port}")

    def _origin_ok(self) -> bool:
        """A state-changing request must come from this server's own page: an ``Origin``
        other than this server (or ``null``), or ``Sec-Fetch-Site: cross-site``, is refused.
        Clients that send no Origin (scripts, curl) still need the token."""
        origin = self.headers.get("Origin")
        if origin is not None and origin.strip().lower() not in (
                f"http://127.0.0.1:{self.app.port}", f"http://localhost:{self.app.port}"):
            return False
        site = (self.headers.get("Sec-Fetch-Site") or "").strip().lower()
        return site not in ("cross-site", "same-site")

    # -- GET -----------------------------------------------------------------------------
    def do_GET(self) -> None:
        if not self._host_ok():
            self._error(403, "wrong Host header")
            return
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        query = urllib.parse.parse_qs(url.query)
        try:
            if path in ("/", "/index.html"):
                page = _static("viewer.html").replace(b"__TOKEN__", self.app.token.encode())
                self._send(200, page, "text/html; charset=utf-8")
            elif path.startswith("/static/") and path[8:] in _STATIC:
                self._send(200, _static(path[8:]), _STATIC[path[8:]] + "; charset=utf-8")
            elif path == "/favicon.ico":
                self._send(204, b"", "image/x-icon")
            elif path == "/api/scans":
                self._json(200, self.app.summary())
            else:
                self._get_scan(path, query)
        except InvalidInputError as exc:
            self._error(500, str(exc))

    def _get_scan(self, path: str, query: dict[str, list[str]]) -> None:
        m = _ROUTE.match(path)
        entry = self.app.scans().get(m.group("id")) if m else None
        if m is None or entry is None or m.group("leaf") == "verdict":
            self._error(404, "not found")
            return
        if m.group("leaf") == "montage.png":
            png = entry.folder / "overlay.png"
            if not png.is_file():
                self._error(404, "no montage")
                return
            self._send(200, png.read_bytes(), "image/png")
            return
        if m.group("what") is None and m.group("probe") is None:
            self._json(200, self.app.detail(entry))
            return
        try:
            view = self.app.cache.get(entry)
        except LesionQuantError as exc:
            self._error(409, str(exc))
            return
        if m.group("probe"):
            self._probe(view, int(m.group("pk")), query)
            return
        k = int(m.group("k"))
        if not 0 <= k < view.n_slices:
            self._error(404, f"slice {k} outside 0..{view.n_slices - 1}")
            return
        if m.group("what") == "ct":
            window = query.get("w", ["lung"])[0]
            if window not in ("lung", "mediastinum"):
                self._error(400, "w must be lung or mediastinum")
                return
            self._send(200, view.ct_png(k, window), "image/png", cache=True)
        else:
            self._send(200, view.overlay_png(k), "image/png", cache=True)

    def _probe(self, view: Any, k: int, query: dict[str, list[str]]) -> None:
        """HU and label under the reader's mouse pointer."""
        try:
            r, c = int(query["r"][0]), int(query["c"][0])
        except (KeyError, ValueError):
            self._error(400, "r and c (row, column) are required")
            return
        nz, ny, nx = view.vol.hu.shape
        if not (0 <= k < nz and 0 <= r < ny and 0 <= c < nx):
            self._error(404, "outside the volume")
            return
        label = int(view.vol.labels[k, r, c])
        self._json(200, {"hu": float(view.vol.hu[k, r, c]), "label": label,
                         "label_name": _LABEL_NAMES.get(label, str(label))})

    do_HEAD = do_GET

    # -- POST ----------------------------------------------------------------------------
    def do_POST(self) -> None:
        if not self._host_ok():
            self._error(403, "wrong Host header")
            return
        if not self._origin_ok():
            self._error(403, "request from another origin")
            return
        token = self.headers.get("X-LesionQuant-Token", "")
        if not (token.isascii() and secrets.compare_digest(token, self.app.token)):
            self._error(403, "missing or wrong token")
            return
        m = _ROUTE.match(urllib.parse.unquote(urllib.parse.urlsplit(self.path).path))
        entry = self.app.scans().get(m.group("id")) if m else None
        if m is None or entry is None or m.group("leaf") != "verdict":
            self._error(404, "not found")
            return
        raw_length = (self.headers.get("Content-Length") or "0").strip()
        if not raw_length.isdigit() or not 0 < int(raw_length) <= _MAX_BODY:
            self.close_connection = True  # the body (if any) is not read: drop the stream
            self._error(400, "Content-Length missing, not a number, or too large")
            return
        data = self.rfile.read(int(raw_length))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self._error(400, "body is not UTF-8")
            return
        if _json_depth(text) > _MAX_JSON_DEPTH:
            self._error(400, "JSON nested too deep")
            return
        try:
            body = json.loads(text)
            verdict = str(body["verdict"])
        except (ValueError, KeyError, TypeError, RecursionError):
            self._error(400, "expected JSON {verdict, comment, reader}")
            return
        if verdict not in VERDICTS:
            self._error(400, f"verdict must be one of {', '.join(VERDICTS)}")
            return
        try:
            stored = save_verdict(self.app.out_dir, entry.scan_id, verdict,
                                  comment=str(body.get("comment", "")),
                                  reader=str(body.get("reader", "")))
        except LesionQuantError as exc:
            self._error(500, str(exc))
            return
        with self.app.refresh_lock:
            refresh_tables(self.app.out_dir)
        self._json(200, {"id": entry.scan_id, **stored.to_dict()})


class ReviewServer:
    """A running review server (see :func:`serve_review`).

    Attributes
    ----------
    out_dir : Path
        The batch output folder served.
    port : int
        The TCP port on 127.0.0.1.
    url : str
        ``http://127.0.0.1:<port>/``.
    """

    def __init__(self, out_dir: str | Path, *, port: int = 0,
                 inputs: Sequence[str | Path] = (), salt: str | None = None) -> None:
        self.out_dir = Path(out_dir)
        if not self.out_dir.is_dir():
            raise InvalidInputError("batch output folder does not exist", source=self.out_dir)
        removed = clean_stale_tmp(self.out_dir)
        if removed:
            logger.info("%s: removed %d temp file(s) left by an interrupted writer",
                        self.out_dir, removed)
        load_verdicts(self.out_dir)  # fail now, not at the first click, on a corrupt file
        sources = (match_inputs(self.out_dir, [str(p) for p in inputs], salt=salt)
                   if inputs else {})
        token = secrets.token_urlsafe(24)
        handler = type("Handler", (_Handler,), {})
        try:
            self._httpd = http.server.ThreadingHTTPServer((HOST, int(port)), handler)
        except OSError as exc:
            raise InvalidInputError(f"cannot listen on {HOST}:{port} ({exc.strerror}); "
                                    "choose another --port", source=self.out_dir) from exc
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        handler.app = _App(self.out_dir, self.port, token, sources)
        self.url = f"http://{HOST}:{self.port}/"
        self._thread: threading.Thread | None = None
        self._serving = False

    def serve_forever(self) -> None:
        """Serve until :meth:`close` is called (or KeyboardInterrupt)."""
        logger.info("review server for %s at %s", self.out_dir, self.url)
        self._serving = True
        self._httpd.serve_forever(poll_interval=0.2)

    def start(self) -> ReviewServer:
        """Serve in a background (daemon) thread and return at once."""
        self._thread = threading.Thread(target=self.serve_forever, name="lesionquant-review",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None or self._serving:  # shutdown() waits for serve_forever
            with contextlib.suppress(Exception):
                self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ReviewServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_review(out_dir: str | Path, *, port: int = 8765, inputs: Sequence[str | Path] = (),
                 salt: str | None = None, open_browser: bool = False, block: bool = True
                 ) -> ReviewServer:
    """Serve the review page for a batch output folder on ``127.0.0.1``.

    Parameters
    ----------
    out_dir : str or Path
        The batch output folder ``OUT``.
    port : int
        TCP port; ``0`` picks a free one.
    inputs : sequence of path
        The batch's inputs, to find each scan's CT when ``result.json`` does not record it
        (pseudonymous batches, the default). Without them such scans show their montage.
    salt : str, optional
        Pseudonym salt of the batch (default ``LESIONQUANT_SALT`` or ``OUT/.salt``).
    open_browser : bool
        Open the page in the default web browser.
    block : bool
        ``True``: serve until interrupted (Ctrl-C), then close. ``False``: serve in a
        background thread and return the running server (call ``close()``).

    Returns
    -------
    ReviewServer

    Raises
    ------
    InvalidInputError
        When ``out_dir`` is missing, its verdicts file is corrupt, or the port is taken.
    """
    server = ReviewServer(out_dir, port=port, inputs=inputs, salt=salt)
    if open_browser:
        import webbrowser

        threading.Timer(0.3, webbrowser.open, args=(server.url,)).start()
    if not block:
        return server.start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("review server stopped")
    finally:
        server.close()
    return server
