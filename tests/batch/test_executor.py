"""The executor seam: every executor hands back one outcome per job, whatever happens to it.

The Dask executor runs the same contract against a real cluster in tests/batch/test_dask.py.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
from _dicom import write_series
from _fakes import fake_compute, record_qa

from lesionquant.batch import _outputs, expand_inputs, run_batch
from lesionquant.batch._executor import ExecutorError, InProcessExecutor, JobExecutor
from lesionquant.batch._pool import LocalPoolExecutor
from lesionquant.batch._process import RunContext
from lesionquant.cli import main


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    root = tmp_path_factory.mktemp("in")
    write_series(root / "a", patient_id="PAT001", study_date="20200301")
    write_series(root / "b", patient_id="PAT002", study_date="20200302")
    bad = write_series(root / "c", patient_id="PAT003", study_date="20200303")
    f = Path(bad["files"][3])
    f.write_bytes(f.read_bytes()[:-60])  # pixel data cut short
    found, errors = expand_inputs([root], "salt")
    assert not errors and len(found) == 3
    return sorted(found, key=lambda j: j.source)  # a, b good; c broken


def run_all(executor: JobExecutor, jobs, ctx: RunContext) -> dict:
    outcomes = {}
    with executor:
        executor.start(ctx)
        pending = list(jobs)
        while pending or executor.busy():
            while pending and executor.free_slots() > 0:
                executor.submit(pending.pop())
            for o in executor.collect(1.0):
                assert o.job.scan_id not in outcomes, "an outcome came back twice"
                outcomes[o.job.scan_id] = o
    return outcomes


@pytest.mark.parametrize("make", [InProcessExecutor, lambda: LocalPoolExecutor(2)],
                         ids=["in-process", "local-pool"])
def test_every_job_comes_back_once_with_its_outcome(make, jobs, tmp_path):
    ctx = RunContext(out_dir=str(tmp_path), settings={}, salt="salt", run_id="run-1",
                     compute=fake_compute, qa_hooks=(record_qa,))
    with _outputs.batch_lock(tmp_path, owner="run-1"):
        outcomes = run_all(make(), jobs, ctx)
    assert set(outcomes) == {j.scan_id for j in jobs}
    failed = [o for o in outcomes.values() if not o.ok]
    assert len(failed) == 1 and "truncated" in failed[0].summary["reason"]
    for o in outcomes.values():
        assert _outputs.is_complete(tmp_path, o.job.scan_id) == o.ok
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_a_task_of_an_earlier_run_does_not_commit_into_a_newer_one(jobs, tmp_path):
    """A Dask task can outlive its client; the folder's lock names the run that owns it now."""
    ctx = RunContext(out_dir=str(tmp_path), settings={}, salt="salt", run_id="old-run",
                     compute=fake_compute, qa_hooks=())
    with _outputs.batch_lock(tmp_path, owner="new-run"):
        outcomes = run_all(InProcessExecutor(), jobs[:1], ctx)
    (o,) = outcomes.values()
    assert not o.ok and "another batch has taken over" in o.summary["reason"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("S-", ".tmp"))]
    assert _outputs.lock_owner(tmp_path) == "new-run"


def test_asking_for_dask_without_dask_is_a_one_line_error(jobs, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ExecutorError, match=r'pip install "lesionquant\[dask\]"'):
        run_batch([jobs[0].source], tmp_path / "out", client="tcp://127.0.0.1:8786")
    out = tmp_path / "cli"
    assert main(["run", jobs[0].source, "-o", str(out), "--scheduler", "tcp://127.0.0.1:1"]) == 1
    (msg,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "\n" not in msg and "lesionquant[dask]" in msg
    assert not out.exists()  # refused before anything was written


def test_an_unreachable_scheduler_is_a_one_line_error(jobs, tmp_path, monkeypatch):
    pytest.importorskip("distributed", reason="needs the dask extra")
    from lesionquant.batch import _dask

    monkeypatch.setattr(_dask, "CONNECT_TIMEOUT_S", 2.0)
    with pytest.raises(ExecutorError, match="cannot reach the Dask scheduler") as err:
        run_batch([jobs[0].source], tmp_path / "out", client="tcp://127.0.0.1:9")
    assert "\n" not in str(err.value)


def test_workers_and_scheduler_are_exclusive(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "x", "-o", "y", "--workers", "2", "--scheduler", "tcp://h:8786"])
    assert exit_.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_a_dask_worker_process_runs_one_scan_at_a_time(jobs, tmp_path):
    """Memory per Dask worker stays one scan even when it was started with many threads."""
    from lesionquant.batch._dask_worker import run_scan

    spans = []

    def hold(result, folder, *, scan_id):  # runs while the scan's arrays are alive
        t0 = time.monotonic()
        time.sleep(0.5)
        spans.append((t0, time.monotonic()))

    ctx = RunContext(out_dir=str(tmp_path), settings={}, salt="salt", run_id="run-1",
                     compute=fake_compute, qa_hooks=(hold,))
    threads = [threading.Thread(target=run_scan, args=(job, ctx)) for job in jobs[:2]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    (a, b) = sorted(spans)
    assert a[1] <= b[0], "two scans overlapped in one worker process"
    assert len(list(tmp_path.glob("S-*/result.json"))) == 2
