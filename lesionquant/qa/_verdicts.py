"""Reader verdicts per scan, stored durably in ``OUT/verdicts.json``.

File format (UTF-8 JSON, written atomically; an audit trail is kept)::

    {
      "format": "lesionquant-verdicts",
      "version": 1,
      "verdicts": {
        "<scan_id>": {
          "verdict": "accept" | "reject" | "pending",
          "comment": "free text",
          "reader": "initials or name (optional)",
          "time_utc": "2026-11-25T21:03:04Z",
          "history": [ {previous entries, oldest first, without their own history} ]
        }
      }
    }

Writers hold an exclusive lock on ``OUT/.verdicts.lock`` (POSIX ``flock``) while they
read-modify-write, so two viewers on the same folder never lose a verdict.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesionquant._atomic import write_text_atomic
from lesionquant.errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = ["VERDICTS", "VERDICTS_FILE", "Verdict", "load_verdicts", "save_verdict"]

#: File name of the verdict store inside a batch output folder.
VERDICTS_FILE = "verdicts.json"
#: The verdicts a reader can record. ``pending`` keeps a comment without a decision.
VERDICTS = ("accept", "reject", "pending")
_FORMAT = "lesionquant-verdicts"
_VERSION = 1
_MAX_COMMENT = 4000
_lock = threading.Lock()


@dataclass(frozen=True)
class Verdict:
    """One reader's decision on one scan.

    Attributes
    ----------
    scan_id : str
        Pseudonymous scan id (the folder name in ``OUT/``).
    verdict : str
        ``"accept"``, ``"reject"`` or ``"pending"``.
    comment : str
        Free text (why rejected, what to fix).
    reader : str
        Who decided (optional).
    time_utc : str
        When, ISO 8601 UTC (``YYYY-MM-DDTHH:MM:SSZ``).
    history : tuple of dict
        Earlier verdicts on this scan, oldest first.
    """

    scan_id: str
    verdict: str
    comment: str = ""
    reader: str = ""
    time_utc: str = ""
    history: tuple[dict[str, str], ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready entry (without the scan id, which is its key)."""
        return {"verdict": self.verdict, "comment": self.comment, "reader": self.reader,
                "time_utc": self.time_utc, "history": [dict(h) for h in self.history]}


def _path(out_dir: str | Path) -> Path:
    return Path(out_dir) / VERDICTS_FILE


def _parse(path: Path, text: str) -> dict[str, Verdict]:
    try:
        doc = json.loads(text)
    except RecursionError:
        raise InvalidInputError("JSON nested too deep; not a verdicts file",
                                source=path) from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"not valid JSON ({exc.msg} at line {exc.lineno}); fix or "
                                "move the file, verdicts are never overwritten blindly",
                                source=path) from exc
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT \
            or not isinstance(doc.get("verdicts"), dict):
        raise InvalidInputError(f"not a lesionquant verdicts file (expected format "
                                f"{_FORMAT!r})", source=path)
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version != _VERSION:
        raise InvalidInputError(f"verdicts file version {json.dumps(version)[:20]} is not "
                                f"{_VERSION}, the version this lesionquant reads; fix or move "
                                "the file, verdicts are never overwritten blindly", source=path)
    out = {}
    for scan_id, entry in doc["verdicts"].items():
        if not isinstance(entry, Mapping) or entry.get("verdict") not in VERDICTS:
            raise InvalidInputError(f"bad verdict entry for scan {scan_id!r}", source=path)
        out[str(scan_id)] = Verdict(
            scan_id=str(scan_id), verdict=str(entry["verdict"]),
            comment=str(entry.get("comment", "")), reader=str(entry.get("reader", "")),
            time_utc=str(entry.get("time_utc", "")),
            history=tuple(dict(h) for h in _list(entry.get("history")) if isinstance(h, Mapping)),
        )
    return out


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def load_verdicts(out_dir: str | Path) -> dict[str, Verdict]:
    """Read the verdicts of a batch output folder.

    Parameters
    ----------
    out_dir : str or Path
        The batch output folder ``OUT``.

    Returns
    -------
    dict of str to Verdict
        Keyed by scan id; empty when ``OUT/verdicts.json`` does not exist yet.

    Raises
    ------
    InvalidInputError
        When the file exists but is not a valid verdicts file.
    """
    path = _path(out_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"not UTF-8 text (byte {exc.start}); fix or move the file, "
                                "verdicts are never overwritten blindly", source=path) from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read verdicts ({exc.strerror})", source=path) from exc
    return _parse(path, text)


@contextlib.contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    """Hold the in-process lock and, where available, an ``flock`` on ``OUT/.verdicts.lock``."""
    with _lock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: in-process lock only
            yield
            return
        with open(out_dir / ".verdicts.lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def save_verdict(out_dir: str | Path, scan_id: str, verdict: str, *, comment: str = "",
                 reader: str = "") -> Verdict:
    """Record a verdict for one scan (atomic, durable; earlier verdicts go to its history).

    Parameters
    ----------
    out_dir : str or Path
        The batch output folder ``OUT`` (must exist).
    scan_id : str
        Scan id (folder name in ``OUT``).
    verdict : str
        ``"accept"``, ``"reject"`` or ``"pending"``.
    comment : str
        Free text, at most 4000 characters.
    reader : str
        Who decided (optional).

    Returns
    -------
    Verdict
        The stored verdict.

    Raises
    ------
    ValueError
        For an unknown verdict or an empty scan id (a caller's mistake).
    InvalidInputError
        When ``OUT`` is missing or its verdicts file is corrupt.
    """
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, not {verdict!r}")
    if not scan_id or "/" in scan_id or "\\" in scan_id:
        raise ValueError(f"invalid scan id {scan_id!r}")
    out = Path(out_dir)
    if not out.is_dir():
        raise InvalidInputError("batch output folder does not exist", source=out)
    with _exclusive(out):
        current = load_verdicts(out)
        previous = current.get(scan_id)
        history: tuple[dict[str, str], ...] = ()
        if previous is not None:
            old = previous.to_dict()
            old.pop("history")
            history = (*previous.history, old)
        new = Verdict(scan_id=scan_id, verdict=verdict, comment=str(comment)[:_MAX_COMMENT],
                      reader=str(reader)[:200], time_utc=_now_utc(), history=history)
        current[scan_id] = new
        doc = {"format": _FORMAT, "version": _VERSION,
               "verdicts": {k: current[k].to_dict() for k in sorted(current)}}
        write_text_atomic(_path(out), json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    logger.info("verdict %s for %s saved", verdict, scan_id)
    return new
