"""The executor seam: what runs the jobs of a batch (submit a job, get its outcome).

The runner (:mod:`lesionquant.batch._runner`) plans the jobs, writes ``results.csv``,
``errors.csv``, the endpoint table, the progress bar and the summary; an executor only runs
:func:`~lesionquant.batch._process.process_job` somewhere and hands back one
:class:`Outcome` per submitted job: the job's own summary, or the reason the executor could not
run it (a worker process that died, a memory limit, ...). Three implementations:

* :class:`InProcessExecutor` - in the calling process, one job at a time;
* :class:`lesionquant.batch._pool.LocalPoolExecutor` - spawned local worker processes;
* :class:`lesionquant.batch._dask.DaskExecutor` - the workers of a Dask cluster.

Whatever the executor, a job commits its own output folder (``OUT/<scan_id>/``, atomically)
before its outcome is reported, so resume and the tables never depend on who ran it.
"""

from __future__ import annotations

import abc
import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import Any

from lesionquant.batch._jobs import Job
from lesionquant.batch._process import RunContext, process_job
from lesionquant.errors import LesionQuantError

__all__ = ["WORKER_DIED", "ExecutorError", "InProcessExecutor", "JobExecutor", "Outcome"]

#: Reason recorded for a scan whose worker process died under it (twice, locally).
WORKER_DIED = "the worker process died while processing this scan (crash or out of memory)"


class ExecutorError(LesionQuantError):
    """The executor asked for cannot run the batch (Dask missing, scheduler unreachable or
    lost, workers that cannot see the output folder or run another lesionquant)."""


@dataclass(frozen=True)
class Outcome:
    """What became of one submitted job.

    Attributes
    ----------
    job : Job
        The job.
    summary : dict
        ``process_job``'s summary: ``{"scan_id", "status": "done" | "failed", "reason",
        "seconds", ...}``; for a job the executor could not run, a ``"failed"`` summary with
        the executor's reason.
    """

    job: Job
    summary: dict[str, Any]

    @classmethod
    def failed(cls, job: Job, reason: str, seconds: float = 0.0) -> Outcome:
        """An outcome for a job that did not run to its end (its worker died, ...)."""
        return cls(job, {"scan_id": job.scan_id, "status": "failed",
                         "reason": " ".join(reason.split()), "seconds": seconds})

    @property
    def ok(self) -> bool:
        """True when the scan was quantified and committed."""
        return self.summary.get("status") == "done"


class JobExecutor(abc.ABC):
    """Runs the jobs of one batch. Use as a context manager: ``with executor: ...``.

    The runner calls :meth:`start` once, then repeatedly :meth:`submit` (while
    :meth:`free_slots` is positive) and :meth:`collect`, until nothing is :meth:`busy`; then
    :meth:`close`. Every submitted job comes back from :meth:`collect` exactly once.
    """

    #: Short description for the log ("2 local worker processes", "Dask at tcp://...").
    description: str = ""

    def start(self, ctx: RunContext) -> None:
        """Prepare to run jobs of the batch described by ``ctx``."""
        self.ctx = ctx

    @abc.abstractmethod
    def free_slots(self) -> int:
        """How many more jobs may be submitted now."""

    @abc.abstractmethod
    def submit(self, job: Job) -> None:
        """Start (or queue) one job."""

    @abc.abstractmethod
    def collect(self, timeout_s: float) -> list[Outcome]:
        """Outcomes of jobs that ended since the last call; waits up to ``timeout_s`` s for
        the first one."""

    @abc.abstractmethod
    def busy(self) -> bool:
        """True while a submitted job has not been collected."""

    def in_flight(self) -> int:
        """Number of submitted jobs not collected yet (for the progress bar)."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook, most executors hold resources
        """Release workers and connections (also after an error)."""

    def __enter__(self) -> JobExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessExecutor(JobExecutor):
    """Run each job in the calling process, one at a time (no pickling, no worker start-up).

    A job that crashes the interpreter (segfault, out-of-memory kill) ends the batch; rerun it
    to resume (every committed scan is kept).
    """

    description = "in this process"

    def __init__(self) -> None:
        self._queue: deque[Job] = deque()

    def start(self, ctx: RunContext) -> None:
        # No parent to watch: the batch process is the worker.
        super().start(dataclasses.replace(ctx, parent_pid=0))

    def free_slots(self) -> int:
        return 0 if self._queue else 1

    def submit(self, job: Job) -> None:
        self._queue.append(job)

    def collect(self, timeout_s: float) -> list[Outcome]:
        if not self._queue:
            return []
        job = self._queue.popleft()
        return [Outcome(job, process_job(job, self.ctx))]

    def busy(self) -> bool:
        return bool(self._queue)

    def in_flight(self) -> int:
        return len(self._queue)
