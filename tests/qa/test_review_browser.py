"""The review page in a real headless browser (Debian's chromium driven by Playwright):
the sample batch loads, slices scroll with the keyboard, a verdict is saved and is still
there after the server restarts (as a new process), in results.csv and index.html too."""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator

import pytest
from conftest import require_browser, start_review

from lesionquant.qa import ReviewServer

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _wait(page, js: str, timeout_s: float = 30.0) -> None:
    """Poll ``js`` (a function expression) until it returns true. page.wait_for_function
    evaluates strings with eval(), which the page's Content-Security-Policy forbids."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(js):
        assert time.monotonic() < deadline, f"timed out waiting for {js}"
        page.wait_for_timeout(50)


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # CSP violations and failed requests of the page itself are console errors.
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    page.wait_for_selector("#stack[data-slice]", timeout=30_000)
    _wait(page, "() => document.getElementById('ct').complete && "
                "document.getElementById('ct').naturalWidth > 0")
    return page, errors


def _slice(page) -> int:
    return int(page.get_attribute("#stack", "data-slice"))


def test_scroll_verdict_restart(browser, batch_out, batch_inputs):
    inputs = [str(p) for p in batch_inputs]
    with ReviewServer(batch_out, port=0, inputs=inputs).start() as srv:
        page, errors = _open(browser, srv.url)
        first_scan = page.inner_text("#scan-id")
        assert re.fullmatch(r"S-[0-9a-f]{12}", first_scan)
        # The list is grouped by patient (each NIfTI input is its own patient), visits by day
        # (a volume file has no study date: "day ?").
        assert page.locator("#scans li.patient").count() == 2
        assert page.locator("#scans li .day").all_inner_texts() == ["day ?", "day ?"]
        assert re.fullmatch(r"patient P-[0-9a-f]{12} · day \?", page.inner_text("#scan-visit"))
        assert page.inner_text("#slice-count") == "36"
        k0, src0 = _slice(page), page.get_attribute("#ct", "src")
        assert src0 == f"/api/scans/{first_scan}/ct/{k0}.png?w=lung"

        page.keyboard.press("ArrowDown")  # one slice inferior
        assert _slice(page) == k0 - 1
        src1 = page.get_attribute("#ct", "src")
        assert src1 != src0 and src1.endswith(f"/ct/{k0 - 1}.png?w=lung")
        page.keyboard.press("j")
        page.keyboard.press("j")
        assert _slice(page) == k0 - 3
        page.keyboard.press("k")
        page.keyboard.press("ArrowUp")
        assert _slice(page) == k0 - 1
        assert page.inner_text("#slice-index") == str(36 - (k0 - 1))
        _wait(page, "() => document.getElementById('ct').naturalWidth === 64")
        assert page.get_attribute("#overlay", "src").endswith(f"/overlay/{k0 - 1}.png")

        box = page.locator("#stack").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_selector("#probe:has-text('HU')")

        page.keyboard.press("2")
        assert page.get_attribute("#ct", "src").endswith("?w=mediastinum")
        assert "mediastinum" in page.inner_text("#window-label")
        page.keyboard.press("1")
        page.keyboard.press("o")
        assert page.get_attribute("#overlay", "class") == "off"
        page.keyboard.press("o")
        page.keyboard.press("-")
        assert "35 %" in page.inner_text("#overlay-label")

        # Comment, then accept, all from the keyboard.
        page.keyboard.press("c")
        page.keyboard.type("lungs and GGO correct")
        page.keyboard.press("Enter")
        page.wait_for_selector('body[data-saves="1"][data-saved*=":pending:"]')
        page.keyboard.press("Shift+A")  # accept, then open the next scan without a verdict
        page.wait_for_selector('body[data-saves="2"][data-saved*=":accept:"]')
        assert page.locator(f'#scans li[data-id="{first_scan}"] .badge').inner_text() == "accept"
        page.wait_for_selector(f'body[data-scan]:not([data-scan="{first_scan}"])')
        second_scan = page.inner_text("#scan-id")
        assert second_scan != first_scan
        assert page.inner_text("#verdict-badge") == "not reviewed"
        assert errors == []
        page.close()

    # Restart: a new server process (the CLI) on the same folder.
    proc, url = start_review(batch_out, inputs)
    try:
        page, errors = _open(browser, url)
        # The first scan without a verdict opens; the accepted one shows its badge in the list.
        assert page.inner_text("#scan-id") == second_scan
        assert page.locator(f'#scans li[data-id="{first_scan}"] .badge').inner_text() == "accept"
        # Reject the second scan with a reason, from the keyboard.
        page.keyboard.press("r")
        page.wait_for_selector('body[data-saves="1"][data-saved*=":reject:"]')
        page.wait_for_selector("#comment:focus")
        page.keyboard.type("consolidation missed at the left base")
        page.keyboard.press("Enter")  # saves the reason, keeps the verdict
        page.wait_for_selector('body[data-saves="2"][data-saved*=":reject:"]')
        page.keyboard.press("p")
        page.wait_for_selector(f'body[data-scan="{first_scan}"]')
        assert page.inner_text("#verdict-badge") == "accept"
        assert page.input_value("#comment") == "lungs and GGO correct"
        assert errors == []
        page.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    rows = {r["scan_id"]: r for r in csv.DictReader(io.StringIO(
        (batch_out / "results.csv").read_text(encoding="utf-8")))}
    assert rows[first_scan]["qa_verdict"] == "accept"
    assert rows[first_scan]["qa_comment"] == "lungs and GGO correct"
    assert rows[second_scan]["qa_verdict"] == "reject"
    assert rows[second_scan]["qa_comment"] == "consolidation missed at the left base"
    index = (batch_out / "index.html").read_text(encoding="utf-8")
    assert f'<tr data-scan="{first_scan}" data-status="accept">' in index


def test_index_sorts_and_filters(browser, batch_out):
    """index.html opened from disk (file://, no server): click to sort, select to filter."""
    from lesionquant.qa import save_verdict, write_index

    ids = sorted(p.parent.name for p in batch_out.glob("S-*/result.json"))
    save_verdict(batch_out, ids[0], "accept")
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto((write_index(batch_out)).as_uri())
    lesion_col = page.locator("#scans th", has_text="lesion %").first

    heads = [t.strip(" \u2195") for t in page.locator("#scans th").all_inner_texts()]
    col = heads.index("lesion %")

    def lesion_values() -> list[float]:
        cells = page.locator("#scans tbody tr").evaluate_all(
            f"rows => rows.map(r => r.cells[{col}].dataset.v)")
        return [float(v) for v in cells]

    lesion_col.click()
    up = lesion_values()
    assert up == sorted(up) and len(up) == 2 and up[0] != up[1]
    lesion_col.click()
    assert lesion_values() == sorted(up, reverse=True)
    page.select_option("#filter", "accept")
    visible = page.locator("#scans tbody tr:visible")
    assert visible.count() == 1 and visible.first.get_attribute("data-scan") == ids[0]
    page.select_option("#filter", "none")
    assert page.locator("#scans tbody tr:visible").count() == 1
    assert errors == []
    page.close()


def test_index_and_report_show_their_plots_sharp(browser, batch_out, tmp_path):
    """The trajectory and cohort plots load under the pages' Content-Security-Policy and are
    drawn at twice their size on the page (sharp on high-density screens)."""
    from lesionquant.qa import update_report_patient_sections

    update_report_patient_sections(batch_out)
    report = next(batch_out.glob("S-*/report.html"))
    for path, selector in ((batch_out / "index.html", "#cohort img, #patients img"),
                           (report, ".patient img")):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        page.on("console", lambda m, errors=errors: errors.append(m.text)
                if m.type == "error" else None)
        page.goto(path.as_uri())
        sizes = page.evaluate(
            "(sel) => Array.from(document.querySelectorAll(sel)).map("
            "i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width])", selector)
        assert sizes and all(ok and natural == 2 * width for ok, natural, width in sizes), sizes
        page.screenshot(path=str(tmp_path / f"{path.stem}.png"), full_page=True)
        assert errors == []
        page.close()
