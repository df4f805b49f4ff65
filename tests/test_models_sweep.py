"""``models.sweep``: the runs a sweep plans, their command lines, which runs count as
finished, the seed means it reports, and one real two-run sweep."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
try:
    from models import sweep
finally:
    sys.path.remove(str(REPO))


def test_a_recipe_option_replaces_the_v4_commands():
    """The recipe's options come after the v4 command (argparse keeps the last), the seed
    and fold are the run's; the folder names say recipe, seed and fold."""
    runs = sweep.plan(sweep.parse_recipes(["w32=--base 32", "v4="]), [0, 1], [0, -1])
    assert [r.name for r in runs] == ["w32_s0_fold0", "w32_s0_final", "w32_s1_fold0",
                                      "w32_s1_final", "v4_s0_fold0", "v4_s0_final",
                                      "v4_s1_fold0", "v4_s1_final"]
    argv = runs[2].argv(Path("/r"), "cuda", sweep.V4_ARGS)
    assert argv[argv.index("--run") + 1] == "/r/w32_s1_fold0"
    assert argv[argv.index("--fold") + 1] == "0" and argv[-2:] == ["--seed", "1"]
    bases = [i for i, v in enumerate(argv) if v == "--base"]
    assert [argv[i + 1] for i in bases] == ["16", "32"]  # the recipe's comes last
    assert argv[argv.index("--device") + 1] == "cuda"
    with pytest.raises(SystemExit, match="NAME=OPTIONS"):
        sweep.parse_recipes(["no options"])
    with pytest.raises(SystemExit, match="new name"):
        sweep.parse_recipes(["a=", "a=--base 8"])


def _fake_run(out: Path, name: str, fold: int, lesion: float | None, step: int = 10) -> None:
    d = out / name
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"fold": fold, "steps": 10}))
    torch.save({"step": step}, d / "ckpt.pt")
    if lesion is not None:
        (d / "val.json").write_text(json.dumps({"summary": {
            "lesion_dice": lesion, "ggo_dice": lesion - 0.1, "consolidation_dice": lesion - 0.2}}))


def test_finished_runs_and_seed_means(tmp_path):
    """A fold run is finished when it wrote val.json, a final run when its checkpoint is at
    its last step; a seed's mean is over its folds, the recipe's over complete seeds only."""
    runs = sweep.plan({"r": ""}, [0, 1], [0, 1, -1])
    _fake_run(tmp_path, "r_s0_fold0", 0, 0.70)
    _fake_run(tmp_path, "r_s0_fold1", 1, 0.80)
    _fake_run(tmp_path, "r_s0_final", -1, None)
    _fake_run(tmp_path, "r_s1_fold0", 0, 0.60)
    _fake_run(tmp_path, "r_s1_fold1", 1, None, step=5)  # interrupted
    _fake_run(tmp_path, "r_s1_final", -1, None, step=5)
    assert sweep.finished(tmp_path / "r_s0_final")
    assert not sweep.finished(tmp_path / "r_s1_final")
    assert not sweep.finished(tmp_path / "r_s1_fold1")
    assert not sweep.finished(tmp_path / "missing")
    s = sweep.summarise(tmp_path, runs)["r"]
    assert s["seeds"][0]["complete"] and not s["seeds"][1]["complete"]
    assert s["seeds"][0]["mean"]["lesion_dice"] == pytest.approx(0.75)
    assert s["seeds"][1]["mean"]["lesion_dice"] == pytest.approx(0.60)
    assert s["n_seeds"] == 1 and s["seed_mean"]["consolidation_dice"] == pytest.approx(0.55)
    table = sweep.markdown(sweep.summarise(tmp_path, runs))
    assert "| r | 1 | 1 (incomplete) |" in table and "| r | mean of 1 |" in table


@pytest.mark.realdata
def test_a_real_sweep_trains_scores_and_skips_what_is_done(tmp_path, data_root, monkeypatch):
    """Two recipes, one fold each, two steps on the MedSeg slices: each run trains in its
    own process with its own options and writes its held-out Dice; run again, nothing is
    trained twice."""
    args = ["--out", str(tmp_path), "--recipe", "a=", "--recipe", "b=--paste 0.5",
            "--folds", "0", "--workers", "2", "--device", "cpu",
            "--base-args", "--steps 2 --val-every 2 --crop 64 --medseg 2 --synth 0 "
            "--base 4 --threads 1"]
    monkeypatch.setenv("LESIONQUANT_DATA", str(data_root))
    assert sweep.main(args) == 0
    for name, paste in (("a_s0_fold0", 0.0), ("b_s0_fold0", 0.5)):
        meta = json.loads((tmp_path / name / "meta.json").read_text())
        assert meta["paste"] == paste and meta["base"] == 4 and meta["steps"] == 2
        assert 0.0 <= json.loads((tmp_path / name / "val.json").read_text())[
            "summary"]["lesion_dice"] <= 1.0
    mtime = (tmp_path / "a_s0_fold0" / "val.json").stat().st_mtime_ns
    assert sweep.main(args) == 0
    assert (tmp_path / "a_s0_fold0" / "val.json").stat().st_mtime_ns == mtime
    assert json.loads((tmp_path / "summary.json").read_text())["b"]["n_seeds"] == 1


def test_a_gpu_calls_files_become_runs_and_results(tmp_path):
    """``models.gpu_import``: the runs' texts come out of the archive, each float16 final
    network becomes a float32 ``ckpt.pt`` a run trained here would have (it loads into
    its network), and the call's texts and the sweep's summary go to the results."""
    import tarfile

    from lesionquant.segment.model import LesionNet
    from models import gpu_import

    files, src = tmp_path / "files", tmp_path / "src"
    (src / "w_s0_final").mkdir(parents=True)
    (src / "w_s0_final" / "meta.json").write_text(json.dumps({"fold": -1, "config": {
        "in_channels": 1, "base": 4, "levels": 4, "spacing_mm": 1.5}}))
    (src / "summary.json").write_text("{}")
    files.mkdir()
    with tarfile.open(files / "runs.tar.gz", "w:gz") as tar:
        tar.add(src, arcname=".")
    net = LesionNet(base=4)
    torch.save({"step": 1500, "model": {k: v.half() if v.is_floating_point() else v
                                        for k, v in net.state_dict().items()}},
               files / "final_w_s0_final.pt")
    (files / "bench_gpu.txt").write_text("| quantify (whole, from file) | 2.1 |")
    finals = gpu_import.import_call(files, tmp_path / "runs", tmp_path / "results")
    assert finals == ["w_s0_final"]
    st = torch.load(tmp_path / "runs" / "w_s0_final" / "ckpt.pt", weights_only=True)
    assert st["step"] == 1500 and st["model"]["lesion_head.weight"].dtype == torch.float32
    again = LesionNet(**json.loads((tmp_path / "runs" / "w_s0_final" / "meta.json")
                                   .read_text())["config"])
    again.load_state_dict(st["model"])
    assert torch.allclose(again.lesion_head.weight, net.lesion_head.weight, atol=1e-3)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["bench_gpu.txt",
                                                                       "summary.json"]
