"""run_batch as the README shows it, from a plain script run as a real subprocess.

Worker processes are spawned and re-import the calling script; a script without an
``if __name__ == "__main__":`` guard must still get its scans done (in the calling process),
and a worker that cannot start must never be reported as a scan that crashed.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _dicom import write_series

from lesionquant.batch._mainguard import _is_main_guard, unguarded_main_call

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _run_script(tmp_path: Path, body: str) -> tuple[dict, str]:
    """Run ``body`` as a plain script; it prints the summary as JSON on its last line."""
    script = tmp_path / "plain.py"
    script.write_text(textwrap.dedent(body))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


_SUMMARY = ("print(json.dumps({'done': s.done, 'failed': s.failed, "
            "'failures': [list(f) for f in s.failures]}))")


def test_readme_call_in_an_unguarded_script_quantifies_the_scan(tmp_path):
    """The README's one-liner, real pipeline, no guard, one worker (the default): done=1."""
    summary, _ = _run_script(tmp_path, f"""
        import json
        import lesionquant

        s = lesionquant.run_batch([{str(REPO / "sample_scans" / "healthy")!r}], "out")
        {_SUMMARY}
    """)
    assert summary == {"done": 1, "failed": 0, "failures": []}
    results = list((tmp_path / "out").glob("S-*/result.json"))
    assert len(results) == 1
    assert json.loads(results[0].read_text())["measures"]["lung_ml"] > 1000


def _three_series(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    for i in range(3):
        write_series(root / f"p{i}", patient_id=f"PAT{i}", study_date="20200301")
    return root


def test_unguarded_script_with_workers_warns_and_runs_every_scan(tmp_path):
    root = _three_series(tmp_path)
    summary, stderr = _run_script(tmp_path, f"""
        import json, sys
        sys.path.insert(0, {str(HERE)!r})
        from _fakes import fake_compute
        from lesionquant.batch import run_batch

        s = run_batch([{str(root)!r}], "out", workers=2, _compute=fake_compute, qa_hooks=[])
        {_SUMMARY}
    """)
    assert summary == {"done": 3, "failed": 0, "failures": []}
    assert "RuntimeWarning" in stderr and "if __name__ ==" in stderr
    assert "plain.py" in stderr  # names the script to fix


def test_worker_that_cannot_start_is_not_reported_as_a_crashed_scan(tmp_path):
    """A guarded script whose import fails in the worker: no worker ever starts. The scans
    still run (in the calling process), with a warning naming the real cause."""
    root = _three_series(tmp_path)
    summary, stderr = _run_script(tmp_path, f"""
        import json, sys
        if __name__ != "__main__":
            raise SystemExit("this script cannot be imported by a worker")
        sys.path.insert(0, {str(HERE)!r})
        from _fakes import fake_compute
        from lesionquant.batch import run_batch

        if __name__ == "__main__":
            s = run_batch([{str(root)!r}], "out", workers=2, _compute=fake_compute,
                          qa_hooks=[])
            {_SUMMARY}
    """)
    assert summary == {"done": 3, "failed": 0, "failures": []}
    assert "worker processes could not start" in stderr
    assert "worker process died" not in stderr


def test_guard_detection(tmp_path):
    guard = [ast.parse(t, mode="eval").body for t in
             ("__name__ == '__main__'", "'__main__' == __name__")]
    other = [ast.parse(t, mode="eval").body for t in
             ("__name__ != '__main__'", "name == '__main__'", "__name__ == 'main'")]
    assert all(_is_main_guard(t) for t in guard)
    assert not any(_is_main_guard(t) for t in other)
    # Under pytest the caller is not a script's top-level code: worker processes are safe.
    assert unguarded_main_call() is None


@pytest.mark.parametrize("guarded", [True, False])
def test_detection_from_a_script(tmp_path, guarded):
    call = "print(unguarded_main_call())"
    body = ("from lesionquant.batch._mainguard import unguarded_main_call\n"
            + (f"if __name__ == '__main__':\n    {call}\n" if guarded
               else f"def main():\n    {call}\nmain()\n"))
    script = tmp_path / "s.py"
    script.write_text(body)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    assert out == ("None" if guarded else str(script))
