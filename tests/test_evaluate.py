"""The evaluation helpers and the `lesionquant evaluate` command (reduced grid)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lesionquant.cli import main
from lesionquant.evaluate import (
    MEDSEG_WINDOW,
    Table,
    dice,
    medseg_image,
    medseg_table,
    save_medseg_montage,
    targets,
    write_report,
)


def test_dice():
    a = np.zeros((4, 4), bool)
    b = a.copy()
    assert dice(a, b) == 1.0
    a[0, :2] = True
    b[0, 1:3] = True
    assert dice(a, b) == pytest.approx(0.5)


def test_table_markdown_and_summary(tmp_path):
    t = Table("T", rows=[{"x": 1, "lesion_err_pp": -0.5, "lesion_dice": 0.9},
                         {"x": 2, "lesion_err_pp": 0.25, "lesion_dice": 0.8}])
    md = t.markdown()
    assert "| x | lesion_err_pp | lesion_dice |" in md and "-0.500" in md
    s = t.summary(["lesion_err_pp", "lesion_dice"])
    assert s["lesion_err_pp_worst"] == 0.5 and s["lesion_dice_worst"] == 0.8
    path = write_report([t], tmp_path / "a.md", command="lesionquant evaluate")
    assert "Regenerate with: `lesionquant evaluate`" in path.read_text()


@pytest.mark.parametrize("case", ["out_is_dir", "out_parent_missing", "no_data"])
def test_evaluate_command_rejects_bad_paths_before_running(tmp_path, capsys, case):
    data, out = tmp_path, tmp_path / "acc.md"
    if case == "out_is_dir":
        out = tmp_path
    elif case == "out_parent_missing":
        out = tmp_path / "missing" / "acc.md"
    else:
        data = tmp_path / "nodata"
    rc = main(["evaluate", "--data", str(data), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc != 0
    assert ("--out" in err) if case != "no_data" else ("--data" in err and "nodata" in err)
    assert not (tmp_path / "acc.md").exists()


def test_evaluate_help_says_run_time_output_and_the_one_set_of_defaults(capsys):
    import inspect

    from lesionquant.evaluate import evaluate

    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Run time: about" in text and "minutes" in text
    # writes outside the tracked files by default; the documentation only when asked
    assert "default lq_evaluate/accuracy.md" in text
    assert "--out docs/accuracy.md --figures docs/figures" in text
    # the defaults shown are evaluate()'s own
    params = inspect.signature(evaluate).parameters
    assert f"(default {','.join(str(v) for v in params['phantom_seeds'].default)})" in text
    burdens = ",".join(f"{v:g}" for v in params["phantom_burdens"].default)
    assert f"% of lung (default {burdens})" in text


def test_evaluate_report_command_is_relative_and_complete(tmp_path, monkeypatch):
    from lesionquant.cli import build_parser
    from lesionquant.cli._evaluate import _command, _csv, _defaults

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["evaluate", "--data", str(tmp_path.parent / "data"),
                                      "--phantom-seeds", "0", "--thick-slices-mm", "0"])
    grid = {**_defaults(), "phantom_seeds": (0,), "thick_slice_mm": None}
    command = _command(args, grid, Path(args.out), Path("lq_evaluate/figures"))
    assert command.startswith("lesionquant evaluate --data ../data --out "
                              "lq_evaluate/accuracy.md --figures lq_evaluate/figures ")
    # every grid value spelled out: the given ones and evaluate()'s defaults
    assert f"--phantom-seeds 0 --phantom-burdens {_csv(grid['phantom_burdens'])} " in command
    assert f"--thick-slices-mm 0 --insert-seeds {_csv(grid['insert_seeds'])} " in command
    assert command.endswith(f"--insert-burdens {_csv(grid['insert_burdens'])}")


def test_evaluate_default_output_is_not_the_tracked_docs(tmp_path, monkeypatch, capsys):
    """With no --out, the report would go to ./lq_evaluate/ (git-ignored), never docs/."""
    from lesionquant.cli import build_parser

    args = build_parser().parse_args(["evaluate"])
    assert args.out == "lq_evaluate/accuracy.md" and args.figures is None
    gitignore = (Path(__file__).resolve().parents[1] / ".gitignore").read_text()
    assert "/lq_evaluate/" in gitignore.split()
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "--data", str(tmp_path / "nodata")]) != 0
    assert "--data" in capsys.readouterr().err
    assert not (tmp_path / "lq_evaluate").exists(), "nothing created before the data is found"


@pytest.mark.realdata
def test_medseg_window_mapping(chest_dir):
    jpeg = chest_dir / "medseg-covid-2d-ggo-consolidation" / "images" / "000.jpg"
    img = medseg_image(jpeg)
    arr = sitk.GetArrayViewFromImage(img)
    width, level = MEDSEG_WINDOW
    assert arr.shape[0] == 1
    assert arr.min() >= level - width / 2 - 1e-3 and arr.max() <= level + width / 2 + 1e-3


@pytest.mark.realdata
@pytest.mark.slow
def test_evaluate_command_writes_report(data_root, tmp_path):
    out = tmp_path / "accuracy.md"
    rc = main(["evaluate", "--data", str(data_root), "--out", str(out),
               "--figures", str(tmp_path / "fig"), "--phantom-seeds", "0",
               "--phantom-burdens", "10", "--phantom-size", "96,96,48",
               "--phantom-spacing", "3.6,3.6,6.0", "--thick-slices-mm", "12",
               "--insert-seeds", "0", "--insert-burdens", "10"])
    assert rc == 0
    text = out.read_text()
    for title in ("Phantoms", "inserted into real chest CT", "without COVID-19", "MedSeg",
                  "TCIA"):
        assert title in text
    assert len(list((tmp_path / "fig").glob("pipeline_tcia_*.png"))) == 10
    assert (tmp_path / "fig" / "medseg_montage.png").stat().st_size > 10_000
    assert "docs/figures/medseg_montage.png" in text
    # the thick-slice phantoms: half the slices, twice as thick, with their own targets
    assert "Phantoms (96x96x24 at 3.6x3.6x12.0 mm)" in text
    assert "lesion Dice, worst (phantoms 3.6x3.6x12.0 mm)" in text
    # the command that reproduces it: every grid value, no absolute (machine) path
    (line,) = [ln for ln in text.splitlines() if ln.startswith("Regenerate with: ")]
    command = line.split("`")[1]
    assert not [p for p in command.split() if p.startswith("/")], command  # all relative
    for part in ("--phantom-seeds 0", "--phantom-burdens 10", "--phantom-size 96,96,48",
                 "--phantom-spacing 3.6,3.6,6", "--thick-slices-mm 12", "--insert-seeds 0",
                 "--insert-burdens 10", "--figures "):
        assert part in command, part


def test_medseg_montage_shows_expert_and_pipeline_labels(tmp_path):
    hu = np.full((64, 80), -850.0, np.float32)
    truth = np.zeros((64, 80), np.uint8)
    truth[20:30, 10:30] = 1
    truth[40:50, 50:70] = 2
    pred = np.where(np.ones_like(truth, bool), 1, 0).astype(np.uint8)
    pred[20:30, 12:30] = 3
    rows = [{"slice": f"{i:03d}", "lesion_dice": 0.5, "lesion_area_err_pct": -10.0}
            for i in range(3)]
    path = save_medseg_montage([(r, hu, truth, pred) for r in rows],
                               tmp_path / "medseg_montage.png")
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    assert im.size[0] > im.size[1]  # one column per slice
    # yellow GGO and magenta consolidation fills are drawn
    yellow = (rgb[..., 0] > 150) & (rgb[..., 1] > 130) & (rgb[..., 2] < 110)
    magenta = (rgb[..., 0] > 150) & (rgb[..., 1] < 110) & (rgb[..., 2] > 150)
    assert yellow.sum() > 100 and magenta.sum() > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["medseg_montage.png"]


def test_targets_are_checked_for_each_background_separately():
    def row(host, err, dsc):
        return {"host": host, "lesion_err_pp": err, "lesion_dice": dsc}

    phantoms = Table("Phantoms (512x512x300)", rows=[
        {"lesion_err_pp": -0.4, "lesion_dice": 0.9, "lung_ml_err_pct": 1.5,
         "cons_in_lung": 0.8}])
    inserted = Table("Lesions inserted into real chest CT", rows=[
        row("a", 0.5, 0.9), row("a", -0.9, 0.86), row("b", -3.0, 0.7), row("b", 0.2, 0.95)])
    thick = Table("Phantoms (512x512x60 at 0.7x0.7x5.0 mm)", rows=[
        {"lesion_err_pp": 6.1, "lesion_dice": 0.5, "lung_ml_err_pct": 1.8,
         "cons_in_lung": 0.9}])
    got = {r["target"]: (r["measured"], r["holds"])
           for r in targets([phantoms, thick, inserted]).rows}
    assert got["lesion % error, worst (phantoms 0.7x0.7x5.0 mm)"] == (6.1, "NO")
    assert got["lung volume error, worst (phantoms 0.7x0.7x5.0 mm)"] == (1.8, "yes")
    assert got["lesion % error, worst (inserted into a)"] == (0.9, "yes")
    assert got["lesion Dice, worst (inserted into a)"] == (0.86, "yes")
    assert got["lesion % error, worst (inserted into b)"] == (3.0, "NO")
    assert got["lesion Dice, worst (inserted into b)"] == (0.7, "NO")
    assert got["lung volume error, worst (phantoms)"] == (1.5, "yes")
    assert not any("insertion into real CT" in k for k in got)


def test_medseg_table_survives_an_unreadable_jpeg(tmp_path):
    from PIL import Image

    from lesionquant.settings import Settings

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.full((64, 64), 120, np.uint8)).save(tmp_path / "images" / "000.jpg")
    (tmp_path / "images" / "001.jpg").write_bytes(b"not a jpeg")
    for stem in ("000", "001"):
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "masks" / f"{stem}.png")
    table = medseg_table(tmp_path, Settings(), tmp_path / "fig")
    status = {r["slice"]: r["status"] for r in table.rows}
    assert status["001"] == "error"
    assert status["000"] in ("ok", "no lung")
    assert (tmp_path / "fig" / "medseg_montage.png").is_file()
