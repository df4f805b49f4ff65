"""Regenerate the QA figures of docs/qa.md: three montages and a viewer screenshot.

    python docs/figures/qa_make_figures.py [WORK_DIR]

Needs the shared data (../shared/data), Debian's chromium and playwright. Writes
docs/figures/qa_montage_{phantom,copd,covid_slice}.png and docs/screenshots/review.png;
WORK_DIR (default: a temp folder) keeps the inputs and the batch output folder.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "chest"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def main(work: Path) -> None:
    import SimpleITK as sitk

    from lesionquant.batch import run_batch
    from lesionquant.qa import save_verdict
    from lesionquant.review import ReviewServer, refresh_tables
    from lesionquant.review._volumes import match_inputs
    from lesionquant.synth import make_phantom

    work.mkdir(parents=True, exist_ok=True)
    phantom = work / "phantom_covid.nii.gz"
    if not phantom.is_file():
        p = make_phantom(size_xyz=(320, 320, 140), spacing_mm=(1.1, 1.1, 2.5), seed=3,
                         lesion_burden_pct=12.0)
        sitk.WriteImage(p.image, str(phantom))
    covid = DATA / "tcia-covid19-ny-sbu-axial-slices"
    inputs = [phantom, DATA / "cip-copd-chest-ct-64" / "ct.nii.gz",
              covid / "A046441_19010101-23.dcm", covid / "A002304_19010112-135.dcm",
              covid / "A048383_19001231-30.dcm"]
    out = work / "OUT"
    run_batch([str(p) for p in inputs], out, salt="lesionquant-docs", progress=False,
              overwrite=True)
    ids = {Path(src).name: sid for sid, (src, _) in
           match_inputs(out, [str(p) for p in inputs], salt="lesionquant-docs").items()}
    names = {"qa_montage_phantom.png": ids["phantom_covid.nii.gz"],
             "qa_montage_copd.png": ids["ct.nii.gz"],
             "qa_montage_covid_slice.png": ids["A046441_19010101-23.dcm"]}
    for name, sid in names.items():
        # Lossless copies: a 256-colour palette shifts the small legend patches' colours.
        shutil.copyfile(out / sid / "overlay.png", REPO / "docs" / "figures" / name)
    # Example verdicts, as a reader would record them (see docs/qa.md).
    save_verdict(out, ids["ct.nii.gz"], "accept", reader="RAD1",
                 comment="COPD, no COVID lesion; small hilar false positives, 0.5 % acceptable")
    save_verdict(out, ids["A046441_19010101-23.dcm"], "reject", reader="RAD1",
                 comment="dense dependent consolidation left outside the lung mask")
    refresh_tables(out)
    print(json.dumps(names, indent=1))

    from playwright.sync_api import sync_playwright

    with ReviewServer(out, port=0, inputs=inputs, salt="lesionquant-docs").start() as srv, \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 960})
        page.goto(srv.url)
        page.wait_for_selector("#stack[data-slice]", timeout=60_000)
        sid = ids["phantom_covid.nii.gz"]
        page.click(f'#scans li[data-id="{sid}"]')
        page.wait_for_selector(f'body[data-scan="{sid}"]', timeout=60_000)
        page.fill("#reader", "RAD1")
        for _ in range(4):
            page.keyboard.press("ArrowUp")
        box = page.locator("#stack").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.63, box["y"] + box["height"] * 0.36)
        page.wait_for_selector("#probe:has-text('HU')")
        page.wait_for_timeout(500)
        shot = REPO / "docs" / "screenshots" / "review.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))
        browser.close()
    print(shot)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
