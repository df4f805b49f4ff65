"""run_batch: many scans into one output folder, in parallel, resumable, crash-proof.

The jobs (one per CT series) run on an executor (:mod:`lesionquant.batch._executor`): the
local process pool by default (:mod:`lesionquant.batch._pool`), or the workers of a Dask
cluster (``client=``, :mod:`lesionquant.batch._dask`). Whatever runs them, each job commits
its own output folder atomically and this module writes the rest: error records, tables,
endpoint, progress and summary.

Called from a plain script without an ``if __name__ == "__main__":`` guard, worker processes
cannot start (each would re-run the script), so the scans run one at a time in the calling
process instead (:class:`~lesionquant.batch._executor.InProcessExecutor`), with a
``RuntimeWarning`` when more workers were asked for (:mod:`lesionquant.batch._mainguard`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesionquant._deid import public_reason
from lesionquant._version import __version__
from lesionquant.batch import _outputs
from lesionquant.batch._executor import InProcessExecutor, JobExecutor, Outcome
from lesionquant.batch._jobs import Job, expand_inputs
from lesionquant.batch._mainguard import unguarded_main_call
from lesionquant.batch._pool import LocalPoolExecutor
from lesionquant.batch._process import RunContext
from lesionquant.batch._pseudonym import load_or_create_salt
from lesionquant.batch._tables import write_tables
from lesionquant.errors import OutputExistsError
from lesionquant.settings import Settings

__all__ = ["BatchSummary", "run_batch"]

logger = logging.getLogger(__name__)

#: Minimum seconds between two rebuilds of results.csv while the batch runs.
_TABLE_INTERVAL_S = 10.0


@dataclass(frozen=True)
class BatchSummary:
    """What a batch did.

    Attributes
    ----------
    out_dir : pathlib.Path
        The output folder.
    done, skipped, failed : int
        Scans quantified now, scans already complete (``resume``), scans or inputs that failed.
    failures : tuple of (str, str)
        ``(scan id or input id, one-line reason)`` of each failure.
    seconds : float
        Wall time of the batch, s.
    endpoint_csv : pathlib.Path or None
        ``OUT/endpoint.csv`` when it was written.
    """

    out_dir: Path
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failures: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    endpoint_csv: Path | None = field(default=None)

    @property
    def ok(self) -> bool:
        """True when no scan failed."""
        return self.failed == 0

    def __str__(self) -> str:
        tail = f" (see {self.out_dir / 'errors.csv'})" if self.failed else ""
        return (f"{self.done} done, {self.skipped} skipped, {self.failed} failed "
                f"in {self.seconds:.1f} s -> {self.out_dir}{tail}")


def run_batch(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    settings: Settings | None = None,
    workers: int = 1,
    client: Any = None,
    resume: bool = True,
    overwrite: bool = False,
    keep_identifiers: bool = False,
    salt: str | None = None,
    endpoint: bool = True,
    baseline: Sequence[str] = (),
    seg: bool = True,
    index: bool = True,
    progress: bool | None = None,
    qa_hooks: Sequence[Callable[..., Any]] | None = None,
    allow_incomplete_series: bool = False,
    _compute: Callable[[Job, Settings], Any] | None = None,
) -> BatchSummary:
    """Quantify every CT series under ``inputs`` into ``out_dir``.

    Parameters
    ----------
    inputs : sequence of path
        Scan folders, volume files, or folders holding many scans (every CT series found is
        one job).
    out_dir : path
        Output folder (layout in ``docs/batch.md``); created when missing.
    settings : Settings, optional
        Pipeline settings (default ``Settings()``); stored in every ``result.json``.
    workers : int
        Parallel local worker processes (>= 1). Peak memory is about ``workers`` times one
        scan. Ignored with ``client``. Called from the top level of a script without an
        ``if __name__ == "__main__":`` guard, the scans run in this process instead (worker
        processes would re-run the script), with a ``RuntimeWarning`` when ``workers > 1``;
        notebooks, guarded scripts and the ``lesionquant`` command use worker processes.
    client : distributed.Client or str, optional
        Run the scans on a Dask cluster instead: a connected ``distributed.Client``, or the
        scheduler's address (``"tcp://host:8786"``) or scheduler file (``*.json``). Needs the
        ``dask`` extra; the inputs and ``out_dir`` must be on a filesystem that this process
        and every worker see under the same paths (``docs/batch.md``).
    resume : bool
        Skip scans whose result is already complete (default). With ``resume=False`` existing
        results are an error unless ``overwrite``.
    overwrite : bool
        Recompute and replace existing results.
    keep_identifiers : bool
        Write real patient identifiers and source paths into the outputs. Default: pseudonyms.
    salt : str, optional
        Pseudonym salt (else ``LESIONQUANT_SALT`` or ``OUT/.salt``, created when missing).
    endpoint : bool
        Write ``OUT/endpoint.csv`` at the end.
    baseline : sequence of str
        Scan ids to use as baselines (one per patient at most); other patients use their
        first visit.
    seg : bool
        Write a DICOM SEG (``seg.dcm``) for DICOM inputs.
    index : bool
        Let the QA module write ``OUT/index.html`` at the end.
    progress : bool or None
        Progress bar on stderr; ``None`` shows it when stderr is a terminal.
    qa_hooks : sequence of callables, optional
        ``hook(result, folder, scan_id=...)`` called in the worker to add files to the scan's
        folder before it is committed (picklable module-level functions). Default: the QA
        module's ``write_scan_qa`` (``overlay.png``, ``report.html``) when available; ``()``
        for none.
    allow_incomplete_series : bool
        Quantify series with lost slices (unreadable, empty or cut files, missing positions)
        anyway; each gap becomes an ``incomplete series:`` warning in ``result.json``,
        ``results.csv`` and the QA report. Default: such a series is a failed row.

    Returns
    -------
    BatchSummary
        Counts and failures. ``summary.ok`` is False when any scan failed.

    Raises
    ------
    OutputExistsError
        ``resume=False`` without ``overwrite`` and a result of this batch already exists, or
        ``out_dir`` holds results made with other settings (and ``overwrite`` is not set).
    ExecutorError
        ``client`` was given but Dask is not installed, the scheduler cannot be reached or was
        lost, or its workers cannot see ``out_dir`` or run another lesionquant version.
    LesionQuantError
        Another batch is writing into ``out_dir``.
    """
    if workers < 1:
        raise ValueError("run_batch: workers must be >= 1")
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError("run_batch was called while a worker process was starting (it "
                           "re-imports the script): put the call under "
                           "'if __name__ == \"__main__\":'")
    script = unguarded_main_call() if client is None else None
    if script is not None and workers > 1:
        warnings.warn(
            f"run_batch(workers={workers}) called at the top level of {script} without an "
            "'if __name__ == \"__main__\":' guard: worker processes would re-run the script, "
            "so the scans run one at a time in this process. Put the call under that guard "
            "to use worker processes.", RuntimeWarning, stacklevel=2)
    t0 = time.perf_counter()
    settings = settings or Settings()
    out = Path(out_dir)
    _check_out_dir(out)
    run_id = uuid.uuid4().hex
    executor = _make_executor(workers, client, in_process=script is not None)
    with executor, _outputs.batch_lock(out, owner=run_id):
        _outputs.recover(out)
        salt = load_or_create_salt(out, salt)
        jobs, input_errors = expand_inputs(list(inputs), salt)
        todo, skipped = _plan(out, jobs, settings, resume=resume, overwrite=overwrite)
        for err in input_errors:
            logger.error("%s", err.reason)
            _outputs.write_error(out, err.error_id, {
                "scan_id": err.error_id, "series_uid": "", "reason": err.reason,
                "public_reason": public_reason(err.reason, [err.source]),
                "source": err.source})
        ctx = RunContext(out_dir=str(out), settings=settings.to_dict(), salt=salt,
                         keep_identifiers=keep_identifiers, run_id=run_id,
                         parent_pid=os.getpid(), seg=seg,
                         qa_hooks=None if qa_hooks is None else tuple(qa_hooks),
                         allow_incomplete=allow_incomplete_series, compute=_compute)
        logger.info("%d scan(s) found, %d already complete, %d to run on %s",
                    len(jobs), len(skipped), len(todo), executor.description)
        failures = [(e.error_id, e.reason) for e in input_errors]
        try:
            done = _execute(todo, ctx, executor, failures, progress=progress,
                            total=len(jobs), initial=len(skipped))
        finally:
            # A worker killed mid-scan leaves its unfinished .tmp- folder behind; the
            # tables hold every scan committed so far, even when the executor was lost.
            _outputs.recover(out)
            write_tables(out)
        endpoint_csv = None
        if endpoint:
            from lesionquant.batch._endpoint import compute_endpoint

            compute_endpoint(out, baseline=baseline)
            endpoint_csv = out / "endpoint.csv"
        if index:
            _write_index(out)
    return BatchSummary(out_dir=out, done=done, skipped=len(skipped), failed=len(failures),
                        failures=tuple(failures), seconds=time.perf_counter() - t0,
                        endpoint_csv=endpoint_csv)


def _check_out_dir(out: Path) -> None:
    """Refuse a non-empty folder that is not a lesionquant output (e.g. a home folder)."""
    if out.exists() and not out.is_dir():
        raise OutputExistsError("exists and is not a folder", source=out)
    ours = any((out / name).exists() for name in (".salt", ".salt-id", ".lock", "results.csv"))
    if out.is_dir() and not ours and any(out.iterdir()):
        raise OutputExistsError("not empty and not a lesionquant output folder; choose a new "
                                "or empty folder", source=out)


def _plan(out: Path, jobs: list[Job], settings: Settings, *, resume: bool, overwrite: bool
          ) -> tuple[list[Job], list[Job]]:
    """Split jobs into (to run, already complete) and refuse unsafe mixes."""
    complete = [j for j in jobs if _outputs.is_complete(out, j.scan_id)]
    if overwrite:
        return list(jobs), []
    if complete and not resume:
        raise OutputExistsError(f"{len(complete)} result(s) already exist (e.g. "
                                f"{complete[0].scan_id}); use --overwrite to replace them or "
                                "--resume to keep them", source=out)
    want = _comparable(settings.to_dict())
    other_versions: set[str] = set()
    for job in complete:
        rec = _outputs.read_json(out / job.scan_id / _outputs.RESULT_JSON)
        have = _comparable(rec.get("provenance", {}).get("settings", {}))
        if have != want:
            raise OutputExistsError(
                f"{job.scan_id} was measured with other settings ({_diff(have, want)}); "
                "one output folder holds one configuration: use --overwrite or another folder",
                source=out)
        other_versions.add(str(rec.get("provenance", {}).get("package_version")))
    other_versions.discard(__version__)
    if other_versions:
        logger.warning("%s: results measured with lesionquant %s are kept, this is %s; the "
                       "tables will mix versions (use --overwrite to recompute)", out,
                       ", ".join(sorted(other_versions)), __version__)
    done_ids = {j.scan_id for j in complete}
    return [j for j in jobs if j.scan_id not in done_ids], complete


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings that change the numbers (the device does not)."""
    return {k: v for k, v in settings.items() if k != "device"}


def _diff(have: dict[str, Any], want: dict[str, Any]) -> str:
    keys = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
    return ", ".join(f"{k}: {have.get(k)!r} then, {want.get(k)!r} now" for k in keys)


def _make_executor(workers: int, client: Any, *, in_process: bool) -> JobExecutor:
    """The executor that runs the jobs: a Dask cluster when ``client`` is given (connected
    here, so a missing Dask or scheduler fails before anything is written), this process for
    an unguarded script, else the local process pool."""
    if client is not None:
        from lesionquant.batch._dask import DaskExecutor

        return DaskExecutor.connect(client)
    if in_process:
        logger.info("running the scans in this process (called from a script without an "
                    "'if __name__ == \"__main__\":' guard)")
        return InProcessExecutor()
    return LocalPoolExecutor(workers)


def _execute(todo: list[Job], ctx: RunContext, executor: JobExecutor,
             failures: list[tuple[str, str]], *, progress: bool | None, total: int,
             initial: int) -> int:
    """Run the jobs on ``executor``; append failures; return the number done.

    Everything but running the jobs happens here, the same for every executor: the error
    records, the periodic rebuild of the tables, the progress bar.
    """
    from tqdm import tqdm

    out = Path(ctx.out_dir)
    pending: deque[Job] = deque(todo)
    started: dict[str, float] = {}
    done = 0
    last_tables = time.monotonic()
    bar = tqdm(total=total, initial=initial, unit="scan", desc="lesionquant", file=sys.stderr,
               disable=(not sys.stderr.isatty()) if progress is None else not progress,
               dynamic_ncols=True)

    def finish(outcome: Outcome) -> None:
        nonlocal done
        job, summary = outcome.job, outcome.summary
        started.pop(job.scan_id, None)
        if outcome.ok and not _outputs.is_complete(out, job.scan_id):
            fail(job, f"a worker committed this scan but {out / job.scan_id} is not visible "
                      "here: OUT must be on a filesystem shared by this process and every "
                      "worker")
        elif outcome.ok:
            done += 1
            _outputs.remove_error(out, job.scan_id)
            logger.info("%s: done in %.1f s", job.scan_id, summary["seconds"])
        else:
            fail(job, summary["reason"])
        bar.update(1)

    def fail(job: Job, reason: str) -> None:
        logger.error("%s (%s): %s", job.scan_id, job.source, reason)
        failures.append((job.scan_id, reason))
        _outputs.write_error(out, job.scan_id, {
            "scan_id": job.scan_id, "series_uid": job.series_uid or "", "reason": reason,
            "public_reason": public_reason(reason, [job.source]), "source": job.source})

    try:
        with executor:
            executor.start(ctx)
            while pending or executor.busy():
                while pending and executor.free_slots() > 0:
                    job = pending.popleft()
                    executor.submit(job)
                    started[job.scan_id] = time.monotonic()
                for outcome in executor.collect(1.0):
                    finish(outcome)
                bar.set_postfix_str(_postfix(started, executor.in_flight(), len(failures)),
                                    refresh=True)
                if time.monotonic() - last_tables > _TABLE_INTERVAL_S:
                    write_tables(out)
                    last_tables = time.monotonic()
    finally:
        bar.set_postfix_str(f"failed {len(failures)}" if failures else "", refresh=False)
        bar.close()
    return done


def _postfix(started: dict[str, float], in_flight: int, failed: int) -> str:
    """The scans in flight and for how long (long scans), or their count when many."""
    now = time.monotonic()
    if 0 < len(started) <= 4:
        text = ", ".join(f"{sid} {now - t:.0f}s" for sid, t in started.items())
    else:
        text = f"{in_flight} in flight" if in_flight else ""
    return text + (f"; failed {failed}" if failed else "")


def _write_index(out: Path) -> None:
    """Let the QA module (re)build ``OUT/index.html`` when it provides ``write_index``, and
    place every ``report.html`` among its patient's visits (they were written by the workers
    before the other visits were known)."""
    try:
        from lesionquant import qa
    except ImportError:
        return
    update = getattr(qa, "update_report_patient_sections", None)
    if callable(update):
        try:
            update(out)
        except Exception as exc:  # the reports keep their numbers; the visit is an extra
            logger.warning("%s: patient section of the reports not written: %s", out, exc)
    write_index = getattr(qa, "write_index", None)
    if callable(write_index):
        try:
            write_index(out)
        except Exception as exc:  # the tables are written; the index is an extra
            logger.warning("%s: index.html not written: %s", out, exc)
