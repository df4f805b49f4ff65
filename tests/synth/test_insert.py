"""insert_lesions: exact truth, density bands, vessels kept, lung only, real CTs, refusal."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lesionquant.errors import GeometryError, NoLungError
from lesionquant.synth import insert_lesions


def _lungs_only(labels: sitk.Image) -> sitk.Image:
    arr = sitk.GetArrayFromImage(labels)
    out = sitk.GetImageFromArray(np.where((arr == 1) | (arr == 2), arr, 0).astype(np.uint8))
    out.CopyInformation(labels)
    return out


def _check_insertion(image, mask, ins, *, pct):
    host = sitk.GetArrayFromImage(image).astype(float)
    new = sitk.GetArrayFromImage(ins.image).astype(float)
    lab = sitk.GetArrayFromImage(ins.labels)
    lung = sitk.GetArrayFromImage(mask) > 0
    vox_ml = np.prod(image.GetSpacing()) / 1000.0
    # exact truth: volumes are label counts
    assert ins.ggo_ml == pytest.approx((lab == 3).sum() * vox_ml, abs=1e-9)
    assert ins.consolidation_ml == pytest.approx((lab == 4).sum() * vox_ml, abs=1e-9)
    assert ins.lesion_ml == pytest.approx(ins.ggo_ml + ins.consolidation_ml)
    assert ins.lung_ml == pytest.approx(lung.sum() * vox_ml)
    assert ins.lesion_pct == pytest.approx(pct, abs=0.05)
    # lesions only inside the lung mask; lung labels kept elsewhere
    lesion = (lab == 3) | (lab == 4)
    assert not (lesion & ~lung).any()
    assert np.array_equal(lab[~lesion], sitk.GetArrayFromImage(mask)[~lesion])
    # nothing outside the lesions changed
    assert np.array_equal(new[~lesion & (lab == 0)], host[~lesion & (lab == 0)])
    # GGO: aerated lung raised into the GGO band; vessels (host > -300) stay above it
    ggo = lab == 3
    par = ggo & (host < -750)
    # at least the smallest GGO fill (0.10 of the air replaced by tissue at 40 HU) on
    # the median voxel; the mean fill is 0.30, but one slice may hold few patches
    lift = new[par] - host[par]
    assert np.median(lift) > 0.10 * np.median(40.0 - host[par])
    assert np.median(new[par]) > np.median(host[par]) + 100
    assert np.mean((new[par] >= -800) & (new[par] <= -250)) > 0.85
    ves = ggo & (host > -200)
    if ves.sum() > 20:
        assert np.mean(new[ves] > -300) > 0.98
    cons = lab == 4
    assert -150 < np.median(new[cons]) < 100
    assert image.GetSize() == ins.image.GetSize()
    assert image.GetPixelID() == ins.image.GetPixelID()
    assert ins.image.GetOrigin() == image.GetOrigin()
    assert ins.labels.GetPixelID() == sitk.sitkUInt8


def test_insert_into_phantom_exact_and_in_bands(healthy):
    mask = _lungs_only(healthy.labels)
    ins = insert_lesions(healthy.image, mask, seed=4, target_lesion_pct=20.0, ggo_fraction=0.7)
    _check_insertion(healthy.image, mask, ins, pct=20.0)
    assert ins.ggo_ml / ins.lesion_ml == pytest.approx(0.7, abs=0.01)
    # matched noise: the estimate is close to the phantom's true noise level
    assert ins.host_noise_hu == pytest.approx(healthy.noise_hu, rel=0.35)


def test_insert_is_deterministic_and_seeded(healthy):
    mask = _lungs_only(healthy.labels)
    a = insert_lesions(healthy.image, mask, seed=7, target_lesion_pct=5.0)
    b = insert_lesions(healthy.image, mask, seed=7, target_lesion_pct=5.0)
    c = insert_lesions(healthy.image, mask, seed=8, target_lesion_pct=5.0)
    assert np.array_equal(sitk.GetArrayFromImage(a.image), sitk.GetArrayFromImage(b.image))
    assert np.array_equal(sitk.GetArrayFromImage(a.labels), sitk.GetArrayFromImage(b.labels))
    assert not np.array_equal(sitk.GetArrayFromImage(a.labels), sitk.GetArrayFromImage(c.labels))


@pytest.mark.parametrize("opts", [dict(crazy_paving=True), dict(consolidation_in_ggo=False),
                                  dict(ggo_fraction=1.0), dict(ggo_fraction=0.0)])
def test_patterns(healthy, opts):
    mask = _lungs_only(healthy.labels)
    ins = insert_lesions(healthy.image, mask, seed=1, target_lesion_pct=10.0, **opts)
    if opts.get("ggo_fraction") == 1.0:
        assert ins.consolidation_ml == 0.0
    elif opts.get("ggo_fraction") == 0.0:
        assert ins.ggo_ml == 0.0
    else:
        _check_insertion(healthy.image, mask, ins, pct=10.0)


def test_zero_burden_changes_nothing(healthy):
    mask = _lungs_only(healthy.labels)
    ins = insert_lesions(healthy.image, mask, seed=1, target_lesion_pct=0.0)
    assert ins.lesion_ml == 0.0
    assert np.array_equal(sitk.GetArrayFromImage(ins.image),
                          sitk.GetArrayFromImage(healthy.image))


def test_refuses_empty_mask_and_wrong_grid(healthy):
    empty = sitk.Image(healthy.image.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(healthy.image)
    with pytest.raises(NoLungError, match="too little lung"):
        insert_lesions(healthy.image, empty)
    shifted = _lungs_only(healthy.labels)
    shifted.SetOrigin((1.0, 2.0, 3.0))
    with pytest.raises(GeometryError):
        insert_lesions(healthy.image, shifted)


# ---- real CTs ----------------------------------------------------------------------------


def _split_by_midline(mask: sitk.Image) -> sitk.Image:
    """CIP whole-lung mask (0/1) -> 1 right / 2 left, split at the mask's mean x (LPS)."""
    arr = sitk.GetArrayFromImage(mask) > 0
    xs = np.nonzero(arr)[2]
    mid = xs.mean()
    lab = np.zeros(arr.shape, np.uint8)
    col = np.arange(arr.shape[2])[None, None, :]
    # identity direction: low x index = patient right
    lab[arr & (col < mid)] = 1
    lab[arr & (col >= mid)] = 2
    out = sitk.GetImageFromArray(lab)
    out.CopyInformation(mask)
    return out


REAL = ["cip-copd-chest-ct-64/ct.nii.gz", "totalseg-aorta-chest-ct/ct.nii.gz",
        "cip-copd-chest-ct-crop-2slices/ct.nii.gz", "lungmask-chest-ct-dicom-slice"]


@pytest.mark.realdata
@pytest.mark.parametrize("case", REAL)
def test_insert_into_every_real_chest_ct(chest_dir, case):
    from lesionquant.io import load_scan
    from lesionquant.segment import segment_lungs

    image = load_scan(chest_dir / case).image
    if case.startswith("cip-copd-chest-ct-64"):
        mask = sitk.ReadImage(str(chest_dir / "cip-copd-chest-ct-64/lung_mask.nii.gz"))
        mask.CopyInformation(image)
        mask = _split_by_midline(mask)
    else:
        mask = segment_lungs(image)
    ins = insert_lesions(image, mask, seed=2, target_lesion_pct=15.0, ggo_fraction=0.7)
    _check_insertion(image, mask, ins, pct=15.0)
    host = sitk.GetArrayFromImage(image)
    lab = sitk.GetArrayFromImage(ins.labels)
    # landed in lung (aerated, or dependent dense lung), not in soft tissue, bone or air
    under = host[(lab == 3) | (lab == 4)]
    assert np.mean(under < -300) > 0.7
    assert np.mean(under > 100) < 0.05
    assert ins.host_noise_hu > 3


@pytest.mark.realdata
def test_refuses_abdomen_without_lungs(chest_dir):
    from lesionquant.io import load_scan
    from lesionquant.segment import segment_lungs

    image = load_scan(chest_dir / "totalseg-abdomen-ct-no-lungs/ct.nii.gz").image
    with pytest.raises(NoLungError):
        # the segmenter may refuse itself; if it returns bowel gas / a sliver of lung
        # base, the insertion refuses (lung < 5 % of the scanned body)
        insert_lesions(image, segment_lungs(image), seed=0, target_lesion_pct=10.0)


def test_float_and_reoriented_hosts(healthy):
    """Pixel type is kept; a mirrored (RAI-like) host still gets dorsal-biased lesions."""
    mask = _lungs_only(healthy.labels)
    as_float = sitk.Cast(healthy.image, sitk.sitkFloat32)
    ins = insert_lesions(as_float, mask, seed=3, target_lesion_pct=8.0)
    assert ins.image.GetPixelID() == sitk.sitkFloat32
    assert ins.lesion_pct == pytest.approx(8.0, abs=0.05)
    # the same patient stored with y flipped (anterior at high index, direction -1)
    arr = sitk.GetArrayFromImage(healthy.image)[:, ::-1, :]
    marr = sitk.GetArrayFromImage(mask)[:, ::-1, :]
    flipped, fmask = sitk.GetImageFromArray(arr.copy()), sitk.GetImageFromArray(marr.copy())
    for im in (flipped, fmask):
        im.SetSpacing(healthy.image.GetSpacing())
        origin = list(healthy.image.GetOrigin())
        origin[1] += (arr.shape[1] - 1) * healthy.image.GetSpacing()[1]
        im.SetOrigin(origin)
        im.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))
    post = []
    for seed in range(3):
        out = insert_lesions(flipped, fmask, seed=seed, target_lesion_pct=10.0)
        lab = sitk.GetArrayFromImage(out.labels)
        ly = np.nonzero((lab == 3) | (lab == 4))[1].mean()
        lung_y = np.nonzero(marr > 0)[1].mean()
        post.append(lung_y - ly)  # posterior is LOW y index here
    assert np.mean(post) > 0
