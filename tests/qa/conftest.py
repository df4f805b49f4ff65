"""Fixtures of the QA tests: a small labelled chest volume and a batch output folder.

The volume is built here (not by ``lesionquant.synth``) so the geometry of every label is
known exactly: right lung at low x, GGO only in the upper right lung, consolidation only in
the lower left lung, anisotropic voxels (5 x 5 x 6 mm).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from _truth import labels_path, truth_compute

SPACING_MM = (5.0, 5.0, 6.0)  # (x, y, z)
SHAPE_ZYX = (36, 56, 64)
GGO_CENTRE_ZYX = (24, 32, 18)  # upper right lung
CON_CENTRE_ZYX = (12, 34, 46)  # lower left lung


@dataclass(frozen=True)
class Volume:
    ct: sitk.Image
    labels: sitk.Image


def _ellipsoid(shape: tuple[int, int, int], centre: tuple[float, float, float],
               radii: tuple[float, float, float]) -> np.ndarray:
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (((zz - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2
            + ((xx - centre[2]) / radii[2]) ** 2) <= 1.0


def make_volume(*, lesion_scale: float = 1.0, seed: int = 0) -> Volume:
    """CT (int16 HU) and its label map (uint8, 0-4) of a simple chest."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = SHAPE_ZYX
    hu = np.full(SHAPE_ZYX, -1000.0, dtype=np.float32)
    _, yy, xx = np.ogrid[:nz, :ny, :nx]
    body = ((yy - 28) / 25.0) ** 2 + ((xx - 32) / 29.0) ** 2 <= 1.0
    hu[np.broadcast_to(body, SHAPE_ZYX)] = 40.0
    labels = np.zeros(SHAPE_ZYX, dtype=np.uint8)
    right = _ellipsoid(SHAPE_ZYX, (18, 27, 20), (14, 15, 9.5))
    left = _ellipsoid(SHAPE_ZYX, (18, 27, 44), (14, 15, 9.5))
    hu[right | left] = -860.0
    labels[right], labels[left] = 1, 2
    r = 4.0 * lesion_scale
    if r > 0:
        ggo = _ellipsoid(SHAPE_ZYX, GGO_CENTRE_ZYX, (r, r, r)) & right
        con = _ellipsoid(SHAPE_ZYX, CON_CENTRE_ZYX, (r, r, r)) & left
        hu[ggo], hu[con] = -520.0, 25.0
        labels[ggo], labels[con] = 3, 4
    hu += rng.normal(0.0, 15.0, SHAPE_ZYX).astype(np.float32)
    ct = sitk.GetImageFromArray(np.rint(hu).astype(np.int16))
    ct.SetSpacing(SPACING_MM)
    ct.SetOrigin((-160.0, -140.0, -250.0))
    lab = sitk.GetImageFromArray(labels)
    lab.CopyInformation(ct)
    return Volume(ct, lab)


@pytest.fixture(scope="session")
def volume() -> Volume:
    return make_volume()


@pytest.fixture(scope="session")
def batch_inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two small chest volumes as NIfTI files (the inputs of a batch)."""
    folder = tmp_path_factory.mktemp("inputs")
    paths = []
    for i, scale in enumerate((1.0, 1.5)):
        path = folder / f"chest{i}.nii.gz"
        vol = make_volume(lesion_scale=scale, seed=i)
        sitk.WriteImage(vol.ct, str(path))
        sitk.WriteImage(vol.labels, str(labels_path(path)))
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def _batch_out(tmp_path_factory: pytest.TempPathFactory, batch_inputs: list[Path]) -> Path:
    from lesionquant.batch import run_batch

    out = tmp_path_factory.mktemp("batch") / "OUT"
    # Known label maps (truth_compute), so these tests do not depend on the pipeline's accuracy;
    # everything else (outputs, QA hooks, tables, index) is the real batch layer.
    summary = run_batch([str(p) for p in batch_inputs], out, progress=False, endpoint=False,
                        _compute=truth_compute)
    assert summary.ok, summary
    # One failed input, so the index and the viewer have a failure to list.
    missing = out.parent / "missing.nii.gz"
    run_batch([str(missing)], out, progress=False, endpoint=False, _compute=truth_compute)
    return out


@pytest.fixture()
def batch_out(_batch_out: Path, tmp_path: Path) -> Path:
    """A private copy of a real batch output folder (2 scans done, 1 input failed)."""
    out = tmp_path / "OUT"
    shutil.copytree(_batch_out, out)
    return out


def review_command(out: Path, inputs: list[Path] | list[str]) -> list[str]:
    """``lesionquant review OUT --port 0 --no-browser --input ...`` as a subprocess argv."""
    cmd = [sys.executable, "-m", "lesionquant", "review", str(out), "--port", "0",
           "--no-browser"]
    for path in inputs:
        cmd += ["--input", str(path)]
    return cmd


def start_review(out: Path, inputs: list[Path] | list[str]) -> tuple[subprocess.Popen, str]:
    """Start the review CLI as a real process; return it and the URL it printed."""
    proc = subprocess.Popen(review_command(out, inputs), stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
    if m is None:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"lesionquant review printed no URL: {line!r}")
    return proc, m.group(1)


def require_browser() -> str:
    """Path of chromium; skip when it or playwright is missing, unless CI requires them."""
    chromium = (shutil.which("chromium") or shutil.which("chromium-browser")  # Ubuntu's name
                or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None))
    try:
        import playwright.sync_api  # noqa: F401
        has_playwright = True
    except ImportError:
        has_playwright = False
    if chromium and has_playwright:
        return chromium
    missing = "chromium" if not chromium else "playwright"
    msg = (f"{missing} not installed: run scripts/install-system-deps.sh (Debian's "
           "chromium) and `pip install -e .[test]` to run the browser tests")
    if os.environ.get("LESIONQUANT_REQUIRE_REALDATA", "") not in ("", "0", "false", "no"):
        pytest.fail(f"LESIONQUANT_REQUIRE_REALDATA is set but {msg}")
    pytest.skip(msg)
