"""Fixtures shared by the batch tests: the sample scans run once by the local pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lesionquant.batch import run_batch

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_scans"


@pytest.fixture(scope="session")
def sample_batch(tmp_path_factory):
    """``sample_scans/`` through ``run_batch`` on 2 local workers: (manifest, OUT, summary).

    Shared by the end-to-end tests and the Dask tests (their reference run).
    """
    manifest = SAMPLES / "manifest.json"
    if not manifest.is_file():
        pytest.fail(f"{manifest} is missing (sample scans are part of the repository)")
    out = tmp_path_factory.mktemp("samples") / "out"
    summary = run_batch([SAMPLES], out, workers=2, progress=False, salt="samples")
    return json.loads(manifest.read_text()), out, summary
