"""The Dask executor: one task per scan on the workers of an existing Dask cluster.

Dask is optional (``pip install "lesionquant[dask]"``) and imported only here, only when a
batch is given a client or a scheduler address. The workers run the same
:func:`~lesionquant.batch._process.process_job` as local worker processes, so each scan is
committed atomically into ``OUT/<scan_id>/`` on the shared filesystem by the worker that ran
it; this process receives the small summary and writes the tables.

Failures: a scan that fails is a ``"failed"`` summary as locally. A worker process that dies
under a scan (segfault, SIGKILL, its nanny's memory-limit kill) makes the scheduler re-run
the scan elsewhere; a scan that killed ``allowed-failures + 1`` workers comes back as
``KilledWorker`` and is recorded as failed with the reason (the memory limit when the nanny
reported a memory kill of that worker). Losing the scheduler ends the batch with
:class:`~lesionquant.batch._executor.ExecutorError`; rerun to resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from concurrent.futures import CancelledError
from typing import Any

from lesionquant._version import __version__
from lesionquant.batch._executor import WORKER_DIED, ExecutorError, JobExecutor, Outcome
from lesionquant.batch._jobs import Job
from lesionquant.batch._process import RunContext

__all__ = ["DaskExecutor", "import_distributed"]

logger = logging.getLogger(__name__)

#: Seconds to wait for the scheduler when connecting by address.
CONNECT_TIMEOUT_S = 30.0


def import_distributed() -> Any:
    """``distributed``, or an :class:`ExecutorError` naming the extra to install."""
    try:
        import distributed
    except ImportError:
        raise ExecutorError('Dask is not installed; pip install "lesionquant[dask]" on this '
                            "machine and on every worker", source="scheduler") from None
    return distributed


class DaskExecutor(JobExecutor):
    """Run the scans as tasks of a Dask cluster.

    Parameters
    ----------
    client : distributed.Client
        A connected client.
    owns_client : bool
        Close the client in :meth:`close` (it was made by :meth:`connect`).
    """

    def __init__(self, client: Any, *, owns_client: bool = False) -> None:
        self.client = client
        self._owns = owns_client
        self._futures: dict[Any, Job] = {}
        self.description = f"the Dask cluster at {client.scheduler.address}"

    @classmethod
    def connect(cls, client: Any) -> DaskExecutor:
        """A :class:`DaskExecutor` for a ``distributed.Client``, or for a scheduler address
        (``tcp://host:8786``) or scheduler file (``*.json``), connected here."""
        distributed = import_distributed()
        if isinstance(client, distributed.Client):
            return cls(client)
        target = os.fspath(client)
        kw: dict[str, Any] = ({"scheduler_file": target} if target.endswith(".json")
                              else {"address": target})
        try:
            made = distributed.Client(**kw, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ExecutorError(f"cannot reach the Dask scheduler: {type(exc).__name__}: {exc}",
                                source=target) from None
        return cls(made, owns_client=True)

    def start(self, ctx: RunContext) -> None:
        from lesionquant.batch._dask_worker import WarmUp, worker_info

        # A Dask worker's parent is its nanny, not this process: the lock's run id (checked
        # before each commit) stands in for the local pool's parent watch.
        # Workers resolve paths in their own working folder: send absolute ones.
        super().start(dataclasses.replace(ctx, parent_pid=0,
                                          out_dir=os.path.abspath(ctx.out_dir)))
        try:
            infos = self.client.run(worker_info, self.ctx.out_dir)
        except Exception as exc:  # unpicklable on a worker: lesionquant missing there
            raise ExecutorError(f"the Dask workers cannot run lesionquant ({type(exc).__name__}:"
                                f" {exc}); install lesionquant {__version__} on every worker",
                                source=self.client.scheduler.address) from None
        wrong = sorted(f"{a} ({i['version']})" for a, i in infos.items()
                       if i["version"] != __version__)
        if wrong:
            raise ExecutorError(f"Dask workers run another lesionquant than this one "
                                f"({__version__}): {', '.join(wrong)}; one batch, one version",
                                source=self.client.scheduler.address)
        blind = sorted(a for a, i in infos.items() if not i["sees_out"])
        if blind:
            raise ExecutorError(f"Dask workers {', '.join(blind)} do not see the output folder "
                                "under the same path: it must be on a filesystem shared by this "
                                "machine and every worker", source=self.ctx.out_dir)
        for addr, w in self.client.scheduler_info()["workers"].items():
            if w.get("nthreads", 1) > 1:
                logger.warning("Dask worker %s has %d threads; lesionquant runs one scan at a "
                               "time per worker process (start workers with --nthreads 1)",
                               addr, w["nthreads"])
        # settings + pipeline loaded once per worker process, also on workers that join later
        self.client.register_plugin(WarmUp(dict(ctx.settings)))
        logger.info("Dask: %d worker(s) ready at %s", len(infos), self.client.scheduler.address)

    def free_slots(self) -> int:
        # Every scan is handed to the scheduler at once: it queues them (worker-saturation),
        # balances them and scales adaptive clusters on the backlog.
        return 1 << 30

    def submit(self, job: Job) -> None:
        from lesionquant.batch._dask_worker import run_scan

        job = dataclasses.replace(job, source=os.path.abspath(job.source))
        fut = self.client.submit(run_scan, job, self.ctx, pure=False, retries=0,
                                 key=f"lesionquant-scan-{job.scan_id}-{self.ctx.run_id[:8]}")
        self._futures[fut] = job

    def busy(self) -> bool:
        return bool(self._futures)

    def in_flight(self) -> int:
        return len(self._futures)

    def collect(self, timeout_s: float) -> list[Outcome]:
        distributed = import_distributed()
        if not self._futures:
            return []
        try:
            with self.client.as_current():  # not set as the process's default client
                finished, _ = distributed.wait(list(self._futures), timeout=timeout_s,
                                               return_when="FIRST_COMPLETED")
        except TimeoutError:
            return []
        except CancelledError:  # the client lost the scheduler: every future was cancelled
            raise self._lost() from None
        outcomes = []
        for fut in finished:
            outcomes.append(self._outcome(self._futures[fut], fut, distributed))
            del self._futures[fut]
            fut.release()
        return outcomes

    def _outcome(self, job: Job, fut: Any, distributed: Any) -> Outcome:
        if fut.status == "cancelled":
            raise self._lost()
        try:
            return Outcome(job, fut.result())
        except CancelledError:
            raise self._lost() from None
        except distributed.KilledWorker as exc:
            return Outcome.failed(job, self._death_reason(exc))
        except Exception as exc:  # the task itself failed outside process_job (unpickling)
            return Outcome.failed(job, f"{type(exc).__name__} on the Dask worker: {exc}")

    def _lost(self) -> ExecutorError:
        return ExecutorError(f"lost the Dask scheduler ({len(self._futures)} scan(s) "
                             "unfinished); run the batch again to resume",
                             source=self.client.scheduler.address)

    def _death_reason(self, exc: Any) -> str:
        """Why the workers running a scan died: their memory limit, when the nanny said so."""
        tries = getattr(exc, "allowed_failures", 0) + 1
        last = getattr(getattr(exc, "last_worker", None), "address", None)
        tail = f"; Dask gave up after {tries} worker(s) died running it"
        try:
            events = self.client.get_events("worker-restart-memory")
        except Exception:  # events are a diagnosis, not a requirement
            events = ()
        for _, event in events:
            if event.get("worker") == last:
                rss_gb = event.get("rss", 0) / 1e9
                return (f"the Dask worker exceeded its memory limit while processing this scan "
                        f"(restarted by its nanny at {rss_gb:.2f} GB){tail}")
        return WORKER_DIED + tail

    def close(self) -> None:
        futures, self._futures = list(self._futures), {}
        connected = self.client.status == "running"
        if futures and connected:
            with contextlib.suppress(Exception):  # best effort: the scheduler may be gone
                self.client.cancel(futures)
        if self._owns:
            self._owns = False
            with contextlib.suppress(Exception):
                self.client.close(timeout=10 if connected else 2)
