"""The training code in ``models/``: second phases (init, real lesion-free slices,
coarse-pixel augmentation), pseudo labels, consistency training, and the unlabelled
COVID-19 slices."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage as ndi

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
try:
    from models import data as D
    from models.train import (
        consistency_loss,
        pseudo_label,
        train,
        unlabelled_views,
    )
finally:
    sys.path.remove(str(REPO))

from lesionquant.segment.model import LesionNet, normalise_hu  # noqa: E402


@pytest.fixture(scope="module")
def phantom():
    from lesionquant.synth import make_phantom

    return make_phantom(size_xyz=(64, 64, 24), spacing_mm=(2.2, 2.2, 5.0), seed=3,
                        lesion_burden_pct=15.0)


def _slices(phantom) -> list:
    hu = sitk.GetArrayFromImage(phantom.image).astype(np.float32)
    lung, lesion = D.targets(sitk.GetArrayFromImage(phantom.labels))
    return [D.Slice(f"p{z}", hu[z], lung[z], lesion[z], 2.2, "synth") for z in (8, 12, 16)]


def test_second_phase_starts_from_its_init_and_resumes_exactly(tmp_path, phantom):
    slices = _slices(phantom)
    real = [D.Slice(s.name, s.hu, s.lung, np.zeros_like(s.lesion), s.mm, "synth")
            for s in slices]
    kw = dict(fold=-1, crop=32, base=4, medseg_per_batch=0, synth_per_batch=1,
              ckpt_every=1, threads=1, synth=slices, medseg=[])
    train(tmp_path / "p1", steps=2, **kw)
    init = tmp_path / "p1" / "ckpt.pt"
    kw2 = dict(kw, steps=3, init=init, real=real, real_per_batch=1, coarse=1.0, lr=1e-3)
    full = train(tmp_path / "a", **kw2)
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["init"] == str(init) and meta["n_real"] == 3 and meta["coarse"] == 1.0
    # the first step moved away from the init weights, not from a fresh network
    start = torch.load(init, weights_only=True)["model"]
    fresh = LesionNet(base=4).state_dict()
    k = "enc.0.0.weight" if "enc.0.0.weight" in start else next(iter(start))
    got = full.state_dict()[k]
    assert (got - start[k]).abs().mean() < (got - fresh[k]).abs().mean()
    train(tmp_path / "b", stop_after=1, **kw2)
    resumed = train(tmp_path / "b", **kw2)
    sa, sb = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(sa[n], sb[n]) for n in sa)


def _unlabelled(phantom) -> list:
    """The phantom slices of :func:`_slices` without labels, as the unlabelled slices."""
    out = []
    for s in _slices(phantom):
        unk = np.full_like(s.lung, D.UNKNOWN)
        out.append(D.Slice(s.name, s.hu, unk, unk.copy(), s.mm, "unlabelled"))
    return out


def test_pseudo_labels_keep_only_confident_pixels(phantom):
    torch.manual_seed(0)
    net = LesionNet(base=4).eval()
    s = _slices(phantom)[1]
    unl = _unlabelled(phantom)[1]
    every = pseudo_label(net, [unl], 0.0)[0].lesion
    none = pseudo_label(net, [unl], 1.01)[0].lesion
    some = pseudo_label(net, [unl], 0.5)[0].lesion
    assert every.shape == s.hu.shape and set(np.unique(every)) <= {0, 1, 2}
    assert (none == D.UNKNOWN).all()
    known = some != D.UNKNOWN
    assert (some[known] == every[known]).all()  # the same class where confident


def test_consistency_loss_counts_confident_pixels_over_all_pixels_inside():
    """FixMatch's mean: cross-entropy against the teacher's class on its confident
    pixels only, divided by every pixel inside the images."""
    teacher = torch.zeros(1, 3, 2, 2)
    teacher[0, 1, 0, 0] = 10.0  # one pixel surely GGO, the other three 1/3 each
    student = torch.zeros(1, 3, 2, 2)  # uniform: cross-entropy log 3 on every pixel
    valid = torch.ones(1, 2, 2, dtype=torch.bool)
    loss, frac = consistency_loss(student, teacher, valid, 0.9)
    assert frac == 0.25 and loss.item() == pytest.approx(math.log(3) / 4)
    loss, frac = consistency_loss(student, teacher, valid, 0.3)  # every pixel confident
    assert frac == 1.0 and loss.item() == pytest.approx(math.log(3))
    valid[0, 0, 0] = False  # the confident pixel outside the image: nothing left
    loss, frac = consistency_loss(student, teacher, valid, 0.9)
    assert frac == 0.0 and loss.item() == 0.0


def test_the_two_views_of_an_unlabelled_slice_share_their_pixels(phantom):
    """Weak and strong view: the same warp (the teacher's label of a pixel is the
    student's target at that pixel), the strong one's intensity changed; pixels outside
    the image marked invalid and -1024 HU in the weak view."""
    pool = _unlabelled(phantom)
    weak, strong, valid = unlabelled_views(pool, 4, 128, np.random.default_rng(1))
    assert weak.shape == strong.shape == (4, 1, 128, 128) and valid.shape == (4, 128, 128)
    assert valid.dtype == torch.bool and 0 < valid.float().mean() < 1  # 192 mm > 141 mm
    w, s = weak[:, 0][valid], strong[:, 0][valid]
    assert not torch.equal(w, s)
    assert np.corrcoef(w.numpy(), s.numpy())[0, 1] > 0.8
    outside = normalise_hu(torch.tensor(-1024.0))
    assert torch.allclose(weak[:, 0][~valid], outside.expand((~valid).sum()))
    again = unlabelled_views(pool, 4, 128, np.random.default_rng(1))
    assert all(torch.equal(a, b) for a, b in zip((weak, strong, valid), again, strict=True))


def test_consistency_training_resumes_exactly_teacher_included(tmp_path, phantom):
    slices = _slices(phantom)
    kw = dict(fold=-1, steps=3, crop=32, base=4, medseg_per_batch=0, synth_per_batch=1,
              ckpt_every=1, threads=1, synth=slices, medseg=[], consistency=2,
              consistency_conf=0.0, consistency_ramp=(0, 1), unlabelled=_unlabelled(phantom))
    full = train(tmp_path / "a", **kw)
    train(tmp_path / "b", stop_after=1, **kw)
    resumed = train(tmp_path / "b", **kw)
    sa, sb = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(sa[n], sb[n]) for n in sa)
    ta, tb = (torch.load(tmp_path / r / "ckpt.pt", weights_only=True)["ema"] for r in "ab")
    assert all(torch.equal(ta[n], tb[n]) for n in ta)
    assert any(not torch.equal(ta[n], sa[n]) for n in ta)  # a moving average, not a copy
    log = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["u_conf"] for r in log] == [1.0, 1.0, 1.0]  # conf 0: every pixel inside
    assert all(math.isfinite(r["u_loss"]) and r["u_loss"] > 0 for r in log)
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["consistency"] == 2 and meta["ema"] == 0.99
    assert meta["env"]["torch"] == torch.__version__ and meta["env"]["cpu_capability"]


@pytest.mark.realdata
def test_unlabelled_slices_are_upright_and_in_hu(data_root):
    """The 1600 unlabelled slices: 20 volumes, each mapped by its own window (normal lung
    near -860 HU) and turned upright (the spine in the posterior half, in the middle)."""
    slices = D.load_unlabelled()
    assert len(slices) == 1600
    vols: dict[str, list] = {}
    for s in slices:
        vols.setdefault(s.name.rsplit("_", 1)[0], []).append(s)
    assert len(vols) == 20
    for name, ss in vols.items():
        hu = ss[len(ss) // 2].hu
        assert -1000 <= np.percentile(hu, 10) <= -750, name  # W1500 fallback: -450
        rows, cols = np.nonzero(hu >= np.percentile(hu, 99))  # bone, or the densest tissue
        assert rows.mean() > 0.5 * hu.shape[0], name  # the spine posterior
        assert abs(cols.mean() - hu.shape[1] / 2) < 0.15 * hu.shape[1], name


def test_export_of_a_pair_loads_as_its_two_networks(tmp_path, phantom, monkeypatch):
    """``models.export --lesion-run``: the file holds the lung run's network and the lesion
    run's network; loaded back (sha256 checked), it gives the first one's lungs and the
    second one's lesions. An unfinished run is refused."""
    sys.path.insert(0, str(REPO))
    try:
        from models import export as E
    finally:
        sys.path.remove(str(REPO))
    from lesionquant.segment.model import _weights
    from lesionquant.segment.model._infer import predict_labels
    from lesionquant.segment.model._net import NetEnsemble, NetPair

    slices = _slices(phantom)
    kw = dict(fold=-1, steps=2, crop=32, base=4, medseg_per_batch=0, synth_per_batch=1,
              ckpt_every=1, threads=1, synth=slices, medseg=[])
    lung_net = train(tmp_path / "lungs", **kw)
    les_net = train(tmp_path / "lesions", **dict(kw, seed=5))
    monkeypatch.setattr(E, "WEIGHTS", tmp_path / "w")
    digest = E.export(tmp_path / "lungs", "pair-test", "test", [tmp_path / "lesions"])
    monkeypatch.setattr(_weights, "_folder", lambda: tmp_path / "w")
    _weights._load.cache_clear()
    try:
        model = _weights.load_model("cpu", "pair-test")
    finally:
        _weights._load.cache_clear()
    assert model.sha256 == digest and isinstance(model.net, NetPair)
    assert model.cons_bias == 0.0
    x = torch.from_numpy(np.stack([s.hu for s in slices]))[:, None]
    with torch.inference_mode():
        lung, les = model.net(normalise_hu(x))
        a, b = lung_net.eval()(normalise_hu(x)), les_net.eval()(normalise_hu(x))
    assert torch.equal(lung, a[0]) and torch.equal(les, b[1])
    assert not torch.equal(les, a[1])  # the lesions are not the lung run's
    labels = predict_labels(model.net, x[:, 0].numpy(), (2.2, 2.2))
    assert labels[0].shape == labels[1].shape == x[:, 0].shape
    train(tmp_path / "half", stop_after=1, **dict(kw, steps=3))
    with pytest.raises(SystemExit, match="not finished"):
        E.export(tmp_path / "half", "x", "x")

    # several lesion runs: the lesions of their ensemble, loaded back from the file alone
    les2 = train(tmp_path / "lesions2", **dict(kw, seed=6))
    digest = E.export(tmp_path / "lungs", "ens-test", "test",
                      [tmp_path / "lesions", tmp_path / "lesions2"], cons_bias=0.75)
    _weights._load.cache_clear()
    try:
        model = _weights.load_model("cpu", "ens-test")
    finally:
        _weights._load.cache_clear()
    assert model.sha256 == digest and isinstance(model.net.lesions, NetEnsemble)
    assert model.cons_bias == 0.75  # stored in the file, under its sha256
    with torch.inference_mode():
        lung, les = model.net(normalise_hu(x))
        c = les2.eval()(normalise_hu(x))
    mean = (b[1].softmax(1) + c[1].softmax(1)) / 2
    assert torch.equal(lung, a[0]) and torch.allclose(les.exp(), mean, atol=1e-5)
    _, les_labels = predict_labels(model.net.lesions, x[:, 0].numpy(), (2.2, 2.2),
                                   parts=("lesions",))
    assert les_labels.shape == x[:, 0].shape
    with pytest.raises(SystemExit, match="not finished"):
        E.export(tmp_path / "lungs", "x", "x", [tmp_path / "lesions", tmp_path / "half"])


def test_export_puts_the_shipped_lung_network_beside_a_lesion_run(tmp_path, phantom,
                                                                 monkeypatch):
    """``models.export shipped --lesion-run R``: the pair's lungs are the shipped weights'
    lung network, byte for byte, and the file says so (a machine without the lung
    network's runs can still export and judge a lesion network)."""
    sys.path.insert(0, str(REPO))
    try:
        from models import export as E
    finally:
        sys.path.remove(str(REPO))
    kw = dict(fold=-1, steps=2, crop=32, base=4, medseg_per_batch=0, synth_per_batch=1,
              ckpt_every=1, threads=1, synth=_slices(phantom), medseg=[])
    train(tmp_path / "lesions", **kw)
    monkeypatch.setattr(E, "WEIGHTS", tmp_path / "w")
    E.export(Path(E.SHIPPED), "shipped-pair", "test", [tmp_path / "lesions"])
    blob = torch.load(tmp_path / "w" / "shipped_pair.pt", weights_only=True)
    lungs, origin = E.shipped_lungs()
    for name, v in lungs.state_dict().items():
        assert torch.equal(blob["state_dict"][f"lungs.{name}"], v)
    assert json.loads(blob["meta"])["lungs"]["sha256"] == origin["sha256"]
    assert blob["config"]["lesions"]["base"] == 4


def test_the_mean_softmax_ensemble_averages_probabilities():
    """:class:`NetEnsemble`: the ensemble of a network with itself gives that network's
    log-softmax; of two networks, the log of their mean probabilities (so the argmax
    follows the more confident one where they disagree); its config builds it again;
    members of different pixel sizes are refused."""
    from lesionquant.segment.model._net import NetEnsemble as MeanSoftmax
    from lesionquant.segment.model._net import build_net

    torch.manual_seed(0)
    a, b = LesionNet(base=4).eval(), LesionNet(base=4).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        same = MeanSoftmax([a, a])(x)
        both = MeanSoftmax([a, b])(x)
        oa, ob = a(x), b(x)
    assert MeanSoftmax([a, b]).multiple == a.multiple
    assert MeanSoftmax([a, b]).spacing_mm == a.spacing_mm  # predict_labels resamples to it
    with pytest.raises(ValueError, match="different pixel sizes"):
        MeanSoftmax([a, LesionNet(base=4, spacing_mm=1.0)])
    again = build_net(MeanSoftmax([a, b]).config)
    again.load_state_dict(MeanSoftmax([a, b]).state_dict())
    with torch.no_grad():
        assert all(torch.equal(u, v) for u, v in zip(again.eval()(x), both, strict=True))
    for i in range(2):
        assert torch.allclose(same[i], oa[i].log_softmax(1), atol=1e-5)
        mean = (oa[i].softmax(1) + ob[i].softmax(1)) / 2
        assert torch.allclose(both[i].exp(), mean, atol=1e-5)


def test_the_per_slice_dice_counts_each_slice_once():
    """``_soft_dice(per_slice=True)``: a small lesion missed costs as much as a large one,
    slices without the class do not count; over the batch the large lesion dominates."""
    from models.train import _soft_dice

    target = torch.zeros(3, 1, 32, 32)
    target[0, 0, :20, :20] = 1  # a large lesion, found
    target[1, 0, :2, :2] = 1  # a small lesion, missed
    prob = target.clone()
    prob[1] = 0  # slice 2 holds no lesion and none is predicted
    valid = torch.ones(3, 32, 32, dtype=torch.bool)
    per_slice = float(_soft_dice(prob, target, valid, per_slice=True))
    batch = float(_soft_dice(prob, target, valid))
    assert per_slice == pytest.approx(0.5 * (1 - 1 / 5), abs=1e-6)  # (0 + 0.8) / 2
    assert batch < 0.02
    assert float(_soft_dice(target, target, valid, per_slice=True)) == pytest.approx(0.0)


def _two_lungs() -> tuple:
    """An upright 1 mm slice: two elliptic lungs (-850 HU) in soft tissue (40 HU), outside
    air in front of the chest, a labelled GGO patch in the right lung; (hu, lungs, lesion,
    row and column grids)."""
    hu = np.full((200, 240), 40.0, np.float32)  # soft tissue
    hu[:12] = -1000.0  # air in front of the chest (outside the body)
    yy, xx = np.mgrid[:200, :240]
    lungs = np.zeros(hu.shape, bool)
    for cx in (65, 175):
        lungs |= ((yy - 100) / 70.0) ** 2 + ((xx - cx) / 45.0) ** 2 <= 1
    hu[lungs] = -850.0
    lesion = np.zeros(hu.shape, np.uint8)
    lesion[100:110, 60:70] = 1
    return hu, lungs, lesion, yy, xx


def test_the_dependent_density_band_lies_along_the_posterior_pleura():
    """``_dependent_density``: 100-400 HU at the dependent (posterior, high-row) edge of
    each lung, nothing in the anterior half or outside the lungs, outside air untouched."""
    from models.train import _band_geometry, _dependent_density

    hu, lungs, lesion, yy, xx = _two_lungs()
    hu[100:110, 60:70] = -500.0  # the GGO patch stays labelled (the labels are not touched)
    out = _dependent_density(hu, lesion, 1.0, np.random.default_rng(0))
    add = out - hu
    assert np.all(add[~lungs] == 0)  # not outside the lungs, not the outside air
    assert np.all(add[:100] == 0)  # not in the anterior half of either lung
    edge = add[lungs & (yy >= 160)].max()  # just inside the lowest (dependent) rows
    assert 100 <= edge <= 400
    deep = add[(yy == 140) & (xx == 65)][0]  # 30 mm above the dependent pleura
    assert deep < 0.2 * edge
    assert np.all(add >= 0)
    # training computes the geometry once a slice; the band drawn from it is the same
    geo = _band_geometry(hu, lesion, 1.0)
    assert np.array_equal(_dependent_density(hu, lesion, 1.0, np.random.default_rng(0), geo),
                          out)


def test_a_painted_consolidation_touches_the_lung_edge_and_is_labelled():
    """``_dense_consolidation``: one soft-tissue-dense blob inside a lung, touching its
    edge, labelled consolidation where painted; nothing changes outside the lungs, the
    other labels stay; a slice without lung is returned as it is."""
    from models.train import _band_geometry, _dense_consolidation

    hu, lungs, lesion, _, _ = _two_lungs()
    geo = _band_geometry(hu, lesion, 1.0)
    for seed in range(6):
        out, les = _dense_consolidation(hu, lesion, 1.0, np.random.default_rng(seed), geo)
        painted = (les == 2) & (lesion != 2)
        assert painted.any() and not (painted & ~lungs).any()
        assert np.array_equal(les[~painted], lesion[~painted])
        assert np.all(out[~lungs] == hu[~lungs])
        core = ndi.binary_erosion(painted, iterations=2)
        assert -100 <= np.median(out[core]) <= 120  # soft-tissue dense
        ring = ndi.binary_dilation(lungs, iterations=4) & ~lungs
        assert (ndi.binary_dilation(painted, iterations=4) & ring).any()  # at the edge
        area_mm2 = painted.sum()
        assert 50 <= area_mm2 <= np.pi * 35**2 * 1.8
    empty = np.full((64, 64), 40.0, np.float32)
    z = np.zeros(empty.shape, np.uint8)
    geo0 = (np.zeros(empty.shape), np.zeros(empty.shape))
    same_hu, same_les = _dense_consolidation(empty, z, 1.0, np.random.default_rng(0), geo0)
    assert same_hu is empty and same_les is z


def test_the_flip_mean_is_the_mean_of_the_slice_and_its_mirror():
    """:class:`FlipMean`: the log mean softmax of the network on the slice and on its
    mirror mirrored back (the lung head's right and left swapped), so a mirrored slice
    gives the mirrored answer with the sides swapped; its config builds it again."""
    from lesionquant.segment.model._net import FlipMean, build_net

    torch.manual_seed(1)
    net = LesionNet(base=4).eval()
    x = torch.randn(2, 1, 32, 48)
    with torch.no_grad():
        lung, lesion = FlipMean(net)(x)
        m_lung, m_lesion = FlipMean(net)(x.flip(-1))
        a, b = net(x), net(x.flip(-1))
    swap = [0, 2, 1]
    assert torch.allclose(m_lesion, lesion.flip(-1), atol=1e-6)
    assert torch.allclose(m_lung, lung.flip(-1)[:, swap], atol=1e-6)
    want = (a[1].softmax(1) + b[1].flip(-1).softmax(1)) / 2
    assert torch.allclose(lesion.exp(), want, atol=1e-5)
    want = (a[0].softmax(1) + b[0].flip(-1)[:, swap].softmax(1)) / 2
    assert torch.allclose(lung.exp(), want, atol=1e-5)
    again = build_net(FlipMean(net).config)
    again.load_state_dict(FlipMean(net).state_dict())
    with torch.no_grad():
        assert torch.equal(again.eval()(x)[1], lesion)
    assert FlipMean(net).multiple == net.multiple and FlipMean(net).spacing_mm == net.spacing_mm


def test_pasted_lesions_land_at_the_same_place_of_the_other_lungs():
    """``_paste_lesions``: a donor's lesion goes to the place of the recipient's lungs
    that corresponds by the lungs' boxes (another size, another field of view), with the
    donor's HU and class, inside the recipient's lungs only; mirrored, into the other
    lung; the recipient's own lesion and everything outside its lungs stay."""
    from models.train import _band_geometry, _paste_lesions

    hu, lungs, lesion, _, _ = _two_lungs()  # recipient: lungs box rows 30-170, cols 20-220
    hu[100:110, 60:70] = -500.0
    geo = _band_geometry(hu, lesion, 1.0)
    # donor: the same anatomy at half the size, shifted, a consolidation in its right lung
    d_hu = np.full((150, 160), 40.0, np.float32)
    d_yy, d_xx = np.mgrid[:150, :160]
    d_lungs = np.zeros(d_hu.shape, bool)
    for cx in (42, 98):
        d_lungs |= ((d_yy - 80) / 35.0) ** 2 + ((d_xx - cx) / 22.5) ** 2 <= 1
    d_hu[d_lungs] = -850.0
    d_les = np.zeros(d_hu.shape, np.uint8)
    d_les[95:105, 35:45] = 2  # lower part of the right lung (the image's left)
    d_hu[95:105, 35:45] = 20.0
    donor = D.Slice("donor", d_hu, np.full(d_hu.shape, D.UNKNOWN, np.uint8), d_les, 1.0,
                    "medseg")
    d_geo = _band_geometry(d_hu, d_les, 1.0)
    out, les = _paste_lesions(hu, lesion, geo, donor, d_geo, mirror=False)
    pasted = les == 2
    assert pasted.any() and not (pasted & ~lungs).any()
    rows, cols = np.nonzero(pasted)
    # donor box rows 45-115, cols 20-120 -> recipient rows 30-170, cols 20-220
    assert abs(rows.mean() - (30 + (100 - 45) * 2)) <= 2
    assert abs(cols.mean() - (20 + (40 - 20) * 2)) <= 2
    assert np.allclose(out[ndi.binary_erosion(pasted, iterations=2)], 20.0)
    assert np.array_equal(les[~pasted], lesion[~pasted]) and (les == 1).sum() == 100
    assert np.array_equal(out[~lungs], hu[~lungs])
    _, les_m = _paste_lesions(hu, lesion, geo, donor, d_geo, mirror=True)
    assert np.nonzero(les_m == 2)[1].mean() > 120  # the other lung


def test_hysteresis_grows_lesion_only_next_to_lesion():
    """``_lesion_classes(lesion_low=)``: pixels of lesion probability >= ``lesion_low``
    joined in-plane to the argmax's lesion become lesion (of the more probable class);
    an equally probable patch not joined to lesion, and any patch on another slice, does
    not; without it the argmax is unchanged to the bit."""
    from lesionquant.segment.model._infer import _argmax3, _lesion_classes

    x = torch.zeros(2, 3, 20, 20)
    x[:, 0] = 4.0  # none, confidently
    x[0, 1, 5:8, 5:8] = 8.0  # a GGO seed
    x[0, 1, 5:8, 8:14] = 3.5  # its faint edge: p(none) about 0.6, lesion about 0.4
    x[0, 1, 15:18, 15:18] = 3.5  # the same faint haze, not joined to lesion
    x[1, 2, 5:8, 8:14] = 3.5  # faint, under the seed but on the next slice
    base = _lesion_classes(x, 0.0)
    assert np.array_equal(base, _argmax3(x)) and base.sum() == 9
    grown = _lesion_classes(x, 0.0, lesion_low=0.3)
    assert (grown[0, 5:8, 5:14] == 1).all()
    assert grown[0, 15:18, 15:18].sum() == 0 and grown[1].sum() == 0
    assert np.array_equal(_lesion_classes(x, 0.0, lesion_low=0.45), base)  # 0.4 < 0.45
