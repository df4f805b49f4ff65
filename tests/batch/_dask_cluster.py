"""A real Dask cluster on 127.0.0.1 for the tests: ``dask scheduler`` and ``dask worker``
subprocesses (each worker under its nanny, as on a real cluster), always torn down; and the
checks the Dask tests share (importable without Dask)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
#: results.csv columns that describe the run, not the scan.
RUN_COLUMNS = {"seconds"}

#: Scheduler settings of the test cluster, also what docs/batch.md recommends: one task per
#: worker thread at a time (no prefetching of big scans), and a scan is given up after it
#: killed 2 workers (the default 3 would cost 4 worker restarts in the memory test).
SCHEDULER_ENV = {
    "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0",
    "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
}


class Cluster:
    """``dask scheduler`` + ``n_workers`` x ``dask worker --nthreads 1`` on loopback."""

    def __init__(self, root: Path, n_workers: int = 2, memory_limit: str = "2GB") -> None:
        self.root = root
        self.scheduler_file = root / "scheduler.json"
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        self.n_workers = n_workers
        self.memory_limit = memory_limit

    def start(self) -> None:
        """Start the scheduler and the workers (:meth:`close` stops what was started)."""
        root, n_workers, memory_limit = self.root, self.n_workers, self.memory_limit
        env = {**os.environ, **SCHEDULER_ENV,
               # the tests' fake pipeline (_fakes) must be importable on the workers
               "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
        self._start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(self.scheduler_file)], env, "scheduler")
        deadline = time.monotonic() + 60
        while not self._address() and time.monotonic() < deadline:
            self._check_alive()
            time.sleep(0.1)
        if not self._address():
            raise RuntimeError(f"dask scheduler did not start: {self.tail()}")
        for i in range(n_workers):
            self._start(["worker", "--scheduler-file", str(self.scheduler_file),
                         "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                         "--no-dashboard", "--memory-limit", memory_limit,
                         "--local-directory", str(root / f"w{i}")], env, f"worker{i}")

    @property
    def address(self) -> str:
        return self._address() or ""

    def _address(self) -> str | None:
        with contextlib.suppress(OSError, ValueError):
            return json.loads(self.scheduler_file.read_text())["address"]
        return None

    def _start(self, args: list[str], env: dict[str, str], name: str) -> None:
        log = self.root / f"{name}.log"
        self.logs.append(log)
        with open(log, "wb") as fh:
            self.procs.append(subprocess.Popen([sys.executable, "-m", "dask", *args], env=env,
                                               cwd=self.root, stdout=fh,
                                               stderr=subprocess.STDOUT,
                                               start_new_session=True))

    def _check_alive(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"a dask process exited ({p.returncode}): {self.tail()}")

    def client(self, timeout_s: float = 90.0):
        """A client with every worker connected (a killed worker's nanny restarts it)."""
        from distributed import Client

        client = Client(self.address, timeout=30, set_as_default=False)
        try:
            client.wait_for_workers(self.n_workers, timeout=timeout_s)
        except Exception:
            client.close()
            raise
        return client

    def tail(self, n: int = 2000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-n:]}"
                         for p in self.logs if p.exists())

    def close(self) -> None:
        """SIGTERM every process group, SIGKILL what is left after 15 s."""
        for p in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)


@contextlib.contextmanager
def running_cluster(root: Path, **kw) -> Iterator[Cluster]:
    root.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(root, **kw)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def committed(out: Path) -> list[Path]:
    return sorted(out.glob("S-*/result.json"))


def leftovers(out: Path) -> list[str]:
    return [p.name for p in out.iterdir() if p.name.startswith((".tmp", ".old"))]


def equal_results(got: Path, want: Path) -> None:
    """results.csv equal in every scan and every value but the run time; label maps and
    result.json measures equal byte for byte / number for number; same endpoint table."""
    g, w = read_csv(got / "results.csv"), read_csv(want / "results.csv")
    assert [r["scan_id"] for r in g] == [r["scan_id"] for r in w]
    assert len({r["scan_id"] for r in g}) == len(g)
    for a, b in zip(g, w, strict=True):
        assert a.keys() == b.keys()
        for col in b.keys() - RUN_COLUMNS:
            assert a[col] == b[col], (a["scan_id"], col)
        if b["status"] == "done":
            sid = b["scan_id"]
            assert ((got / sid / "labels.nii.gz").read_bytes()
                    == (want / sid / "labels.nii.gz").read_bytes()), sid
            ra = json.loads((got / sid / "result.json").read_text())
            rb = json.loads((want / sid / "result.json").read_text())
            assert ra["measures"] == rb["measures"] and ra["patient"] == rb["patient"]
    if (want / "endpoint.csv").is_file():
        assert read_csv(got / "endpoint.csv") == read_csv(want / "endpoint.csv")


def settings_cache(client) -> dict[str, tuple[int, int]]:
    """Per worker: (calls, Settings objects built) of the per-process settings loader."""

    def info():
        from lesionquant.batch import _process

        ci = _process._settings_from_json.cache_info()
        return ci.hits + ci.misses, ci.misses

    return client.run(info)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``dask scheduler`` + 2 ``dask worker`` on 127.0.0.1, one per test module."""
    pytest.importorskip("distributed", reason="the Dask tests need the dask extra "
                                              '(pip install -e ".[test]")')
    with running_cluster(tmp_path_factory.mktemp("dask"), n_workers=2) as c:
        yield c


@pytest.fixture
def client(cluster):
    """A client of :func:`cluster`, closed after the test."""
    c = cluster.client()
    yield c
    c.close()
