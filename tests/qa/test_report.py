"""Per-scan report.html and batch index.html: self-contained, complete, escaped."""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path

import pytest
import SimpleITK as sitk
from _truth import labels_path, make_result

import lesionquant
from lesionquant.errors import UnsupportedDicomError
from lesionquant.qa import save_verdict, write_index, write_scan_qa
from lesionquant.scan import Acquisition

_URL_ATTR = re.compile(r"""\b(?:src|href|action|data)\s*=\s*["']?([^"'\s>]+)""", re.I)


def assert_self_contained(text: str) -> list[str]:
    """No network reference anywhere; every image is a data: URI. Returns the img srcs."""
    refs = _URL_ATTR.findall(text)
    assert not [r for r in refs if re.match(r"(?i)(https?:)?//", r)], refs
    assert not re.search(r"(?i)url\(\s*['\"]?(https?:)?//", text)
    assert not re.search(r"(?i)@import", text)
    assert not re.search(r"(?i)<script[^>]+src=", text)
    assert not re.search(r"(?i)<link[^>]+stylesheet", text)
    imgs = re.findall(r"""<img[^>]*\bsrc="([^"]+)\"""", text)
    assert all(s.startswith("data:image/png;base64,") for s in imgs), [s[:40] for s in imgs]
    return imgs


@pytest.fixture(scope="module")
def result(batch_inputs):
    scan = lesionquant.load_scan(str(batch_inputs[0]))
    return make_result(scan, sitk.ReadImage(str(labels_path(batch_inputs[0]))))


def test_write_scan_qa(result, tmp_path):
    png, page = write_scan_qa(result, tmp_path, scan_id="S-0123456789ab")
    assert png == tmp_path / "overlay.png" and page == tmp_path / "report.html"
    text = page.read_text(encoding="utf-8")
    imgs = assert_self_contained(text)
    assert len(imgs) == 1
    embedded = base64.b64decode(imgs[0].split(",", 1)[1])
    assert embedded == png.read_bytes(), "the report embeds exactly overlay.png"
    numbers = result.to_dict()
    assert "S-0123456789ab" in text
    assert f"{numbers['lesion_pct']:,.2f}" in text and f"{numbers['lung_ml']:,.0f}" in text
    for section in ("Key numbers", "QA images", "Warnings", "All results", "Provenance",
                    "Acquisition"):
        assert f"<h2>{section}</h2>" in text
    assert numbers["method"] in text and lesionquant.__version__ in text
    # The batch fills in patient and visit once it knows every visit; until then it says so.
    assert "<h2>Patient and visit</h2>" in text and "Filled in when the batch" in text
    # A method without weights: "n/a", not an empty cell.
    assert result.provenance.weights_sha256 is None
    assert f"n/a (the {result.provenance.method} method uses no weights)" in text
    # The input path is not on the report (it may name the patient).
    assert str(Path(result.scan.source).parent) not in text
    assert not list(tmp_path.glob(".*.tmp")), "no temp files left"


def test_write_scan_qa_refuses_derived_images(result, tmp_path):
    derived = dataclasses.replace(result, scan=dataclasses.replace(
        result.scan, acquisition=Acquisition(modality="CT",
                                             image_type=("DERIVED", "SECONDARY", "OTHER"))))
    with pytest.raises(UnsupportedDicomError, match="burned-in"):
        write_scan_qa(derived, tmp_path, scan_id="S-derived")
    assert list(tmp_path.iterdir()) == [], "nothing rendered, nothing written"


def test_report_escapes_text_and_hides_identifiers(result, tmp_path):
    from lesionquant.scan import Identifiers

    source = str(Path(result.scan.source).resolve())
    evil = dataclasses.replace(result, scan=dataclasses.replace(
        result.scan,
        identifiers=Identifiers(patient_name="DOE^JANE", patient_id="PID-998877"),
        warnings=("<script>alert(1)</script> tilt corrected",
                  f"{source}: 12 slices of DOE^JANE (PID-998877) resampled")))
    _, page = write_scan_qa(evil, tmp_path, scan_id="S-x")
    text = page.read_text(encoding="utf-8")
    assert "<script>alert(1)" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; tilt corrected" in text
    assert "&lt;input&gt;: 12 slices of &lt;patient name&gt; (&lt;patient id&gt;) resampled" in text
    for secret in (source, "DOE^JANE", "PID-998877", Path(source).parent.name):
        assert secret not in text


def test_index_lists_scans_failures_and_verdicts(batch_out):
    scans = sorted(p.parent.name for p in batch_out.glob("S-*/result.json"))
    assert len(scans) == 2
    save_verdict(batch_out, scans[1], "reject", comment="GGO <missed> at right base")
    page = write_index(batch_out)
    assert page == batch_out / "index.html"
    text = page.read_text(encoding="utf-8")
    assert_self_contained(text)
    for scan_id in scans:
        assert f'href="{scan_id}/report.html"' in text
        assert f'href="{scan_id}/overlay.png"' in text
        assert f'data-scan="{scan_id}"' in text
    row = re.search(rf'<tr data-scan="{scans[1]}" data-status="([a-z]+)">(.*?)</tr>', text)
    assert row and row.group(1) == "reject"
    assert "GGO &lt;missed&gt; at right base" in row.group(2)
    row0 = re.search(rf'<tr data-scan="{scans[0]}" data-status="([a-z]+)">', text)
    assert row0 and row0.group(1) == "none"
    # The failed input is listed, pseudonymised: its path may name the patient (issue 22).
    assert "<h2>Failed scans</h2>" in text and "&lt;input&gt;: no such file" in text
    assert "missing.nii.gz" not in text and str(batch_out.parent) not in text
    assert "th.sort" in text and "addEventListener('click'" in text, "sortable (inline JS)"
    # Key numbers of each scan, from its result.json.
    import json

    for scan_id in scans:
        lesion = json.loads((batch_out / scan_id / "result.json").read_text())["measures"][
            "lesion_pct"]
        assert f'data-v="{lesion!r}"' in text


def test_batch_wrote_qa_files(batch_out):
    """The batch layer calls write_scan_qa / write_index: every scan has its QA files."""
    for result_json in batch_out.glob("S-*/result.json"):
        folder = result_json.parent
        assert (folder / "overlay.png").stat().st_size > 10_000
        assert_self_contained((folder / "report.html").read_text(encoding="utf-8"))
    assert (batch_out / "index.html").is_file()


def test_write_scan_qa_on_a_real_pipeline_result(batch_inputs, tmp_path):
    """The same on what lesionquant.quantify returns (whatever its accuracy)."""
    result = lesionquant.quantify(str(batch_inputs[1]))
    png, page = write_scan_qa(result, tmp_path, scan_id="S-real")
    assert png.stat().st_size > 10_000
    assert_self_contained(page.read_text(encoding="utf-8"))


@pytest.mark.realdata
def test_real_covid_slice(chest_dir, tmp_path):
    """A real COVID-19 CT slice (TCIA COVID-19-NY-SBU, dense bilateral disease): one axial
    panel without reformats, GGO and consolidation fills present, report self-contained."""
    import io

    import numpy as np
    from PIL import Image

    from lesionquant.qa._display import COLOURS, FILL_ALPHA

    src = chest_dir / "tcia-covid19-ny-sbu-axial-slices" / "A046441_19010101-23.dcm"
    result = lesionquant.quantify(str(src))
    assert result.scan.acquisition.image_type[:1] == ("ORIGINAL",)
    png, page = write_scan_qa(result, tmp_path, scan_id="S-covid")
    text = page.read_text(encoding="utf-8")
    assert_self_contained(text)
    assert "A046441" not in text and str(src.parent) not in text
    pix = np.asarray(Image.open(io.BytesIO(png.read_bytes())).convert("RGB")).astype(float)
    assert pix.shape == (1250, 2000, 3)
    for key, colour in (("ggo_ml", COLOURS["ggo"]), ("consolidation_ml", COLOURS["consolidation"])):
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], float)
        rest = pix[80:1210] - rgb * FILL_ALPHA
        filled = int(((rest.max(axis=-1) - rest.min(axis=-1)) < 10).sum())
        if result[key] > 1.0:
            assert filled > 500, (key, filled)
