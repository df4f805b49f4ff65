"""Every tuned number of the classical method is in ``Settings`` and acts: changing it
changes the label map of a small case (or it is listed below as inert on these cases,
with the reason)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lesionquant import Settings
from lesionquant.errors import LesionQuantError
from lesionquant.segment import segment_lesions, segment_lungs
from lesionquant.synth import make_phantom

#: Field -> (a changed value, the small case whose label map it changes). Lung-stage fields
#: are checked on the lung map, lesion-stage fields on the label map with the default lungs.
#: Cases: "copd" (the 64^3 COPD scan, 4 mm pixels: coarse regime), "lungmask" and "tcia"
#: (real single 512^2 slices: single-slice regime), "phantom" (160x160x80 at 2.2 x 2.2 x 4 mm
#: with 10 % lesions), "thick" (a 256x256x12 phantom at 1 x 1 x 5 mm: thick 3D regime).
CHANGES: dict[str, tuple[object, str]] = {
    "classical_lungs.work_spacing_mm": (1.0, "lungmask"),
    "classical_lungs.lung_threshold_hu": (-150.0, "copd"),
    "classical_lungs.gas_mean_hu": (-475.0, "copd"),
    "classical_lungs.surface_hu": (-225.0, "copd"),
    "classical_lungs.lumen_margin_hu": (25.0, "copd"),
    "classical_lungs.air.max_gas_share": (0.125, "copd"),
    "classical_lungs.air.min_in_body": (2.0, "copd"),
    "classical_lungs.air.min_share_of_largest": (0.025, "tcia"),
    "classical_lungs.air.min_component_ml": (0.8, "tcia"),
    "classical_lungs.air.cropped_frame_share": (0.125, "copd"),
    "classical_lungs.airway.threshold_steps_hu": ((-40.0,), "copd"),
    "classical_lungs.airway.max_ml": (1.0, "copd"),
    "classical_lungs.airway.min_ml": (10.0, "copd"),
    "classical_lungs.airway.top_area_cm2": ((0.6, 16.0), "copd"),
    "classical_lungs.airway.max_offcentre": (0.01, "copd"),
    "classical_lungs.airway.trachea_max_width_mm": (17.5, "phantom"),
    "classical_lungs.airway.bronchus_gap_mm": (5.0, "phantom"),
    "classical_lungs.airway.bronchus_max_ml": (0.1, "phantom"),
    "classical_lungs.airway.bronchus_midline_mm": (30.0, "phantom"),
    "classical_lungs.airway.bronchus_tips_mm": (20.0, "phantom"),
    "classical_lungs.airway.bridge_rounds": (1, "phantom"),
    "classical_lungs.airway.lumen_blocks": (1, "copd"),
    "classical_lungs.airway.hilum_mm": (10.0, "copd"),
    "classical_lungs.airway.hilum_airway_mm": (15.0, "phantom"),
    "classical_lungs.free_gas.parenchyma_share": (0.25, "phantom"),
    "classical_lungs.free_gas.layer_max_mm": (3.75, "phantom"),
    "classical_lungs.free_gas.layer_min_ml": (1000.0, "phantom"),
    "classical_lungs.free_gas.layer_floor": (1.4, "phantom"),
    "classical_lungs.free_gas.wall_mm": (5.0, "phantom"),
    "classical_lungs.free_gas.pocket_min_ml": (1000.0, "phantom"),
    "classical_lungs.free_gas.rim_extra_mm": (0.5, "phantom"),
    "classical_lungs.free_gas.rim_hu": (-375.0, "phantom"),
    "classical_lungs.split.second_lung_ratio": (0.99, "copd"),
    "classical_lungs.split.erosion_depths_mm": ((1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0), "copd"),
    "classical_lungs.dense.closing_mm": (10.0, "copd"),
    "classical_lungs.dense.max_hu": (75.0, "copd"),
    "classical_lungs.dense.max_hole_cm2": (5.0, "phantom"),
    "classical_lungs.dense.medial_notch_mm": (7.5, "copd"),
    "classical_lungs.dense.mediastinum_grow_mm": (7.0, "copd"),
    "classical_lungs.dense.neighbourhood_mm": (8.0, "copd"),
    "classical_lungs.dense.normal_offset_hu": (30.0, "phantom"),
    "classical_lungs.dense.normal_min_hu": (-425.0, "copd"),
    "classical_lungs.dense.diseased_normal_fraction": (0.15, "copd"),
    "classical_lungs.dense.healthy_normal_fraction": (0.275, "copd"),
    "classical_lungs.dense.healthy_veto_mm": (25.0, "copd"),
    "classical_lungs.dense.pv_erosion_mm": (1.0, "phantom"),
    "classical_lesions.filters.smoothing_mm": (3.0, "lungmask"),
    "classical_lesions.filters.tophat_mm": (3.0, "lungmask"),
    "classical_lesions.filters.tophat_hu": (60.0, "copd"),
    "classical_lesions.filters.tophat_grid_mm": (0.7, "lungmask"),
    "classical_lesions.filters.core_max_voxel_mm": (1.0, "tcia"),
    "classical_lesions.filters.core_halo_mm": (1.5, "lungmask"),
    "classical_lesions.filters.opening_mm": (0.75, "lungmask"),
    "classical_lesions.filters.vessel_sigma_mm": ((1.5,), "copd"),
    "classical_lesions.filters.vessel_threshold": (0.15, "copd"),
    "classical_lesions.filters.vessel_grid_ratio": (0.75, "lungmask"),
    "classical_lesions.filters.frangi_alpha": (0.25, "copd"),
    "classical_lesions.filters.frangi_beta": (0.25, "copd"),
    "classical_lesions.filters.frangi_c_hu": (50.0, "copd"),
    "classical_lesions.filters.vessel_halo_mm": (0.5, "lungmask"),
    "classical_lesions.filters.background_mm": (3.0, "lungmask"),
    "classical_lesions.filters.background_min_share": (0.025, "lungmask"),
    "classical_lesions.filters.rim_mm": (2.5, "copd"),
    "classical_lesions.filters.grow_mm": (1.5, "copd"),
    "classical_lesions.filters.dependent_correction_max_hu": (75.0, "lungmask"),
    "classical_lesions.filters.dependent_normal_hu": ((-500.0, -300.0), "copd"),
    "classical_lesions.filters.dependent_percentile": (0.125, "lungmask"),
    "classical_lesions.filters.dependent_min_voxels": (25, "lungmask"),
    "classical_lesions.filters.dependent_min_rows": (100000, "lungmask"),
    "classical_lesions.regimes.few_slices": (1, "lungmask"),
    "classical_lesions.regimes.thick_slice_mm": (1.5, "lungmask"),
    "classical_lesions.regimes.thick3d_slice_mm": (6.0, "thick"),
    "classical_lesions.regimes.thick3d_pixel_mm": (0.5, "thick"),
    "classical_lesions.regimes.thick3d_halo_mm": (1.0, "thick"),
    "classical_lesions.regimes.coarse_pixel_mm": (4.0, "phantom"),
    "classical_lesions.regimes.ridge_mm": ((0.5, 1.0, 1.5, 2.0), "thick"),
    "classical_lesions.regimes.ridge_hu": (20.0, "lungmask"),
    "classical_lesions.regimes.ridge_min_hu": (-250.0, "lungmask"),
    "classical_lesions.regimes.dark_hu": (-400.0, "lungmask"),
    "classical_lesions.regimes.dark_p10_hu": (-410.0, "tcia"),
    "classical_lesions.regimes.dark_offset_hu": (30.0, "lungmask"),
    "classical_lesions.regimes.dark_mm": (10.0, "lungmask"),
    "classical_lesions.regimes.dark_fraction": (0.075, "lungmask"),
    "classical_lesions.regimes.halo_mm": (3.0, "lungmask"),
    "classical_lesions.regimes.halo_source_hu": (-250.0, "lungmask"),
    "classical_lesions.regimes.hilar_mm": (12.5, "copd"),
    "classical_lesions.regimes.hilar_raise_hu": (50.0, "tcia"),
}

#: Fields that change none of the small cases, and why.
INERT = {
    "classical_lungs.airway.top_reach_mm": (
        "the trachea of every case reaches the top of the air, so no reach rejects it; the "
        "test only rejects gas that starts lower (bowel gas, a bronchus cut by the FOV)"),
    "classical_lungs.airway.top_reach_min_blocks": (
        "the floor of top_reach_mm on coarse grids; inert for the same reason"),
}


def test_every_classical_number_is_checked_or_documented_inert():
    paths = {p for p in Settings.leaf_paths() if p.startswith("classical_")}
    assert not set(CHANGES) & set(INERT)
    assert paths == set(CHANGES) | set(INERT)
    assert len(paths) >= 52  # the module constants of the classical method, and more


@pytest.fixture(scope="module")
def cases(chest_dir, small_phantom):
    from lesionquant.io import load_scan

    thick = make_phantom(size_xyz=(256, 256, 12), spacing_mm=(1.0, 1.0, 5.0), seed=1,
                         lesion_burden_pct=10.0, patient_scale=0.7)
    tcia = chest_dir / "tcia-covid19-ny-sbu-axial-slices" / "A002304_19010112-135.dcm"
    images = {
        "copd": load_scan(chest_dir / "cip-copd-chest-ct-64" / "ct.nii.gz").image,
        "lungmask": load_scan(chest_dir / "lungmask-chest-ct-dicom-slice" / "0.dcm").image,
        "tcia": load_scan(tcia).image,
        "phantom": small_phantom.image,
        "thick": thick.image,
    }
    out = {}
    for name, image in images.items():
        lungs = segment_lungs(image)
        out[name] = (image, lungs, sitk.GetArrayFromImage(segment_lesions(image, lungs)))
    return out


def _changes(path: str, value: object, case: tuple) -> bool:
    image, lungs, labels = case
    s = Settings().replace(**{path: value})
    try:
        if path.startswith("classical_lungs."):
            out = segment_lungs(image, s)
            return not np.array_equal(sitk.GetArrayViewFromImage(out),
                                      sitk.GetArrayViewFromImage(lungs))
        out = segment_lesions(image, lungs, s)
        return not np.array_equal(sitk.GetArrayViewFromImage(out), labels)
    except LesionQuantError:  # no lung left at all: the label map changed too
        return True


@pytest.mark.slow
@pytest.mark.realdata
def test_each_classical_number_changes_a_label_map(cases):
    inert = [f"{path}={value!r} on {case}" for path, (value, case) in CHANGES.items()
             if not _changes(path, value, cases[case])]
    assert inert == []
