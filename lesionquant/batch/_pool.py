"""The local executor: spawned worker processes that survive a dying worker.

Workers are separate processes (``concurrent.futures.ProcessPoolExecutor``, spawn start,
recycled after a few scans so memory stays bounded at about ``workers`` x one scan). At most
``workers`` jobs are in flight, so when a worker process dies (segfault, out-of-memory kill)
only those jobs are suspects: each is re-run alone in a fresh process, and the one that kills
its process again is recorded as failed. The batch itself goes on.

Should no worker process ever get past its start-up (a script that fails when a spawned
worker re-imports it), that is not a scan's fault: the executor says so and runs the scans in
the calling process instead (:class:`~lesionquant.batch._executor.InProcessExecutor`).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import sys
import threading
import time
import warnings
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from lesionquant.batch._executor import WORKER_DIED, InProcessExecutor, JobExecutor, Outcome
from lesionquant.batch._jobs import Job
from lesionquant.batch._process import RunContext, process_job

__all__ = ["MAX_TASKS_PER_CHILD", "LocalPoolExecutor"]

logger = logging.getLogger(__name__)

#: A worker process is replaced after this many scans (bounded memory growth).
MAX_TASKS_PER_CHILD = 4


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


def _make_pool(workers: int, started: Any = None) -> ProcessPoolExecutor:
    kwargs: dict[str, Any] = {"mp_context": multiprocessing.get_context("spawn"),
                              "initializer": _exit_with_parent,
                              "initargs": (os.getpid(), started)}
    if sys.version_info >= (3, 11):
        kwargs["max_tasks_per_child"] = MAX_TASKS_PER_CHILD
    return ProcessPoolExecutor(max_workers=workers, **kwargs)


class LocalPoolExecutor(JobExecutor):
    """``workers`` spawned local processes; a dying worker costs at most the scan that killed it.

    Parameters
    ----------
    workers : int
        Worker processes (>= 1); at most this many scans are in flight.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("LocalPoolExecutor: workers must be >= 1")
        self.workers = workers
        self.description = f"{workers} local worker process(es)"
        self._pool: ProcessPoolExecutor | None = None
        self._pool_size = 0
        self._inflight: dict[Future[dict[str, Any]], Job] = {}
        self._isolate: deque[Job] = deque()  # suspects of a crash, re-run one at a time
        self._isolated: set[str] = set()
        self._started: Any = None  # workers that got past their start-up (shared counter)
        self._fallback: InProcessExecutor | None = None  # when no worker can start

    def start(self, ctx: RunContext) -> None:
        # Workers watch this process and commit nothing once it is gone.
        super().start(dataclasses.replace(ctx, parent_pid=os.getpid()))
        self._started = multiprocessing.get_context("spawn").Value("i", 0)

    def free_slots(self) -> int:
        if self._fallback is not None:
            return self._fallback.free_slots()
        return 0 if self._isolate else self.workers - len(self._inflight)

    def submit(self, job: Job) -> None:
        if self._fallback is not None:
            self._fallback.submit(job)
        else:
            self._submit(job, self.workers)

    def busy(self) -> bool:
        return bool(self._inflight or self._isolate
                    or (self._fallback is not None and self._fallback.busy()))

    def in_flight(self) -> int:
        return len(self._inflight) + len(self._isolate) + (
            self._fallback.in_flight() if self._fallback is not None else 0)

    def collect(self, timeout_s: float) -> list[Outcome]:
        if self._fallback is not None:
            return self._fallback.collect(timeout_s)
        if self._isolate and not self._inflight:
            job = self._isolate.popleft()
            self._isolated.add(job.scan_id)
            self._submit(job, 1)
        if not self._inflight:
            return []
        finished, _ = wait(list(self._inflight), timeout=timeout_s,
                           return_when=FIRST_COMPLETED)
        outcomes: list[Outcome] = []
        broken: list[Job] = []
        for fut in finished:
            job = self._inflight.pop(fut)
            try:
                outcomes.append(Outcome(job, fut.result()))
            except BrokenProcessPool:
                broken.append(job)
            except Exception as exc:  # e.g. an unpicklable result: still one scan only
                outcomes.append(Outcome.failed(job, f"{type(exc).__name__}: {exc}"))
        if broken:
            # The pool is dead: every job still in flight died with it.
            for fut, job in self._inflight.items():
                try:
                    outcomes.append(Outcome(job, fut.result()))
                except Exception:
                    broken.append(job)
            self._inflight.clear()
            self._shutdown()
            if self._started is not None and self._started.value == 0:
                self._run_here([*broken, *self._isolate])
                return outcomes
            for job in broken:
                if job.scan_id in self._isolated or len(broken) == 1:
                    outcomes.append(Outcome.failed(job, WORKER_DIED))
                else:
                    self._isolate.append(job)
        return outcomes

    def close(self) -> None:
        self._shutdown()

    def _run_here(self, jobs: list[Job]) -> None:
        """No worker process ever got past its start-up: not a scan's fault. Run these jobs
        and every later one in this process."""
        msg = ("worker processes could not start (see the errors above; a script needs its "
               "run_batch call under 'if __name__ == \"__main__\":'); running the scans in "
               "this process instead")
        logger.warning("%s", msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=5)  # collect < _execute < run_batch
        self._fallback = InProcessExecutor()
        self._fallback.start(self.ctx)
        for job in jobs:
            self._fallback.submit(job)
        self._isolate.clear()

    def _submit(self, job: Job, size: int) -> None:
        if self._pool is not None and not self._inflight and self._pool_size != size:
            self._shutdown()
        if self._pool is None:
            self._pool, self._pool_size = _make_pool(size, self._started), size
        self._inflight[self._pool.submit(process_job, job, self.ctx)] = job

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
