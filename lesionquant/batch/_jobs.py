"""Expand the INPUT arguments of a batch into jobs, one per CT series.

An INPUT is a volume file (NIfTI, NRRD, MHA/MHD), a scan folder, or a folder holding many
scans; folders are searched with the loader's discovery (headers only, no pixel decoding) and
every CT series the loader would accept becomes one job, loaded later by its series UID.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from lesionquant.batch._pseudonym import pseudonym

__all__ = ["Job", "JobError", "expand_inputs"]

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class Job:
    """One scan to quantify.

    Attributes
    ----------
    source : str
        Path handed to :func:`lesionquant.load_scan`.
    series_uid : str or None
        SeriesInstanceUID (0020,000E) to load from ``source``; ``None`` for volume files.
    key : str
        What the scan id is derived from: ``"series:<uid>"`` or ``"file:<absolute path>"``.
    scan_id : str
        Pseudonymous scan id (``S-<hex>``), also the name of the scan's output folder.
    description : str
        Short human description for logs (series description, slice count).
    """

    source: str
    series_uid: str | None
    key: str
    scan_id: str
    description: str = field(default="", repr=False)


@dataclass(frozen=True)
class JobError:
    """An INPUT that yielded no job (missing, unreadable, no CT series in it).

    ``error_id`` (``IN-<hex>``) names the failure in ``errors.csv``; ``reason`` is one line.
    """

    source: str
    error_id: str
    reason: str


def expand_inputs(inputs: list[str | os.PathLike[str]], salt: str
                  ) -> tuple[list[Job], list[JobError]]:
    """Turn INPUT paths into jobs (one per CT series), in a stable order.

    Parameters
    ----------
    inputs : list of path
        Scan folders, volume files or folders holding many scans.
    salt : str
        Salt of the scan-id pseudonyms (see :mod:`lesionquant.batch._pseudonym`).

    Returns
    -------
    jobs : list of Job
        Unique by scan id (the same series reached through two INPUTs is one job).
    errors : list of JobError
        INPUTs that gave no job, each with its one-line reason.
    """
    from lesionquant.errors import LesionQuantError

    jobs: dict[str, Job] = {}
    errors: list[JobError] = []
    for raw in inputs:
        path = Path(raw)
        try:
            found = _expand_one(path, salt)
        except LesionQuantError as exc:
            errors.append(JobError(str(path), pseudonym("IN", _absolute(path), salt),
                                   str(exc)))
            continue
        except OSError as exc:  # e.g. a folder that vanishes or loses permission meanwhile
            errors.append(JobError(str(path), pseudonym("IN", _absolute(path), salt),
                                   f"{path}: cannot be read ({exc.strerror or exc})"))
            continue
        for job in found:
            if job.scan_id in jobs:
                logger.info("%s: series already queued from another input, skipped", job.source)
                continue
            jobs[job.scan_id] = job
    return list(jobs.values()), errors


def _absolute(path: Path) -> str:
    """``path`` resolved, or made absolute when it cannot be (a symlink loop raises
    ``RuntimeError`` in ``Path.resolve`` before Python 3.13)."""
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):
        return os.path.abspath(path)


def _expand_one(path: Path, salt: str) -> list[Job]:
    import stat

    from lesionquant.errors import InvalidInputError
    from lesionquant.io import choose_series, discover_series
    from lesionquant.io._volumes import is_volume_file

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InvalidInputError("no such file or folder", source=path) from None
    except OSError as exc:  # symlink loop, permission denied
        raise InvalidInputError(f"cannot be read ({exc.strerror or exc})", source=path) from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InvalidInputError("not a regular file or folder (named pipe, socket or device)",
                                source=path)
    if path.is_file() and is_volume_file(str(path)):
        key = f"file:{_absolute(path)}"
        return [Job(str(path), None, key, pseudonym("S", key, salt), path.name)]
    disc = discover_series(path, strict=path.is_file())
    candidates = [s for s in disc.series if not s.excluded]
    if not candidates:
        choose_series(disc)  # raises the loader's own explanation
    jobs = []
    for s in candidates:
        # Load from the series' own folder, so a worker does not walk the whole INPUT tree
        # (a single-file INPUT stays that file).
        folder = str(path) if path.is_file() else os.path.commonpath(
            [os.path.dirname(h.path) for h in s.headers])
        key = f"series:{s.key}"
        desc = f"{s.first.series_description or 'series'} ({s.n_positions} slices)"
        jobs.append(Job(folder, s.key, key, pseudonym("S", key, salt), desc))
    return jobs
