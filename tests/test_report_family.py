"""The synthetic report family holds the classical pipeline to its measured baseline.

Issue 20 splits the synthetic cases into tuning, report and shifted families and asks the
tests to hold the report set to the targets. It states no accuracy target for the classical
method (its numbers are the baseline the learned model must beat); the issue-21 target
(lesion Dice >= 0.85, lesion % error <= 1 pp) is the model's and the classical method is far
from it (docs/accuracy.md). What this test holds is therefore a **regression bound**: the
classical numbers measured on the first report-family cases (grid below), plus a margin.
A change that makes the classical baseline worse than that fails here; it does not say the
classical method is accurate.

The cases are the report family's own (``family_cases("report", N)``: seeds 20000+, never
looked at while changing a method), generated small (coarse pixels, 5 mm slices) so the
test takes about 15 s of CPU a case (40 s wall on the shared two cores).
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lesionquant.api import quantify
from lesionquant.evaluate import dice
from lesionquant.segment.labels import Label
from lesionquant.synth import family_cases, make_phantom

pytestmark = pytest.mark.slow

#: A small whole chest: 224 x 224 x 60 at 1.6 x 1.6 x 5 mm (the evaluation's family grid,
#: 320 x 320 x 150 at 1.1 x 1.1 x 2 mm, covers the same 350 x 350 x 300 mm).
SIZE_XYZ = (224, 224, 60)
SPACING_MM = (1.6, 1.6, 5.0)
N_CASES = 3

#: Measured baseline of the classical pipeline on these cases (``_measure`` below, at the
#: commit that added this test): per case, lesion Dice, lesion % error (pp, predicted -
#: true) and lung Dice.
BASELINE = {
    20000: {"lesion_dice": 0.718, "lesion_err_pp": -6.29, "lung_dice": 0.991},
    20001: {"lesion_dice": 0.628, "lesion_err_pp": -0.99, "lung_dice": 0.992},
    20002: {"lesion_dice": 0.819, "lesion_err_pp": -2.86, "lung_dice": 0.986},
}
#: Margins of the regression bound (not a target): Dice may drop by this much, the
#: absolute lesion % error grow by this many pp, the lung Dice drop by this much.
DICE_MARGIN = 0.05
ERR_MARGIN_PP = 1.5
LUNG_DICE_MARGIN = 0.01


def _measure(case) -> dict[str, float]:
    """Classical pipeline on one report-family case: lesion Dice, lesion % error, lung Dice."""
    ph = make_phantom(size_xyz=SIZE_XYZ, spacing_mm=SPACING_MM, seed=case.seed,
                      lesions=case.lesions, patient_scale=case.patient_scale,
                      dose_factor=case.dose_factor)
    res = quantify(ph.image, method="classical")
    pred = sitk.GetArrayFromImage(res.labelmap)
    truth = sitk.GetArrayFromImage(ph.labels)
    lesion_labels = (Label.GGO, Label.CONSOLIDATION)
    lung_labels = (Label.RIGHT_LUNG, Label.LEFT_LUNG, *lesion_labels)
    return {
        "lesion_dice": dice(np.isin(pred, lesion_labels), np.isin(truth, lesion_labels)),
        "lesion_err_pp": float(res["lesion_pct"]) - ph.lesion_pct,
        "lung_dice": dice(np.isin(pred, lung_labels), np.isin(truth, lung_labels)),
    }


@pytest.mark.parametrize("case", family_cases("report", N_CASES), ids=lambda c: f"seed{c.seed}")
def test_report_family_classical_regression_bound(case):
    """Classical numbers on a report-family case stay within the measured baseline plus a
    margin (a regression bound, looser than any accuracy target: issue 20 sets none for
    the classical method, and the issue-21 target Dice >= 0.85 / error <= 1 pp is not held
    here)."""
    got = _measure(case)
    base = BASELINE[case.seed]
    assert got["lesion_dice"] >= base["lesion_dice"] - DICE_MARGIN, got
    assert abs(got["lesion_err_pp"]) <= abs(base["lesion_err_pp"]) + ERR_MARGIN_PP, got
    assert got["lung_dice"] >= base["lung_dice"] - LUNG_DICE_MARGIN, got
