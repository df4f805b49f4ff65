"""The batch on a real Dask cluster (``dask scheduler`` + 2 ``dask worker`` on 127.0.0.1),
with the fast stand-in pipeline: a worker SIGKILLed in the middle of a scan, a client killed
mid-batch and resumed, a memory-limit kill reported, the scheduler lost, workers refused.

The sample scans through the real pipeline on Dask, compared with the local run, are in
tests/batch/test_end_to_end.py (they share its local run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("distributed", reason="the Dask tests need the dask extra "
                                          '(pip install -e ".[test]")')

import _dask_cluster
import pydicom
from _dask_cluster import (
    HERE,
    committed,
    equal_results,
    leftovers,
    read_csv,
    running_cluster,
)
from _dicom import write_series
from _fakes import fake_compute, record_qa, slow_qa

from lesionquant.batch import run_batch

#: The Dask cluster and client fixtures (tests/batch/_dask_cluster.py).
cluster = _dask_cluster.cluster
client = _dask_cluster.client


@pytest.fixture(scope="module")
def small_inputs(tmp_path_factory):
    """Six tiny series (three patients, two visits each) for the fake pipeline."""
    root = tmp_path_factory.mktemp("small")
    for p in range(3):
        for v, date in enumerate(("20200301", "20200329")):
            write_series(root / f"p{p}" / f"v{v}", patient_id=f"PAT{p:03d}", study_date=date)
    return root


@pytest.mark.slow
def test_a_worker_killed_mid_scan_loses_nothing(client, small_inputs, tmp_path):
    ref = tmp_path / "ref"
    run_batch([small_inputs], ref, _compute=fake_compute, qa_hooks=[record_qa],
              progress=False, salt="t")
    worker_pids = set(client.run(os.getpid).values())
    out = tmp_path / "out"
    box: dict = {}
    batch = threading.Thread(target=lambda: box.update(s=run_batch(
        [small_inputs], out, client=client, _compute=fake_compute, qa_hooks=[slow_qa],
        progress=False, salt="t")))
    batch.start()
    try:
        # a scan half written: labels in its .tmp- folder, result.json not yet
        deadline, victim = time.monotonic() + 120, None
        while victim is None and time.monotonic() < deadline and batch.is_alive():
            victim = next((p for p in out.glob(".tmp-*") if (p / "qa-marker.txt").exists()
                           and not (p / "result.json").exists()), None)
            time.sleep(0.02)
        assert victim is not None, "no scan was seen in flight"
        pid = int(victim.name.split("-")[-2])  # .tmp-<scan_id>-<pid>-<token>
        assert pid in worker_pids
        n_before = len(committed(out))
        os.kill(pid, signal.SIGKILL)
    finally:
        batch.join(timeout=240)
    assert not batch.is_alive(), "the batch did not finish after a worker was killed"
    assert n_before < 6, "the kill came too late to test anything"
    s = box["s"]
    assert (s.done, s.failed) == (6, 0), s.failures  # the scan re-ran on another worker
    rows = read_csv(out / "results.csv")
    assert len(rows) == len({r["scan_id"] for r in rows}) == 6
    assert {r["status"] for r in rows} == {"done"}
    assert not victim.exists() and leftovers(out) == []
    for folder in (out / r["scan_id"] for r in rows):
        assert {p.name for p in folder.iterdir()} == {"result.json", "labels.nii.gz",
                                                      "seg.dcm", "qa-marker.txt"}
    assert read_csv(out / "errors.csv") == []
    equal_results(out, ref)
    # resume across executors: the local pool finds every scan complete
    again = run_batch([small_inputs], out, _compute=fake_compute, qa_hooks=[record_qa],
                      progress=False, salt="t")
    assert (again.done, again.skipped, again.failed) == (0, 6, 0)


CLIENT_SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from _fakes import fake_compute, slow_qa
from lesionquant.batch import run_batch
run_batch([{inputs!r}], {out!r}, client={address!r}, _compute=fake_compute,
          qa_hooks=[slow_qa], progress=False, salt="t")
"""


@pytest.mark.slow
def test_client_killed_mid_batch_then_resumed(cluster, small_inputs, tmp_path):
    ref = tmp_path / "ref"
    run_batch([small_inputs], ref, _compute=fake_compute, qa_hooks=[slow_qa],
              progress=False, salt="t")
    out = tmp_path / "out"
    script = CLIENT_SCRIPT.format(here=str(HERE), inputs=str(small_inputs), out=str(out),
                                  address=cluster.address)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(committed(out)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    at_kill = len(committed(out))
    assert 2 <= at_kill < 6, "the kill came too late to test anything"
    # a new client resumes; tasks of the dead one still running on the workers may commit
    # until the new run takes the folder's lock, never after
    s = run_batch([small_inputs], out, client=cluster.address, _compute=fake_compute,
                  qa_hooks=[slow_qa], progress=False, salt="t")
    assert s.failed == 0 and s.done + s.skipped == 6 and s.skipped >= at_kill, s
    rows = read_csv(out / "results.csv")
    assert len(rows) == len({r["scan_id"] for r in rows}) == 6
    assert read_csv(out / "errors.csv") == [] and leftovers(out) == []
    equal_results(out, ref)


@pytest.mark.slow
def test_a_scan_killed_by_the_worker_memory_limit_is_a_failure_with_the_reason(
        client, small_inputs, tmp_path):
    """Also: a Dask run resumes what the local pool committed."""
    hog = tmp_path / "hog"
    write_series(hog, patient_id="PAT009")
    for f in hog.iterdir():  # the fake pipeline allocates until the nanny kills its worker
        ds = pydicom.dcmread(f)
        ds.SeriesDescription = "HOG"
        ds.save_as(f)
    out = tmp_path / "out"
    # p0's two visits done by the local pool first: the Dask run resumes, skipping them
    run_batch([small_inputs / "p0"], out, _compute=fake_compute, qa_hooks=[record_qa],
              progress=False, salt="t")
    s = run_batch([small_inputs / "p0", hog], out, client=client, _compute=fake_compute,
                  qa_hooks=[record_qa], progress=False, salt="t")
    assert (s.done, s.skipped, s.failed) == (0, 2, 1), s.failures
    (err,) = read_csv(out / "errors.csv")
    assert "exceeded its memory limit" in err["reason"], err["reason"]
    assert "gave up after 2 worker(s) died" in err["reason"]
    failed = [r for r in read_csv(out / "results.csv") if r["status"] == "failed"]
    assert [r["scan_id"] for r in failed] == [err["scan_id"]]
    assert leftovers(out) == []


@pytest.mark.slow
def test_losing_the_scheduler_stops_the_batch_with_a_typed_error(small_inputs, tmp_path):
    from lesionquant.batch._executor import ExecutorError

    out = tmp_path / "out"
    with running_cluster(tmp_path / "dask", n_workers=1) as cluster:
        box: dict = {}

        def batch():
            try:
                run_batch([small_inputs], out, client=cluster.address, _compute=fake_compute,
                          qa_hooks=[slow_qa], progress=False, salt="t")
            except Exception as exc:
                box["error"] = exc

        thread = threading.Thread(target=batch)
        thread.start()
        try:
            deadline = time.monotonic() + 120
            while not committed(out) and time.monotonic() < deadline and thread.is_alive():
                time.sleep(0.02)
            assert committed(out), "no scan was committed before the scheduler was killed"
            os.killpg(cluster.procs[0].pid, signal.SIGKILL)  # the scheduler
        finally:
            thread.join(timeout=90)
        assert not thread.is_alive(), "the batch hung after losing its scheduler"
    assert isinstance(box.get("error"), ExecutorError), box
    assert "lost the Dask scheduler" in str(box["error"]) and "\n" not in str(box["error"])
    # the tables hold what was committed before the loss; a rerun resumes from there
    done = {r["scan_id"] for r in read_csv(out / "results.csv") if r["status"] == "done"}
    assert done and done <= {p.parent.name for p in committed(out)}
    assert leftovers(out) == [] or all(p.startswith(".tmp") for p in leftovers(out))




def test_workers_with_another_version_or_without_the_output_folder_are_refused(
        client, small_inputs, tmp_path, monkeypatch):
    from lesionquant.batch import ExecutorError, _dask, _dask_worker

    monkeypatch.setattr(_dask, "__version__", "0.0.0-other")  # the workers run the real one
    with pytest.raises(ExecutorError, match="another lesionquant than this one"):
        run_batch([small_inputs], tmp_path / "a", client=client, _compute=fake_compute,
                  progress=False, salt="t")
    monkeypatch.undo()

    def blind_worker_info(out_dir):  # a worker on another filesystem (sent by value)
        return {"version": _dask.__version__, "pid": 0, "sees_out": False}

    monkeypatch.setattr(_dask_worker, "worker_info", blind_worker_info)
    with pytest.raises(ExecutorError, match="do not see the output folder") as err:
        run_batch([small_inputs], tmp_path / "b", client=client, _compute=fake_compute,
                  progress=False, salt="t")
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "b").glob("S-*"))  # nothing was sent
