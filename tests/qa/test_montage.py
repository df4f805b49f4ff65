"""The QA montage: size, fill colours where the labels are, orientation, refusals."""

from __future__ import annotations

import io

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import CON_CENTRE_ZYX, GGO_CENTRE_ZYX, make_volume
from PIL import Image

from lesionquant.errors import GeometryError, UnsupportedDicomError
from lesionquant.qa import MONTAGE_SIZE_PX, render_montage
from lesionquant.qa._display import COLOURS, FILL_ALPHA, LUNG_WINDOW, window_uint8
from lesionquant.scan import Acquisition

NUMBERS = {"lung_ml": 2495.5, "lesion_pct": 3.25, "ggo_pct": 2.0, "consolidation_pct": 1.25}


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)


def _expected_fill(hu: float, colour: str) -> np.ndarray:
    grey = float(window_uint8(np.array([hu]), LUNG_WINDOW)[0])
    return grey * (1 - FILL_ALPHA) + _rgb(colour) * FILL_ALPHA


@pytest.fixture(scope="module")
def montage(volume):
    return render_montage(volume.ct, volume.labels, scan_id="S-test", numbers=NUMBERS)


def test_size_and_panels(montage):
    img = Image.open(io.BytesIO(montage.png))
    assert img.format == "PNG"
    assert img.size == MONTAGE_SIZE_PX
    views = [p.view for p in montage.panels]
    assert views.count("axial") >= 12
    assert views.count("coronal") == 1 and views.count("sagittal") == 2
    axial = [p.index for p in montage.panels if p.view == "axial"]
    assert axial == sorted(axial, reverse=True), "most superior slice first"
    # Evenly spread over the lung z-range (labels 1-4 span z 4..32 in the phantom).
    assert min(axial) <= 6 and max(axial) >= 30
    for p in montage.panels:
        x0, y0, x1, y1 = p.bbox_px
        assert 0 <= x0 < x1 <= MONTAGE_SIZE_PX[0] and 0 <= y0 < y1 <= MONTAGE_SIZE_PX[1]


def test_fill_colours_where_the_labels_are(montage, volume):
    """At each lesion's centre the pixel is the documented blend of grey and palette colour;
    in lesion-free lung it stays grey."""
    pix = _pixels(montage.png)
    hu = sitk.GetArrayViewFromImage(volume.ct)
    lab = sitk.GetArrayViewFromImage(volume.labels)
    checked = {3: 0, 4: 0, "lung": 0}
    for panel in (p for p in montage.panels if p.view == "axial"):
        k = panel.index
        for value, colour in ((3, COLOURS["ggo"]), (4, COLOURS["consolidation"])):
            rows, cols = np.nonzero(lab[k] == value)
            if rows.size < 20:
                continue
            r, c = int(np.median(rows)), int(np.median(cols))
            x, y = panel.to_pixel(r, c)
            got = pix[int(y), int(x)]
            want = _expected_fill(float(np.mean(hu[k][lab[k] == value])), colour)
            assert np.abs(got - want).max() < 25, (value, k, got, want)
            checked[value] += 1
        rows, cols = np.nonzero(lab[k] == 1)
        if rows.size > 50 and not (lab[k] >= 3).any():
            x, y = panel.to_pixel(int(np.median(rows)), int(np.median(cols)))
            got = pix[int(y), int(x)]
            assert got.max() - got.min() < 6, f"lesion-free lung must stay grey, got {got}"
            checked["lung"] += 1
    assert checked[3] >= 2 and checked[4] >= 2 and checked["lung"] >= 2, checked


def _fill_mask(crop: np.ndarray, colour: str) -> np.ndarray:
    """Pixels that are ``grey * (1 - a) + colour * a`` for some grey: removing the colour
    part leaves equal R, G and B."""
    rest = crop - _rgb(colour) * FILL_ALPHA
    return (rest.max(axis=-1) - rest.min(axis=-1)) < 10


def _centre_of(pix: np.ndarray, panel, colour: str) -> tuple[float, float]:
    """Centre of a fill colour in a panel, as fractions of the panel width and height."""
    x0, y0, x1, y1 = (round(v) for v in panel.bbox_px)
    ys, xs = np.nonzero(_fill_mask(pix[y0:y1, x0:x1], colour))
    assert xs.size > 10, f"no {colour} fill in {panel.view} #{panel.index}"
    return xs.mean() / (x1 - x0), ys.mean() / (y1 - y0)


def _nearest_axial(montage, k: int):
    return min((p for p in montage.panels if p.view == "axial"), key=lambda p: abs(p.index - k))


def test_orientation_right_lung_left_superior_up(montage):
    """GGO sits in the upper right lung, consolidation in the lower left lung (phantom)."""
    pix = _pixels(montage.png)
    ggo, con = COLOURS["ggo"], COLOURS["consolidation"]
    sag_right, sag_left = (p for p in montage.panels if p.view == "sagittal")
    fx, fy = _centre_of(pix, sag_right, ggo)
    assert fy < 0.5, "superior up: the upper-lobe GGO is in the upper half of the sagittal"
    assert fx > 0.5, "anterior left: the posterior GGO (y 32 > 27) is in the right half"
    _, fy = _centre_of(pix, sag_left, con)
    assert fy > 0.5, "the lower-lobe consolidation is in the lower half of the sagittal"
    fx, _ = _centre_of(pix, _nearest_axial(montage, GGO_CENTRE_ZYX[0]), ggo)
    assert fx < 0.5, "right lung on the image left"
    fx, _ = _centre_of(pix, _nearest_axial(montage, CON_CENTRE_ZYX[0]), con)
    assert fx > 0.5, "left lung on the image right"


def test_flipped_direction_renders_the_same(volume, montage):
    """An image stored with flipped axes (e.g. from RAS NIfTI) is reoriented for display."""
    flipped_ct = sitk.Flip(volume.ct, [True, True, False])
    flipped_lab = sitk.Flip(volume.labels, [True, True, False])
    assert flipped_ct.GetDirection()[0] == -1
    again = render_montage(flipped_ct, flipped_lab, scan_id="S-test", numbers=NUMBERS)
    assert [p.index for p in again.panels] == [p.index for p in montage.panels]
    assert np.abs(_pixels(again.png) - _pixels(montage.png)).mean() < 0.5


@pytest.mark.parametrize("acq", [
    Acquisition(modality="CT", image_type=("DERIVED", "SECONDARY", "SCREENSHOT")),
    Acquisition(modality="CT", image_type=("ORIGINAL", "SECONDARY", "AXIAL")),
    Acquisition(modality="OT", image_type=()),
])
def test_derived_and_secondary_capture_refused(volume, acq):
    with pytest.raises(UnsupportedDicomError, match="derived or secondary-capture"):
        render_montage(volume.ct, volume.labels, scan_id="S-x", acquisition=acq)


def test_original_ct_accepted(volume):
    acq = Acquisition(modality="CT", image_type=("ORIGINAL", "PRIMARY", "AXIAL"))
    m = render_montage(volume.ct, volume.labels, scan_id="S-x", acquisition=acq, n_axial=12)
    assert sum(p.view == "axial" for p in m.panels) == 12


def test_labels_off_grid_refused(volume):
    small = sitk.Shrink(volume.labels, [2, 2, 1])
    with pytest.raises(GeometryError, match="does not match the CT grid"):
        render_montage(volume.ct, small, scan_id="S-x")


def test_single_slice_and_no_lesion():
    vol = make_volume(lesion_scale=0.0)
    one_ct, one_lab = vol.ct[:, :, 18:19], vol.labels[:, :, 18:19]
    m = render_montage(one_ct, one_lab, scan_id="S-one")
    assert [p.view for p in m.panels] == ["axial"]
    assert Image.open(io.BytesIO(m.png)).size == MONTAGE_SIZE_PX
    pix = _pixels(m.png)
    assert _fill_mask(pix, COLOURS["ggo"]).sum() == 0, "no lesion, no fill"
    assert _fill_mask(pix, COLOURS["consolidation"]).sum() < 5


@pytest.mark.realdata
def test_real_copd_scan_with_cip_lung_mask(chest_dir):
    """The real COPD CT with its CIP lung mask (split at the midline) and no lesion."""
    d = chest_dir / "cip-copd-chest-ct-64"
    ct = sitk.ReadImage(str(d / "ct.nii.gz"))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "lung_mask.nii.gz"))) > 0
    lab = np.zeros(mask.shape, np.uint8)
    lab[:, :, :32][mask[:, :, :32]] = 1
    lab[:, :, 32:][mask[:, :, 32:]] = 2
    labels = sitk.GetImageFromArray(lab)
    labels.CopyInformation(ct)
    m = render_montage(ct, labels, scan_id="S-copd", numbers={"lung_ml": 5100.0})
    assert Image.open(io.BytesIO(m.png)).size == MONTAGE_SIZE_PX
    assert sum(p.view == "axial" for p in m.panels) == 16
    # The lung contour colour is drawn (thin line) on every axial tile with lung.
    pix = _pixels(m.png)
    lung = _rgb(COLOURS["lung"])
    for p in (q for q in m.panels if q.view == "axial"):
        x0, y0, x1, y1 = (int(v) for v in p.bbox_px)
        near = np.all(np.abs(pix[y0:y1, x0:x1] - lung) < 40, axis=-1)
        assert near.sum() > 20, f"no lung contour on axial #{p.index}"
