"""The segmentation contract: settings per stage, the method registry, the common steps
applied to any method's output, and the learned method's place before it has weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import to_image, toy_chest

from lesionquant import Settings
from lesionquant.errors import WeightsError
from lesionquant.segment import (
    Implementation,
    Label,
    LesionOutput,
    Method,
    implementation,
    method_name,
    register,
    segment_lesions,
    segment_lungs,
    weights_sha256,
)

SP = (5.0, 3.0, 3.0)


def test_settings_hold_every_number_and_read_back_from_json():
    s = Settings(lung_method="model").replace(**{"classical_lungs.airway.max_ml": 200.0})
    d = json.loads(json.dumps(s.to_dict()))
    assert d["lung_method"] == "model" and d["lesion_method"] is None
    assert d["classical_lungs"]["airway"]["max_ml"] == 200.0
    assert d["classical_lesions"]["filters"]["rim_mm"] == 5.0
    assert Settings.from_dict(d) == s
    assert s.stage_methods() == (Method.MODEL, Method.CLASSICAL)
    # Every leaf of the nested configs is a number (or a tuple of numbers): JSON-ready.
    for path in Settings.leaf_paths():
        if path.startswith("classical_"):
            value = Settings().get(path)
            assert isinstance(value, int | float | tuple), path


def test_settings_read_the_flat_names_of_earlier_versions():
    old = {"method": "classical", "lung_closing_mm": 15.0, "rim_mm": 4.0,
           "vessel_sigma_mm": [2.0, 3.0], "ggo_hu": [-700, -300]}
    s = Settings.from_dict(old)
    assert s.classical_lungs.dense.closing_mm == 15.0
    assert s.classical_lesions.filters.rim_mm == 4.0
    assert s.classical_lesions.filters.vessel_sigma_mm == (2.0, 3.0)
    assert s.ggo_hu == (-700.0, -300.0)
    assert Settings().replace(lung_closing_mm=12).classical_lungs.dense.closing_mm == 12
    # The settings of a result.json written before the split read back as today's defaults.
    before = {"method": "classical", "device": "auto", "ggo_hu": [-750.0, -300.0],
              "consolidation_hu": [-300.0, 150.0], "min_lesion_volume_ml": 0.05,
              "lung_threshold_hu": -300.0, "gas_mean_hu": -950.0, "work_spacing_mm": 2.0,
              "lung_closing_mm": 20.0, "dense_lung_max_hu": 150.0, "min_lung_area_cm2": 30.0,
              "lesion_opening_mm": 1.5, "rim_mm": 5.0, "vessel_sigma_mm": [3.0],
              "vessel_threshold": 0.3, "background_mm": 6.0, "tophat_mm": 6.0,
              "lesion_grow_mm": 3.0, "dependent_correction_max_hu": 150.0}
    assert Settings.from_dict(before) == Settings()
    with pytest.raises(ValueError, match="unknown setting"):
        Settings.from_dict({"classical_lungs": {"nope": 1}})
    with pytest.raises(ValueError, match="gas_mean_hu"):
        Settings().replace(**{"classical_lungs.gas_mean_hu": 0.0})


def test_method_name_and_weights_of_mixed_stages():
    assert method_name(Settings()) == "classical"
    assert method_name(Settings(method="model")) == "model"
    assert method_name(Settings(lesion_method="model")) == "lungs:classical+lesions:model"
    assert weights_sha256(Settings()) is None


def test_learned_stages_without_their_weights_raise_weights_error(tmp_path, monkeypatch):
    """With the shipped weights file gone (a broken install), a learned stage is a typed
    WeightsError, while the classical stage of the other half still runs."""
    from lesionquant.segment.model import _weights

    (tmp_path / "registry.json").write_text(json.dumps(
        {_weights.DEFAULT_WEIGHTS: _weights.weights_info()}))  # the registry, no .pt file
    monkeypatch.setattr(_weights, "_folder", lambda: tmp_path)
    _weights._load.cache_clear()
    try:
        hu, _ = toy_chest()
        image = to_image(hu, SP)
        with pytest.raises(WeightsError, match="weights"):
            segment_lungs(image, Settings(lung_method="model"))
        lungs = segment_lungs(image, Settings(lesion_method="model"))  # classical lungs run
        with pytest.raises(WeightsError):
            segment_lesions(image, lungs, Settings(lesion_method="model"))
    finally:
        _weights._load.cache_clear()


@pytest.fixture
def plugged():
    """A stand-in learned method registered under Method.MODEL: classical lungs, and a
    lesion stage that returns a fixed binary mask (no class map), as a model would."""
    calls: dict[str, object] = {}

    def lesions(image: sitk.Image, lungs: sitk.Image, settings: Settings) -> LesionOutput:
        calls["lungs"] = sitk.GetArrayFromImage(lungs)
        mask = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
        mask[15:25, 40:56, 20:50] = 1  # a block across the right lung and beyond it
        mask[20, 48, 100] = 1  # one voxel in the left lung: below the minimum size
        out = sitk.GetImageFromArray(mask)
        out.CopyInformation(image)
        return LesionOutput(mask=out)

    classical = implementation(Method.CLASSICAL)
    register(Method.MODEL, Implementation(lungs=classical.lungs, lesions=lesions,
                                          weights_sha256=lambda s: "c0ffee"))
    yield calls
    register(Method.MODEL, None)


def test_a_plugged_in_lesion_stage_gets_the_common_steps(plugged):
    hu, _ = toy_chest(noise_hu=0.0)
    hu[15:25, 40:56, 20:35] = -500.0  # GGO density in part of the block
    hu[15:25, 40:56, 35:50] = -100.0  # consolidation density in the rest
    image = to_image(hu, SP)
    s = Settings(lesion_method="model")
    lungs = segment_lungs(image, s)
    # The stage is given lung sides, even when handed a label map with lesions.
    with_lesions = sitk.GetArrayFromImage(lungs)
    with_lesions[with_lesions == Label.RIGHT_LUNG] = Label.GGO
    given = sitk.GetImageFromArray(with_lesions)
    given.CopyInformation(lungs)
    out = sitk.GetArrayFromImage(segment_lesions(image, given, s))
    assert set(np.unique(plugged["lungs"])) <= {0, 1, 2}
    lung = sitk.GetArrayFromImage(lungs) > 0
    block = np.zeros(lung.shape, bool)
    block[15:25, 40:56, 20:50] = True
    lesion = out >= Label.GGO
    # Kept inside the lungs only; the single voxel is below min_lesion_volume_ml.
    assert np.array_equal(lesion, block & lung)
    assert out[20, 48, 100] == Label.LEFT_LUNG
    # No class map: split by HU at consolidation_hu[0].
    assert (out[15:25, 40:56, 20:35][lesion[15:25, 40:56, 20:35]] == Label.GGO).all()
    assert (out[15:25, 40:56, 35:50][lesion[15:25, 40:56, 35:50]] == Label.CONSOLIDATION).all()
    assert weights_sha256(s) == "c0ffee"
    assert method_name(s) == "lungs:classical+lesions:model"


def test_quantify_records_the_mixed_method(plugged):
    from lesionquant import quantify

    hu, _ = toy_chest()
    res = quantify(to_image(hu, SP), lesion_method="model", device="cpu")
    assert res.provenance.method == "lungs:classical+lesions:model"
    assert res.provenance.weights_sha256 == "c0ffee"
    assert res.provenance.settings["lesion_method"] == "model"


def test_a_lung_map_stored_in_another_orientation_gives_the_same_label_map():
    hu, _ = toy_chest()
    hu[15:25, 40:56, 20:40] = -500.0  # a GGO block in the right lung
    image = to_image(hu, SP)
    lungs = segment_lungs(image)
    same = sitk.GetArrayFromImage(segment_lesions(image, lungs))
    flipped = sitk.GetArrayFromImage(segment_lesions(image, sitk.DICOMOrient(lungs, "RAS")))
    assert (same == Label.GGO).sum() > 1000
    assert np.array_equal(same, flipped)
