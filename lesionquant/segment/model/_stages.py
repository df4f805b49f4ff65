"""The learned lung and lesion stages (``method="model"``).

One forward pass of a two-headed network per scan gives both the lung and the lesion
labels; the lung stage runs it and keeps the lesion labels for the lesion stage of the same
image (a cache of the last image, keyed by its voxels, geometry, device and weights). With
a network pair (:class:`~lesionquant.segment.model._net.NetPair`) each stage runs only its
own network, so the model's lungs with the classical lesions cost one network.

* Lungs: the lung head's lung pixels (either side; lesions are lung) inside the rib cage,
  without what the classical stage's tests of air call gas or outside air (stomach and
  bowel gas, the trachea, the air around the body and under the back; parts not joined
  to lung air), connected parts smaller than :data:`MIN_PART_FRACTION` of the largest
  dropped, split into right and left as the classical stage splits its lungs.
* Lesions: the lesion head's lesion pixels inside the lungs (a network pair's lesion
  network runs only on the lung's slices and, in its own grid, on the lung box widened
  by :data:`LESION_BOX_MARGIN_MM`: ``bench/probe_lesion_box.py``), split into GGO and
  consolidation by HU (``classes="hu"``: consolidation at or above the start of
  ``Settings.consolidation_hu``, the reproducible default for the endpoint) or by the
  network's own region class (``classes="learned"``: the experts' definition, air
  bronchograms inside consolidation), then lesions below ``Settings.min_lesion_volume_ml``
  dropped.
"""

from __future__ import annotations

import hashlib
import logging
import threading

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from lesionquant._hull import slice_hulls
from lesionquant.segment._common import assemble, drop_small, split_by_hu
from lesionquant.segment._grid import bbox, pad_voxels, within
from lesionquant.segment._settings import Settings
from lesionquant.segment.labels import Label

__all__ = ["MIN_PART_FRACTION", "lesion_mask_model", "model_labels", "segment_lesions_model",
           "segment_lungs_model"]

logger = logging.getLogger(__name__)

#: Lung parts (3D connected) with fewer voxels than this fraction of the largest are
#: dropped (specks in the bowel or outside the body).
MIN_PART_FRACTION = 0.02
#: Grid on which the lung parts and sides are found, mm (as the classical work grid).
SIDE_GRID_MM = 2.0
#: The rib-cage guard of the lung head (:func:`_inside_cage`): the lungs are the parts
#: of the lung head's mask holding at least ``CAGE_MIN_PART`` of the most aerated part's
#: aerated voxels (below ``AERATED_HU``); bone is above ``CAGE_BONE_HU`` and counts for
#: the cage within ``CAGE_NEAR_MM`` (3D) of those lungs (ribs, spine and sternum; not
#: the arms).
AERATED_HU = -500.0
CAGE_MIN_PART = 0.1
CAGE_BONE_HU = 300.0
CAGE_NEAR_MM = 25.0
#: A part of the lung head's mask without lung air (after :func:`_air_parts` took the
#: gas and outside air out) stays lung only when it holds at least this share of the
#: voxels of the largest aerated part (a whole consolidated lung; not the stool left of a
#: bowel loop).
AIRLESS_PART_SHARE = 0.25
#: Slices with fewer cage-bone pixels (on the side grid) than this are not guarded.
CAGE_MIN_BONE_PX = 20

#: Slices per forward pass: memory is about 60 MB per 512 x 512 slice on the CPU.
BATCH_SLICES = 8

#: On thinner slices the network runs on slices this far apart, mm, and the slices between
#: get interpolated logits (``_infer.slices_to_run``).
Z_STEP_MM = 2.0
#: The lesion network of a network pair runs only in the lung mask's box, widened in-plane
#: by this margin, mm (context for the network at the lung's edge; lesions outside the
#: lungs are dropped anyway), on the lung's slices (``bench/probe_lesion_box.py``).
LESION_BOX_MARGIN_MM = 30.0

_lock = threading.Lock()
_last: dict[str, dict[str, np.ndarray]] = {}


def _key(arr: np.ndarray, image: sitk.Image, device: str, name: str) -> str:
    h = hashlib.blake2b(np.ascontiguousarray(arr).view(np.uint8), digest_size=16)
    h.update(repr((image.GetSpacing(), image.GetOrigin(), image.GetDirection(), device,
                   name)).encode())
    return h.hexdigest()


def _orientation(image: sitk.Image) -> str:
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
        image.GetDirection())


def _lung_box(lungs: sitk.Image | None, upright: sitk.Image) -> tuple[slice, ...] | None:
    """The box (z, y, x slices of the upright grid) the lesion network runs in: the lung
    labels' box widened in-plane by :data:`LESION_BOX_MARGIN_MM` (``predict_labels(box=...)``
    runs the network on the whole run's slices and network pixels that cover it);
    ``None`` (the whole image) without lungs or with an empty mask."""
    if lungs is None:
        return None
    mask = sitk.GetArrayFromImage(sitk.DICOMOrient(lungs, "LPS"))
    mask = (mask > 0) & (mask <= 2)
    if mask.shape != upright.GetSize()[::-1] or not mask.any():
        return None
    sx, sy, sz = upright.GetSpacing()
    pad = pad_voxels(LESION_BOX_MARGIN_MM, (sz, sy, sx))
    pad[0] = 0  # the lung's slices (their logits as in the whole run, bracketing included)
    return bbox(mask, pad)


def _predict(image: sitk.Image, device: str, name: str | None, part: str,
             lungs: sitk.Image | None = None) -> tuple[sitk.Image, np.ndarray, str]:
    """(upright LPS image, labels of ``part`` on it, weights sha256); ``part`` is
    ``"lungs"`` (the lung head) or ``"lesions"`` (the lesion head).

    A :class:`~lesionquant.segment.model._net.LesionNet` gives both parts in one forward
    pass; a :class:`~lesionquant.segment.model._net.NetPair` runs only the network of the
    part asked for, the lesion network only in the box of ``lungs`` when given
    (:func:`_lung_box`; no lesion outside it). The labels of the last image are kept for
    the other stage."""
    from lesionquant.segment.model._infer import predict_labels
    from lesionquant.segment.model._net import NetPair
    from lesionquant.segment.model._weights import DEFAULT_WEIGHTS, load_model

    name = name or DEFAULT_WEIGHTS
    model = load_model(device, name)
    upright = sitk.DICOMOrient(image, "LPS")  # rows anterior->posterior, cols right->left
    hu = sitk.GetArrayViewFromImage(upright)
    pair = isinstance(model.net, NetPair)
    box = _lung_box(lungs, upright) if pair and part == "lesions" else None
    key = _key(hu, upright, device, name)
    slot = part if box is None else (part, tuple((b.start, b.stop) for b in box))
    with _lock:
        hit = _last.get(key, {}).get(slot)
    if hit is None:
        net = getattr(model.net, part) if pair else model.net
        parts = (part,) if pair else ("lungs", "lesions")
        sx, sy, sz = upright.GetSpacing()
        lung, lesion = predict_labels(net, hu, (sy, sx), device=device,
                                      batch=BATCH_SLICES, spacing_z_mm=sz,
                                      z_step_mm=Z_STEP_MM, parts=parts, box=box,
                                      cons_bias=model.cons_bias,
                                      lesion_low=model.lesion_low)
        both = {"lungs": lung, "lesions": lesion}
        new = {p: both[p] for p in parts} if box is None else {slot: lesion}
        with _lock:
            entry = _last.get(key, {})
            _last.clear()  # the last image only
            _last[key] = {**entry, **new}
        hit = new[slot]
    return upright, hit, model.sha256


def _back(arr: np.ndarray, upright: sitk.Image, image: sitk.Image) -> np.ndarray:
    """An array of the upright grid in ``image``'s index order."""
    code = _orientation(image)
    if code == "LPS":
        return arr
    im = sitk.GetImageFromArray(arr)
    im.CopyInformation(upright)
    return sitk.GetArrayFromImage(sitk.DICOMOrient(im, code))


def model_labels(image: sitk.Image, device: str = "cpu",
                 name: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Raw network labels of a scan, in the image's own index order.

    Parameters
    ----------
    image : SimpleITK.Image
        3D CT in HU.
    device : str
        Resolved device (``"cpu"`` or ``"cuda:N"``).
    name : str, optional
        Weights name (default :data:`~lesionquant.segment.model.DEFAULT_WEIGHTS`).

    Returns
    -------
    lung, lesion : (Z, Y, X) ndarray of uint8
        Lung head (0/1 right/2 left) and lesion head (0 none, 1 GGO, 2 consolidation).
    sha256 : str
        sha256 of the weights that made them.
    """
    lung, sha = _part_labels(image, device, "lungs", name)
    lesion, _ = _part_labels(image, device, "lesions", name)
    return lung, lesion, sha


def _part_labels(image: sitk.Image, device: str, part: str, name: str | None = None,
                 lungs: sitk.Image | None = None) -> tuple[np.ndarray, str]:
    """Labels of ``part`` (:func:`_predict`) in the image's own index order, and the
    weights' sha256."""
    upright, labels, sha = _predict(image, device, name, part, lungs)
    return _back(labels, upright, image), sha


def _inside_cage(mask: np.ndarray, hu: np.ndarray,
                 spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Where lung may be: per axial slice, the convex hull of the aerated parts of ``mask``
    and the bone near them (see :data:`CAGE_NEAR_MM`); everywhere on slices without such
    bone. A part of soft tissue the network took for lung outside the ribs (axillary
    fat) falls outside; a consolidated dependent lobe joined to its aerated lung lies
    inside the ribs."""
    lab, n = ndi.label(mask)
    air = np.bincount(lab.ravel(), weights=(hu < AERATED_HU).ravel(), minlength=n + 1)
    air[0] = 0
    if air.max() <= 0:
        return np.ones(mask.shape, bool)
    lungs = (air >= CAGE_MIN_PART * air.max())[lab]
    near = within(lungs, CAGE_NEAR_MM, spacing_zyx)
    bone = near & (hu > CAGE_BONE_HU)
    guarded = (bone.sum(axis=(1, 2)) >= CAGE_MIN_BONE_PX)[:, None, None]
    return slice_hulls((bone | lungs) & guarded, min_count=1) | ~guarded


def _air_parts(coarse: np.ndarray, hu: np.ndarray, step: tuple[int, int, int],
               sp: tuple[float, float, float]) -> np.ndarray:
    """The coarse lung mask ``coarse`` without what the classical stage's tests call air
    that is not lung, on block means of ``step`` voxels (``sp``: the coarse spacing, mm).

    1. Free gas (stomach and bowel gas, trachea: pure-gas pockets shelled by soft tissue,
       :func:`~lesionquant.segment.classical._free_gas.free_gas`) is taken out.
    2. The air-like parts of what is left (blocks below ``lung_threshold_hu``) are judged
       by :func:`~lesionquant.segment.classical._air.lung_components`: lung air is not
       gas (mean or most blocks below ``gas_mean_hu``), lies mostly inside the filled body
       (not the air around the body or between the back and the table), is not entirely
       above or below the largest part and holds at least :data:`MIN_PART_FRACTION` of
       its voxels.
    3. The other air-like parts are taken out; a connected part of the rest is lung when
       it holds lung air (its dense, consolidated voxels included) or, without lung air,
       when it is at least :data:`AIRLESS_PART_SHARE` of the largest part that has some.
       Without any lung air nothing is lung (the size checks then raise ``NoLungError``,
       as the classical stage does).
    """
    from lesionquant.segment._grid import block_mean
    from lesionquant.segment.classical._air import (
        CROSS,
        AirConfig,
        body_inside,
        lung_components,
    )
    from lesionquant.segment.classical._free_gas import FreeGasConfig, free_gas
    from lesionquant.segment.classical._lungs import ClassicalLungs

    cfg = ClassicalLungs()
    air_cfg = AirConfig(min_share_of_largest=MIN_PART_FRACTION)
    crop = tuple(slice(0, k) for k in coarse.shape)
    low, fov = block_mean(hu, step)
    low, fov = low[crop], fov[crop] >= 0.5
    _, inside, _ = body_inside((low >= cfg.lung_threshold_hu) & fov, fov, air_cfg)
    air = (low < cfg.lung_threshold_hu) & fov
    mask = coarse & ~free_gas(low, air & inside, sp, cfg.gas_mean_hu, FreeGasConfig())
    # the air-like parts of the mask, judged as the classical stage judges air
    lab_air, n_air = ndi.label(mask & air, structure=CROSS)
    if n_air == 0:
        return np.zeros_like(mask)
    lung_air = lung_components(lab_air, n_air, low, inside, float(np.prod(sp)) / 1000.0,
                               cfg.gas_mean_hu, air_cfg)[lab_air]
    # what is left joined to lung air is lung (its dense, consolidated part included); a
    # part without lung air stays only when large (an airless consolidated lung)
    lab, n = ndi.label(mask & ~((lab_air > 0) & ~lung_air))
    count = np.bincount(lab.ravel(), minlength=n + 1)
    aerated = np.bincount(lab.ravel(), weights=lung_air.ravel(), minlength=n + 1) > 0
    aerated[0] = False
    if not aerated.any():
        return np.zeros_like(mask)
    keep = aerated | (count >= AIRLESS_PART_SHARE * count[aerated].max())
    keep[0] = False
    return keep[lab]


def _lung_sides(lung: np.ndarray, hu: np.ndarray,
                spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Network lung mask (either side) -> 1 right / 2 left, small parts dropped.

    The sides are assigned as the classical lung stage does (the two largest parts, or
    erosion cores of joined lungs, each voxel to the nearest core), which stays right
    where the network's own side channel hesitates near the anterior junction. The parts
    and sides are found on a grid of about :data:`SIDE_GRID_MM` (every n-th voxel), and
    every voxel takes the side of its nearest coarse lung voxel: bounded time and memory
    on a 512 x 512 x 300 scan. Gas and outside air (:func:`_air_parts`) are dropped
    first, then lung outside the rib cage of what is left (:func:`_inside_cage`: outside
    air no longer widens the cage), then parts below :data:`MIN_PART_FRACTION` of the
    largest."""
    from lesionquant.segment.classical._split import SplitConfig, split_sides

    mask = lung > 0
    step = tuple(max(1, int(SIDE_GRID_MM // v)) for v in spacing_zyx)
    sub = tuple(slice(None, None, k) for k in step)
    sp = tuple(v * k for v, k in zip(spacing_zyx, step, strict=True))
    coarse = mask[sub]
    kept = _air_parts(coarse, hu, step, sp)
    kept &= _inside_cage(kept, hu[sub], sp)
    lab, n = ndi.label(kept)
    if n == 0:
        return np.zeros(lung.shape, np.uint8)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    keep = sizes >= MIN_PART_FRACTION * sizes.max()
    kept = keep[lab]
    sides = split_sides(lab, keep, kept, hu[sub] > -500, sp, SplitConfig())
    # every coarse voxel near the lungs takes the side of its nearest sided voxel (in the
    # box of the coarse mask grown by the largest distance kept below: every sided voxel
    # lies in it and every voxel that can take a side, so the nearest one is found there)
    box = bbox(coarse, pad_voxels(1.5 * max(sp), sp))
    dist, near = ndi.distance_transform_edt(sides[box] == 0, sampling=sp,
                                            return_indices=True)
    sides_all = np.zeros_like(sides)
    sides_all[box] = sides[box][tuple(near)]
    # dropped parts (gas, outside air, outside the rib cage, small) and, for the fine
    # voxels between the coarse ones, farther than a coarse voxel from kept lung
    sides_all[box][dist > 1.5 * max(sp)] = 0
    sides_all[coarse & ~kept] = 0
    idx = [np.minimum((np.arange(n_) + k // 2) // k, c - 1)
           for n_, k, c in zip(mask.shape, step, coarse.shape, strict=True)]
    return np.where(mask, sides_all[np.ix_(*idx)], 0).astype(np.uint8)


def _like(arr: np.ndarray, image: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(arr.astype(np.uint8))
    out.CopyInformation(image)
    return out


def segment_lungs_model(image: sitk.Image, settings: Settings | None = None, *,
                        device: str = "cpu") -> sitk.Image:
    """Lung labels (0 background, 1 right, 2 left) by the network; see the module notes."""
    upright, lung, _ = _predict(image, device, None, "lungs")
    hu = sitk.GetArrayViewFromImage(upright)
    sides = _lung_sides(lung, hu, upright.GetSpacing()[::-1])  # x index towards the left
    return _like(_back(sides, upright, image), image)


def lesion_mask_model(image: sitk.Image, device: str = "cpu",
                      lungs: sitk.Image | None = None) -> sitk.Image:
    """The lesion head's lesion pixels (GGO or consolidation) as a 0/1 ``sitkUInt8`` image in
    the geometry of ``image``: the learned lesion stage of the segment contract (the common
    steps then keep it inside the lungs, drop small parts and split it by HU). With
    ``lungs`` (labels 1 right, 2 left in the image's grid) a network pair's lesion network
    runs only in the lungs' widened box (:data:`LESION_BOX_MARGIN_MM`)."""
    lesion_cls, _ = _part_labels(image, device, "lesions", lungs=lungs)
    return _like((lesion_cls > 0).astype(np.uint8), image)


def segment_lesions_model(image: sitk.Image, lungs: sitk.Image,
                          settings: Settings | None = None, *, device: str = "cpu",
                          classes: str = "hu") -> sitk.Image:
    """Label map 0-4 (lungs from ``lungs``, 3 GGO, 4 consolidation) by the network.

    Parameters
    ----------
    image : SimpleITK.Image
        3D CT in HU.
    lungs : SimpleITK.Image
        Lung labels (1 right, 2 left) in the image's grid, from any lung stage.
    settings : Settings, optional
        ``consolidation_hu`` (HU split) and ``min_lesion_volume_ml``.
    device : str
        Resolved device.
    classes : {"hu", "learned"}
        How lesion pixels are split into GGO and consolidation (module notes).
    """
    if classes not in ("hu", "learned"):
        raise ValueError(f"classes must be 'hu' or 'learned', not {classes!r}")
    s = settings or Settings()
    lesion_cls, _ = _part_labels(image, device, "lesions", lungs=lungs)
    lung = sitk.GetArrayFromImage(lungs).astype(np.uint8)
    lung = np.where(lung > 2, 0, lung)  # a label map given as lungs: keep the sides only
    lesion = drop_small((lesion_cls > 0) & (lung > 0),
                        float(np.prod(image.GetSpacing())) / 1000.0, s.min_lesion_volume_ml)
    if classes == "hu":
        cls = split_by_hu(lesion, sitk.GetArrayViewFromImage(image), s)
    else:  # the network's class, as Label values
        learned = np.where(lesion_cls == 2, Label.CONSOLIDATION, Label.GGO)
        cls = np.where(lesion, learned, 0).astype(np.uint8)
    return _like(assemble(lung, cls), image)
