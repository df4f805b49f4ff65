"""The real pipeline through run_batch: real data with a broken scan in the batch, and the
sample scans with their manifest (the two-visit patient's change from baseline)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from lesionquant.batch import run_batch

REPO = Path(__file__).resolve().parents[2]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.realdata
@pytest.mark.slow
def test_real_batch_with_a_broken_scan_finishes_the_others(chest_dir, edge_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(edge_dir / "cip-chest-ct-64-dicom-series-implicit-vr", broken)
    victim = sorted(broken.iterdir())[40]
    victim.write_bytes(victim.read_bytes()[:-3000])  # truncated pixel data mid-series
    out = tmp_path / "out"
    s = run_batch([broken, chest_dir / "tcia-covid19-ny-sbu-axial-slices"], out, workers=2,
                  progress=False, qa_hooks=())
    assert (s.done, s.failed) == (10, 1)
    (err,) = read_csv(out / "errors.csv")
    assert victim.name in err["reason"] and "truncated" in err["reason"]
    rows = read_csv(out / "results.csv")
    assert sum(r["status"] == "done" for r in rows) == 10
    ep = read_csv(out / "endpoint.csv")
    assert len({r["patient"] for r in ep}) == 5 and len(ep) == 10  # 5 patients x 2 dates
    for r in ep:  # change from baseline recomputed from the per-scan results
        base = json.loads((out / r["baseline_scan_id"] / "result.json").read_text())
        rec = json.loads((out / r["scan_id"] / "result.json").read_text())
        want = rec["measures"]["lesion_pct"] - base["measures"]["lesion_pct"]
        assert float(r["lesion_change_pp"]) == pytest.approx(want, abs=1e-12)
        assert int(r["days_since_baseline"]) >= 0
