"""Two-sided checks of the pipeline on the real TCIA COVID-19 slices (no expert labels).

* Consolidated slices: the lung area must be at least ``LUNG_CAGE_MIN`` (0.30) of the
  rib-cage area (convex hull of the bone > 300 HU within 50 mm of the lung mask). The
  near-normal slices measure 0.39-0.55, so the bound is **looser than the lung's real
  size**: it catches a mask that left a consolidated lobe out, not a few % of lung.
* Control patient A048383: at most 1 % false lesion (both dates).

The classical pipeline fails both (its lung mask stops at the aerated lung; its dependent
density reads as GGO): those cases are strict xfails, the baseline the learned model must
beat. The learned model (``method="model"``, lesionnet-v4) keeps the consolidated lobes
inside its lung mask (tested without a marker) but still calls hilar vessels and dependent
density lesion on the control (a strict xfail). When a method passes a strict xfail, the
xfail turns into a failure: remove the marker.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lesionquant.evaluate import (
    CONTROL_MAX_LESION_PCT,
    LUNG_CAGE_MIN,
    TCIA_CONSOLIDATED,
    TCIA_CONTROL,
    rib_cage_area_cm2,
)

pytestmark = pytest.mark.realdata

_BASELINE = pytest.mark.xfail(
    strict=True, raises=AssertionError,
    reason="classical baseline: lung mask leaves the consolidated dependent lung out "
           "(issue 20); the model must pass")
_BASELINE_FP = pytest.mark.xfail(
    strict=True, raises=AssertionError,
    reason="classical baseline: dependent density of the control reads as GGO (issue 20)")
_MODEL_FP = pytest.mark.xfail(
    strict=True, raises=AssertionError,
    reason="lesionnet-v4 calls hilar vessels and dependent density of the control lesion "
           "(6.5 % and 3.4 %; issue 21)")


def _lung_and_cage(path, method="classical"):
    from lesionquant.api import quantify
    from lesionquant.segment import to_lps

    res = quantify(path, method=method, device="cpu")
    img = to_lps(res.scan.image)[0]
    lab = sitk.GetArrayFromImage(to_lps(res.labelmap)[0])
    lung = (lab >= 1) & (lab <= 4)
    sx, sy = img.GetSpacing()[:2]
    cage = rib_cage_area_cm2(sitk.GetArrayFromImage(img)[0], lung[0], (sx, sy))
    return res, float(lung[0].sum()) * sx * sy / 100.0, cage


@pytest.mark.parametrize("name", ["A048383_19001231-30", "A048383_19010410-30",
                                  "A002304_19001231-076"])
def test_rib_cage_bound_holds_on_near_normal_slices(chest_dir, name):
    """The bound's calibration: near-normal lungs fill 0.39-0.55 of the rib cage."""
    _, lung_cm2, cage = _lung_and_cage(
        chest_dir / "tcia-covid19-ny-sbu-axial-slices" / f"{name}.dcm")
    assert 150 < cage < 700
    assert lung_cm2 / cage >= LUNG_CAGE_MIN + 0.05


@pytest.mark.parametrize(("method", "name"),
                         [pytest.param("classical", n, marks=_BASELINE)
                          for n in TCIA_CONSOLIDATED]
                         + [("model", n) for n in TCIA_CONSOLIDATED])
def test_consolidated_slices_keep_their_lung_area_loose_bound(chest_dir, method, name):
    """Lung area >= 0.30 x rib cage on the consolidated slices (a loose lower bound)."""
    _, lung_cm2, cage = _lung_and_cage(
        chest_dir / "tcia-covid19-ny-sbu-axial-slices" / f"{name}.dcm", method)
    assert lung_cm2 >= LUNG_CAGE_MIN * cage


@pytest.mark.parametrize(("method", "name"),
                         [pytest.param("classical", n, marks=_BASELINE_FP) for n in TCIA_CONTROL]
                         + [pytest.param("model", n, marks=_MODEL_FP) for n in TCIA_CONTROL])
def test_control_patient_false_lesion_within_1_pct(chest_dir, method, name):
    res, _, _ = _lung_and_cage(chest_dir / "tcia-covid19-ny-sbu-axial-slices" / f"{name}.dcm",
                               method)
    assert res["lesion_pct"] <= CONTROL_MAX_LESION_PCT


def test_qa_flag_is_in_every_result_and_larger_on_consolidation(chest_dir):
    """The QA flag (dense tissue between lung mask and ribs) is reported, in mL, and reads
    higher on A046441's consolidated slice than on the control."""
    d = chest_dir / "tcia-covid19-ny-sbu-axial-slices"
    cons, _, _ = _lung_and_cage(d / "A046441_19010101-23.dcm")
    ctrl, _, _ = _lung_and_cage(d / "A048383_19010410-30.dcm")
    assert np.isfinite(ctrl["qa_dense_outside_lung_ml"])
    assert cons["qa_dense_outside_lung_ml"] > 3.0 * max(ctrl["qa_dense_outside_lung_ml"], 1.0)
