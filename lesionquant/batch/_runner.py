"""run_batch: many scans into one output folder, in parallel, resumable, crash-proof.

Workers are separate processes (``concurrent.futures.ProcessPoolExecutor``, spawn start,
recycled after a few scans so memory stays bounded at about ``workers`` x one scan). At most
``workers`` jobs are in flight, so when a worker process dies (segfault, out-of-memory kill)
only those jobs are suspects: each is re-run alone in a fresh process, and the one that kills
its process again is recorded as failed. The batch itself goes on.

Called from a plain script without an ``if __name__ == "__main__":`` guard, worker processes
cannot start (each would re-run the script), so the scans run one at a time in the calling
process instead, with a ``RuntimeWarning`` when more workers were asked for
(:mod:`lesionquant.batch._mainguard`).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import sys
import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesionquant._deid import public_reason
from lesionquant._version import __version__
from lesionquant.batch import _outputs
from lesionquant.batch._jobs import Job, expand_inputs
from lesionquant.batch._mainguard import unguarded_main_call
from lesionquant.batch._process import RunContext, process_job
from lesionquant.batch._pseudonym import load_or_create_salt
from lesionquant.batch._tables import write_tables
from lesionquant.errors import OutputExistsError
from lesionquant.settings import Settings

__all__ = ["BatchSummary", "run_batch"]

logger = logging.getLogger(__name__)

#: A worker process is replaced after this many scans (bounded memory growth).
MAX_TASKS_PER_CHILD = 4
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
        Parallel worker processes (>= 1). Peak memory is about ``workers`` times one scan.
        Called from the top level of a script without an ``if __name__ == "__main__":``
        guard, the scans run in this process instead (worker processes would re-run the
        script), with a ``RuntimeWarning`` when ``workers > 1``; notebooks, guarded scripts
        and the ``lesionquant`` command use worker processes.
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
    LesionQuantError
        Another batch is writing into ``out_dir``.
    """
    if workers < 1:
        raise ValueError("run_batch: workers must be >= 1")
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError("run_batch was called while a worker process was starting (it "
                           "re-imports the script): put the call under "
                           "'if __name__ == \"__main__\":'")
    script = unguarded_main_call()
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
    with _outputs.batch_lock(out):
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
                         keep_identifiers=keep_identifiers, run_id=uuid.uuid4().hex,
                         parent_pid=os.getpid(), seg=seg,
                         qa_hooks=None if qa_hooks is None else tuple(qa_hooks),
                         allow_incomplete=allow_incomplete_series, compute=_compute)
        logger.info("%d scan(s) found, %d already complete, %d to run with %d worker(s)",
                    len(jobs), len(skipped), len(todo), workers)
        failures = [(e.error_id, e.reason) for e in input_errors]
        done = _execute(todo, ctx, workers, failures, progress=progress,
                        total=len(jobs), initial=len(skipped), in_process=script is not None)
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


def _exit_with_parent(parent_pid: int, started: Any = None) -> None:
    """Worker initializer: end this worker when the batch process dies (e.g. ``kill -9``).

    Without it an orphaned worker waits forever for its next task. ``started`` (a shared
    counter) tells the batch that a worker got past its start-up (importing ``__main__``).
    """
    if started is not None:
        with started.get_lock():
            started.value += 1

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="lesionquant-parent-watch", daemon=True).start()


def _make_pool(workers: int, started: Any) -> ProcessPoolExecutor:
    kwargs: dict[str, Any] = {"mp_context": multiprocessing.get_context("spawn"),
                              "initializer": _exit_with_parent,
                              "initargs": (os.getpid(), started)}
    if sys.version_info >= (3, 11):
        kwargs["max_tasks_per_child"] = MAX_TASKS_PER_CHILD
    return ProcessPoolExecutor(max_workers=workers, **kwargs)


def _execute(todo: list[Job], ctx: RunContext, workers: int,
             failures: list[tuple[str, str]], *, progress: bool | None, total: int,
             initial: int, in_process: bool = False) -> int:
    """Run the jobs; append failures; return the number done. Survives dying workers.

    With ``in_process`` (or when no worker process can start) the jobs run one at a time in
    this process.
    """
    from tqdm import tqdm

    out = Path(ctx.out_dir)
    pending: deque[Job] = deque(todo)
    isolate: deque[Job] = deque()  # suspects of a crash, re-run one at a time
    isolated: set[str] = set()
    inflight: dict[Future[dict[str, Any]], Job] = {}
    started: dict[str, float] = {}
    done = 0
    last_tables = time.monotonic()
    bar = tqdm(total=total, initial=initial, unit="scan", desc="lesionquant", file=sys.stderr,
               disable=(not sys.stderr.isatty()) if progress is None else not progress,
               dynamic_ncols=True)
    pool: ProcessPoolExecutor | None = None

    def finish(job: Job, summary: dict[str, Any]) -> None:
        nonlocal done
        if summary["status"] == "done":
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

    def run_here(jobs: deque[Job]) -> None:
        """The jobs one at a time in this process (no crash isolation)."""
        nonlocal last_tables
        here = dataclasses.replace(ctx, parent_pid=0)  # no parent to watch
        while jobs:
            job = jobs.popleft()
            bar.set_postfix_str(job.scan_id, refresh=True)
            finish(job, process_job(job, here))
            if time.monotonic() - last_tables > _TABLE_INTERVAL_S:
                write_tables(out)
                last_tables = time.monotonic()

    if in_process:
        logger.info("running the scans in this process (called from a script without an "
                    "'if __name__ == \"__main__\":' guard)")
        try:
            run_here(pending)
        finally:
            bar.set_postfix_str(f"failed {len(failures)}" if failures else "", refresh=False)
            bar.close()
        return done

    started_workers = multiprocessing.get_context("spawn").Value("i", 0)
    pool_size = 0
    try:
        while pending or isolate or inflight:
            size = 1 if isolate else workers
            if pool is not None and not inflight and pool_size != size:
                pool.shutdown(wait=True)
                pool = None
            if pool is None:
                pool, pool_size = _make_pool(size, started_workers), size
            if isolate:
                if not inflight:
                    job = isolate.popleft()
                    isolated.add(job.scan_id)
                    inflight[pool.submit(process_job, job, ctx)] = job
                    started[job.scan_id] = time.monotonic()
            else:
                while pending and len(inflight) < workers:
                    job = pending.popleft()
                    inflight[pool.submit(process_job, job, ctx)] = job
                    started[job.scan_id] = time.monotonic()
            finished, _ = wait(list(inflight), timeout=1.0, return_when=FIRST_COMPLETED)
            if inflight:  # show the scans in flight and for how long (long scans)
                now = time.monotonic()
                bar.set_postfix_str(", ".join(
                    f"{j.scan_id} {now - started.get(j.scan_id, now):.0f}s"
                    for j in inflight.values()) + (f"; failed {len(failures)}" if failures
                                                   else ""), refresh=True)
            broken: list[Job] = []
            for fut in finished:
                job = inflight.pop(fut)
                try:
                    finish(job, fut.result())
                except BrokenProcessPool:
                    broken.append(job)
                except Exception as exc:  # e.g. an unpicklable result: still one scan only
                    fail(job, f"{type(exc).__name__}: {exc}")
                    bar.update(1)
            if broken:
                # The pool is dead: every job still in flight died with it.
                for fut, job in inflight.items():
                    try:
                        finish(job, fut.result())
                    except Exception:
                        broken.append(job)
                inflight.clear()
                pool.shutdown(wait=True, cancel_futures=True)
                pool = None
                if started_workers.value == 0:
                    # Not a scan's fault: no worker process ever got past its start-up.
                    msg = ("worker processes could not start (see the errors above; a script "
                           "needs its run_batch call under 'if __name__ == \"__main__\":'); "
                           "running the scans in this process instead")
                    logger.warning("%s", msg)
                    warnings.warn(msg, RuntimeWarning, stacklevel=3)
                    run_here(deque([*broken, *isolate, *pending]))
                    isolate.clear()
                    pending.clear()
                    continue
                for job in broken:
                    if job.scan_id in isolated or len(broken) == 1:
                        fail(job, "the worker process died while processing this scan "
                                  "(crash or out of memory)")
                        bar.update(1)
                    else:
                        isolate.append(job)
            if time.monotonic() - last_tables > _TABLE_INTERVAL_S:
                write_tables(out)
                last_tables = time.monotonic()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.set_postfix_str(f"failed {len(failures)}" if failures else "", refresh=False)
        bar.close()
    return done


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
