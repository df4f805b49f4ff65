"""What runs inside a Dask worker: the per-worker warm-up plugin and the one-scan task.

Imported by the worker processes (by reference, from the pickled task and plugin) and by
:mod:`lesionquant.batch._dask`, only when a batch runs on Dask.
"""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path
from typing import Any

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - imported without Dask (doctest collection): unused
    WorkerPlugin = object

from lesionquant.batch._jobs import Job
from lesionquant.batch._process import RunContext, process_job, warm_up

__all__ = ["PLUGIN_NAME", "WarmUp", "run_scan", "worker_info"]

PLUGIN_NAME = "lesionquant"

#: One scan at a time per worker process, whatever its thread count: memory per worker stays
#: about one scan (the local pool's bound), and a memory-limit kill takes one scan with it.
_ONE_SCAN = threading.Lock()


class WarmUp(WorkerPlugin):
    """Load the pipeline and the batch's settings once when a worker (re)starts.

    Parameters
    ----------
    settings : dict
        ``Settings.to_dict()`` of the batch.
    """

    name = PLUGIN_NAME

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings

    def setup(self, worker: Any) -> None:
        warm_up(self.settings)


def run_scan(job: Job, ctx: RunContext) -> dict[str, Any]:
    """The Dask task of one scan: :func:`process_job`, one scan at a time per process.

    Returns
    -------
    dict
        ``process_job``'s summary plus ``"worker_pid"``.
    """
    with _ONE_SCAN:
        summary = process_job(job, ctx)
    gc.collect()  # the scan's arrays go before the next task arrives
    return {**summary, "worker_pid": os.getpid()}


def worker_info(out_dir: str) -> dict[str, Any]:
    """What the client checks on every worker before sending scans (``client.run``)."""
    from lesionquant import __version__

    out = Path(out_dir)
    return {"version": __version__, "pid": os.getpid(),
            "sees_out": (out / ".salt-id").is_file()}  # written before any scan is sent
