"""measure: volumes, percentages, zones, densities and the severity score on known maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from lesionquant.measure import Provenance, Result, measure, zone_score
from lesionquant.scan import Scan


def _image(arr: np.ndarray, spacing=(1.0, 1.0, 2.0), direction=None) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    if direction is not None:
        img.SetDirection(direction)
    return img


def _toy_maps():
    """Right lung x<10, left lung x>=10, 30 slices; GGO in the right upper third."""
    labels = np.zeros((30, 10, 20), np.uint8)
    labels[:, :, :10] = 1
    labels[:, :, 10:] = 2
    hu = np.full(labels.shape, -850, np.int16)
    # z index grows towards superior (LPS): upper third = z 20..29.
    labels[25:30, :, :5] = 3  # 250 voxels GGO, right upper zone
    hu[labels == 3] = -500
    labels[0:2, :5, 15:] = 4  # 50 voxels consolidation, left lower zone
    hu[labels == 4] = 20
    return labels, hu


def test_volumes_percentages_and_zones():
    labels, hu = _toy_maps()
    side = np.where(labels <= 2, labels, 0)
    side[labels == 3] = 1
    side[labels == 4] = 2
    img = _image(hu)
    out = measure(img, _image(labels), _image(side.astype(np.uint8)))
    voxel_ml = 2.0 / 1000.0
    assert out["voxel_volume_ml"] == pytest.approx(voxel_ml)
    assert out["lung_ml"] == pytest.approx(6000 * voxel_ml)
    assert out["right_lung_ml"] == pytest.approx(3000 * voxel_ml)
    assert out["left_lung_ml"] == pytest.approx(3000 * voxel_ml)
    assert out["ggo_ml"] == pytest.approx(250 * voxel_ml)
    assert out["consolidation_ml"] == pytest.approx(50 * voxel_ml)
    assert out["lesion_pct"] == pytest.approx(100 * 300 / 6000)
    assert out["right_ggo_pct"] == pytest.approx(100 * 250 / 3000)
    assert out["left_consolidation_pct"] == pytest.approx(100 * 50 / 3000)
    # Zones: thirds of each lung's height; z 20..29 is upper (10 slices of 300 voxels).
    assert out["right_upper_lung_ml"] == pytest.approx(1000 * voxel_ml)
    assert out["right_upper_ggo_pct"] == pytest.approx(25.0)
    assert out["right_middle_lesion_ml"] == 0
    assert out["left_lower_consolidation_pct"] == pytest.approx(5.0)
    assert out["right_upper_score"] == 3 and out["left_lower_score"] == 2
    assert out["severity_score"] == 5
    assert out["severity_score_25"] == pytest.approx(5 * 25 / 30)
    assert out["lung_mean_hu"] == pytest.approx((5700 * -850 + 250 * -500 + 50 * 20) / 6000)
    assert out["lung_p50_hu"] == pytest.approx(-850)
    assert out["lung_laa950_pct"] == 0


def test_sides_inferred_without_lung_map():
    labels, hu = _toy_maps()
    out = measure(_image(hu), _image(labels))
    assert out["right_ggo_ml"] == pytest.approx(250 * 0.002)
    assert out["left_consolidation_ml"] == pytest.approx(50 * 0.002)


def test_flipped_storage_gives_the_same_zones():
    """Zones follow the patient (superior), not the storage order of the slices."""
    labels, hu = _toy_maps()
    flip = (1, 0, 0, 0, 1, 0, 0, 0, -1)
    out = measure(_image(hu[::-1].copy(), direction=flip), _image(labels[::-1].copy(),
                                                                  direction=flip))
    assert out["right_upper_ggo_pct"] == pytest.approx(25.0)


@pytest.mark.parametrize(("pct", "score"), [(0, 0), (0.01, 0), (0.99, 0), (1.0, 1), (4.99, 1),
                                            (5, 2), (25, 3), (49.9, 3), (50, 4), (75, 5),
                                            (100, 5)])
def test_zone_score_follows_pan_et_al(pct, score):
    assert zone_score(pct) == score


def test_result_is_frozen_and_to_dict_is_json_ready():
    labels, hu = _toy_maps()
    img = _image(hu)
    numbers = measure(img, _image(labels))
    prov = Provenance(version="0", method="classical", device="cpu",
                      settings={"ggo_hu": [-750.0, -300.0]}, timings_s={"lungs": 1.5},
                      warnings=("w1",), series_uid="1.2.3")
    res = Result(measurements=numbers, labelmap=_image(labels), lungs=_image(labels),
                 scan=Scan(image=img, source="x"), provenance=prov)
    with pytest.raises(AttributeError):
        res.measurements = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        res.measurements["lung_ml"] = 1.0  # type: ignore[index]
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["time_lungs_s"] == 1.5 and d["weights_sha256"] is None
    assert d["series_uid"] == "1.2.3" and d["warnings"] == "w1"
    assert json.loads(d["settings_json"]) == {"ggo_hu": [-750.0, -300.0]}
    assert res["lesion_pct"] == res.lesion_pct
    assert sitk.GetArrayFromImage(res.ggo_mask).sum() == 250
    assert sitk.GetArrayFromImage(res.lung_mask).sum() == 6000
    assert sitk.GetArrayFromImage(res.lesion_mask).sum() == 300
    assert sitk.GetArrayFromImage(res.consolidation_mask).sum() == 50


def test_healthy_sample_scores_zero():
    """The bundled healthy scan: its traces of false lesion (< 1 % of any zone) score 0."""
    from pathlib import Path

    import lesionquant

    folder = Path(__file__).resolve().parents[2] / "sample_scans" / "healthy" / "dicom"
    out = lesionquant.quantify(folder).to_dict()
    assert 0 < out["lesion_pct"] < 1.0  # traces exist: the minimum is what makes it 0
    assert out["severity_score"] == 0 and out["severity_score_25"] == 0
