"""Crash-safe output folder: atomic files, the per-scan commit step and the lock.

The protocol that makes ``kill -9`` at any moment harmless:

1. Everything of one scan is written into ``OUT/.tmp-<scan_id>-<pid>-<token>/`` (result.json,
   labels.nii.gz, seg.dcm, QA files), unique per worker process on every host.
2. The folder is committed with one ``os.replace`` into ``OUT/<scan_id>/``. A rename is atomic,
   so ``OUT/<scan_id>/`` either does not exist or holds the complete set; ``result.json`` in it
   is the completion marker that ``--resume`` checks.
3. Replacing an existing result (``--overwrite``) first renames it to ``OUT/.old-<scan_id>/``;
   :func:`recover` puts it back if the new one never arrived, or deletes it if it did.
4. A failed scan is recorded as ``OUT/.errors/<scan_id>.json`` (atomic), removed once the scan
   succeeds. ``results.csv`` and ``errors.csv`` are never appended to: they are rebuilt from
   the committed files (:func:`lesionquant.batch.write_tables`), so nothing is ever lost or
   duplicated whatever the moment of the crash.
5. ``OUT/.lock`` is held with ``flock`` while a batch runs; the kernel drops it when the process
   dies, so a killed run never leaves a stale lock, and two runs never share one folder. It
   names the run that holds it: a worker still busy for an earlier, dead run (a Dask task
   outlives its client) sees another owner and commits nothing.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lesionquant._atomic import write_text_atomic
from lesionquant.errors import LesionQuantError

__all__ = [
    "ERRORS_DIR",
    "RESULT_JSON",
    "batch_lock",
    "commit_scan_dir",
    "is_complete",
    "lock_owner",
    "read_json",
    "recover",
    "remove_error",
    "write_csv_atomic",
    "write_error",
    "write_json_atomic",
    "write_text_atomic",
]

logger = logging.getLogger(__name__)

RESULT_JSON = "result.json"
ERRORS_DIR = ".errors"
_TMP_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"
_LOCK_FILE = ".lock"


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON (``NaN`` stored as ``null``) atomically."""
    write_text_atomic(path, json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file written by :func:`write_json_atomic`."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_csv_atomic(path: str | os.PathLike[str], columns: Sequence[str],
                     rows: Iterable[Mapping[str, Any]]) -> None:
    """Write a CSV table (header + rows, missing cells empty) atomically.

    Floats are written with :data:`CSV_SIGNIFICANT_DIGITS` significant digits (relative
    rounding error at most 5e-6: 4523.12 mL, 4.65312 %), ``None`` and NaN as empty cells (``NA``
    in pandas and R). ``result.json`` keeps the full precision.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    write_text_atomic(path, buf.getvalue())


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_FORMULA_START = ("=", "+", "-", "@")


def _csv_cell(value: Any) -> Any:
    """One cell: empty for missing values, and text neutralised for spreadsheets.

    Control characters (NUL, tab, CR, LF, ...) become one space; text that a spreadsheet
    would run as a formula (starting with ``= + - @``, e.g. ``=HYPERLINK(...)`` typed as a
    QA comment) gets a leading ``'`` (OWASP CSV injection advice). Numbers stay numbers.
    """
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _csv_float(value)
    if isinstance(value, str):
        value = _CONTROL.sub(" ", value)
        if value.startswith(_FORMULA_START):
            try:
                float(value)
            except ValueError:
                value = "'" + value
    return value


#: Significant digits of every float in the CSV tables (docs/batch.md).
CSV_SIGNIFICANT_DIGITS = 6


def _csv_float(value: float) -> str:
    """``value`` with :data:`CSV_SIGNIFICANT_DIGITS` significant digits (0.00049, 4523.12)."""
    return format(value, f".{CSV_SIGNIFICANT_DIGITS}g")


def _json_safe(value: Any) -> Any:
    """Recursively turn tuples into lists, numpy scalars into Python, NaN/inf into None."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if hasattr(value, "item"):  # numpy scalar
        return _json_safe(value.item())
    if hasattr(value, "value") and hasattr(value, "name"):  # enum
        return _json_safe(value.value)
    return str(value)


# --------------------------------------------------------------------------- per-scan folders

def is_complete(out_dir: Path, scan_id: str) -> bool:
    """True when ``OUT/<scan_id>/result.json`` exists (the commit marker)."""
    return (out_dir / scan_id / RESULT_JSON).is_file()


def commit_scan_dir(out_dir: Path, scan_id: str, tmp: Path) -> Path:
    """Atomically move the finished ``tmp`` folder to ``OUT/<scan_id>/`` and return it.

    An existing ``OUT/<scan_id>/`` is first renamed to ``OUT/.old-<scan_id>/`` and deleted once
    the new folder is in place (:func:`recover` finishes the job after a crash in between).
    """
    if not (tmp / RESULT_JSON).is_file():
        raise FileNotFoundError(f"{tmp}: no {RESULT_JSON}, refusing to commit")
    _fsync_dir(tmp)
    final = out_dir / scan_id
    old = out_dir / f"{_OLD_PREFIX}{scan_id}"
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except OSError:
        # Another worker committed the same scan in between (a Dask task re-run after its
        # worker was presumed dead): keep that complete folder, drop this one.
        if not (final / RESULT_JSON).is_file():
            raise
        logger.info("%s: committed by another worker meanwhile; keeping that one", final)
        shutil.rmtree(tmp, ignore_errors=True)
    _fsync_dir(out_dir)
    if old.exists():
        shutil.rmtree(old)
    return final


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform / file system can fsync folders
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def recover(out_dir: Path) -> None:
    """Clean up after a killed run: drop ``.tmp-*`` folders, restore or drop ``.old-*`` ones.

    Call only while holding :func:`batch_lock`.
    """
    if not out_dir.is_dir():
        return
    for entry in out_dir.iterdir():
        if not entry.is_dir():
            continue
        if entry.name.startswith(_TMP_PREFIX):
            logger.info("%s: removing an unfinished scan folder of an interrupted run", entry)
            # ignore_errors: a task of a dead run may still be writing into it (Dask)
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(_OLD_PREFIX):
            final = out_dir / entry.name[len(_OLD_PREFIX):]
            if (final / RESULT_JSON).is_file():
                shutil.rmtree(entry)
            else:
                if final.exists():
                    shutil.rmtree(final)
                logger.info("%s: restoring the previous result of an interrupted overwrite",
                            final)
                os.replace(entry, final)


def write_error(out_dir: Path, scan_id: str, record: Mapping[str, Any]) -> None:
    """Record a failed scan as ``OUT/.errors/<scan_id>.json`` (atomic)."""
    write_json_atomic(out_dir / ERRORS_DIR / f"{scan_id}.json", dict(record))


def remove_error(out_dir: Path, scan_id: str) -> None:
    """Forget an earlier failure of ``scan_id`` (it has succeeded since)."""
    with contextlib.suppress(FileNotFoundError):
        (out_dir / ERRORS_DIR / f"{scan_id}.json").unlink()


@contextlib.contextmanager
def batch_lock(out_dir: Path, owner: str = "") -> Iterator[None]:
    """Hold ``OUT/.lock`` exclusively for the duration of a batch.

    Parameters
    ----------
    out_dir : pathlib.Path
        The output folder (created when missing).
    owner : str
        Id of the run taking the lock, written into it (read back by :func:`lock_owner`).

    Raises
    ------
    LesionQuantError
        Another process holds the lock (a batch is already writing into this folder).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, run unprotected
        logger.warning("%s: file locking unavailable; do not run two batches on one folder",
                       out_dir)
        yield
        return
    fd = os.open(out_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LesionQuantError("another lesionquant run is writing into this folder; "
                                   "wait for it or use another output folder",
                                   source=out_dir) from None
        except OSError as exc:  # e.g. Lustre mounted without -o flock
            logger.warning("%s: cannot lock (%s); do not run two batches on one folder",
                           out_dir, exc)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{owner}\n".encode())
        os.fsync(fd)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def lock_owner(out_dir: Path) -> str | None:
    """The run id written by the batch that holds (or last held) ``OUT/.lock``; ``None``
    when there is no lock file or it names no run."""
    try:
        lines = (out_dir / _LOCK_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return lines[1].strip() or None if len(lines) > 1 else None
