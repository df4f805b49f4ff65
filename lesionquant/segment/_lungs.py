"""Classical lung segmentation: right and left lung masks that keep dense lung.

The method (details and reasons in ``docs/method.md``), on an LPS-oriented copy of the
scan and a ~2 mm working grid (block means, :mod:`._grid`):

1. **Air and body.** Blocks below ``lung_threshold_hu`` are air-like; the body is the
   largest connected soft-tissue component, filled per slice. Blocks outside the field of
   view (padding -2048/-3024) are outside.
2. **Airway.** The trachea is found in the top slices as a small, pure-gas (below
   ``gas_mean_hu``), near-midline component and grown downward at that threshold (which
   stops at the lobar bronchi, where partial volume lifts the block means); when the
   growth leaks (>250 mL) a stricter threshold is tried. When it stops at the carina (the
   walls of the main bronchi lift the block means there), the main bronchi below the gap
   are joined to it. The airway, dilated by one block within the air, is removed.
3. **Components.** The remaining air splits into 3D components. Gas (mean below
   ``gas_mean_hu``, or mostly blocks below it: outside air, trachea above the carina,
   stomach and bowel gas mixed with their contents; pure-gas pockets mostly shelled by
   soft tissue, or flat gas layers floating on soft tissue under the lung base), air
   outside the filled body (table, padding; skipped for FOV-cropped scans) and small
   components (<5 % of the largest) are dropped. Lung parenchyma has a mean near -850 HU
   even with emphysema, pure gas is near -1000 HU.
4. **Left / right.** Two large components are the two lungs by their physical x (LPS:
   patient right has the lower x). One component is split by eroding it (distance
   transform, 2-20 mm) until two large cores appear and giving every voxel to its nearest
   core; when it never splits, per-slice at the body's midline.
5. **Dense lung.** Each lung is closed with a rolling ball of ``lung_closing_mm`` and
   filled per slice (holes: vessels, consolidation inside the lung), keeping only voxels
   below ``dense_lung_max_hu`` (no bone, no contrast vessels) that are not airway, gas,
   outside the body, in the other lung, in the mediastinum proxy (between the two
   lungs' medial edges, notch-tolerant, grown through soft tissue), in the hilum
   (within 20 mm of the main bronchi, 30 mm below the carina) or within 10 mm of
   free gas (the diaphragm and the stomach wall under the lung base). The aerated
   lung next to an addition tells consolidation from vessels and mediastinum: where
   little of it is normally aerated (diseased lung) the mediastinum proxy and the
   hilum do not veto, and an addition bordered almost only by normally aerated lung
   (a great vessel or the mediastinum bulging into healthy lung) is not added.
   Consolidation touching the pleura is a bite in the aerated lung and is filled back;
   pleural effusion lies outside the hull of the aerated lung (a crescent along the
   chest wall), which a closing does not reach.
6. **Full resolution.** Blocks are copied back; in the blocks on the lung boundary each
   voxel is decided at full resolution (air-like, or in a recovered dense block), so the
   surface follows the original voxels, not the 2 mm blocks. Near a gas pocket under the
   lung (the gastric fundus) dense voxels within a slice thickness are the pocket's
   partial volume with the stomach wall, not lung.
7. Scans whose largest axial lung cross-section is below ``min_lung_area_cm2`` raise
   :class:`~lesionquant.errors.NoLungError`.
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lesionquant.errors import InvalidInputError, NoLungError
from lesionquant.segment._grid import (
    PADDING_HU,
    bbox,
    block_factors,
    block_mean,
    block_upsample,
    from_lps,
    to_lps,
    within,
    within_inplane,
)
from lesionquant.settings import Settings

__all__ = ["segment_lungs"]

logger = logging.getLogger(__name__)

RIGHT, LEFT = 1, 2
_CROSS = ndimage.generate_binary_structure(3, 1)
_INPLANE = np.zeros((3, 3, 3), bool)
_INPLANE[1] = ndimage.generate_binary_structure(2, 1)
#: Full-resolution lung surface threshold: about the partial-volume midpoint between
#: aerated parenchyma (-850 HU) and what bounds the lung, a mix of muscle (+40 HU) and
#: fat (-100 HU) (-400 put the surface ~0.1 voxel outside: phantom lung volume +0.5 %,
#: COPD lung Dice vs the CIP mask 0.981 vs 0.982 at -450), HU.
_SURFACE_HU = -450.0
#: A gas pocket is free gas (not lung) when less than this share of its one-block shell
#: is air-like parenchyma: the gastric bubble under a thin diaphragm touches the lung on
#: one face only; a bulla is wrapped in parenchyma.
_FREE_GAS_PAREN = 0.5
#: Lung voxels within one slice thickness plus this of free gas (the gastric fundus under
#: the base), mm, ...
_GAS_RIM_EXTRA_MM = 1.0
#: ... at or above this HU are the gas's partial volume with the stomach wall, not lung:
#: the aerated lung there reads -900 to -800 HU (median), the ring of a 5 mm slice through
#: the fundus -700 to -620 HU, HU.
_GAS_RIM_HU = -750.0
#: Largest in-plane hole of a lung that is filled back as lung, cm^2.
_MAX_HOLE_CM2 = 10.0
#: An airway grown beyond this is leaking into the lung, mL.
_AIRWAY_MAX_ML = 250.0


def segment_lungs(image: sitk.Image, settings: Settings | None = None) -> sitk.Image:
    """Segment the right and left lungs, keeping dense (consolidated) lung.

    Parameters
    ----------
    image : SimpleITK.Image
        3D CT in HU (any orientation; spacing in mm).
    settings : Settings, optional
        Uses ``lung_threshold_hu``, ``gas_mean_hu``, ``work_spacing_mm``,
        ``lung_closing_mm``, ``dense_lung_max_hu``, ``min_lung_area_cm2``.

    Returns
    -------
    SimpleITK.Image
        ``sitkUInt8`` in the geometry of ``image``: 0 background, 1 right lung, 2 left lung.

    Raises
    ------
    NoLungError
        The scan holds no lung (or less than ``min_lung_area_cm2`` in every slice).
    InvalidInputError
        ``image`` is not a 3D scalar image.
    """
    s = settings or Settings()
    _check_image(image)
    oriented, code = to_lps(image)
    hu = sitk.GetArrayViewFromImage(oriented)
    spacing = tuple(float(v) for v in oriented.GetSpacing()[::-1])  # (z, y, x) mm
    factors = block_factors(spacing, s.work_spacing_mm)
    low, fov = block_mean(hu, factors)
    low_sp = tuple(sp * f for sp, f in zip(spacing, factors, strict=True))
    labels_low, aerated_low, excluded_low, airway_low, gas_rim_low = _lungs_lowres(
        low, fov, low_sp, s, gas_rim_mm=spacing[0] + _GAS_RIM_EXTRA_MM)
    if not labels_low.any():
        raise NoLungError("no air-filled lung found in the scan", source="segment_lungs")
    labels = _refine(labels_low, aerated_low, excluded_low, airway_low, gas_rim_low, hu,
                     factors, s)
    area_cm2 = np.count_nonzero(labels.reshape(labels.shape[0], -1), axis=1).max() * (
        spacing[1] * spacing[2] / 100.0
    )
    if area_cm2 < s.min_lung_area_cm2:
        raise NoLungError(
            f"largest axial lung cross-section is {area_cm2:.1f} cm^2, below "
            f"min_lung_area_cm2={s.min_lung_area_cm2:g}: the scan does not cover the lungs",
            source="segment_lungs",
        )
    _check_coverage(labels, spacing)
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(oriented)
    return from_lps(out, code, image)


#: A scan whose lung is smaller than this and spans less than :data:`_MIN_Z_COVERAGE` of
#: the scanned length covers only lung bases (an abdominal scan), mL.
_SMALL_LUNG_ML = 1000.0
_MIN_Z_COVERAGE = 0.25


def _check_coverage(labels: np.ndarray, spacing: tuple[float, float, float]) -> None:
    """NoLungError for abdominal scans that only graze the lung bases."""
    zs = np.flatnonzero(labels.any(axis=(1, 2)))
    volume_ml = np.count_nonzero(labels) * float(np.prod(spacing)) / 1000.0
    coverage = (zs[-1] - zs[0] + 1) / labels.shape[0]
    if volume_ml < _SMALL_LUNG_ML and coverage < _MIN_Z_COVERAGE:
        raise NoLungError(
            f"only {volume_ml:.0f} mL of lung in {100 * coverage:.0f} % of the scanned length "
            "(lung bases of an abdominal scan?): the scan does not cover the lungs",
            source="segment_lungs",
        )


def _check_image(image: sitk.Image) -> None:
    if not isinstance(image, sitk.Image):
        raise TypeError(f"image must be a SimpleITK.Image, not {type(image).__name__}")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidInputError(
            f"expected a 3D scalar CT image, got {image.GetDimension()}D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s)",
            source="segment_lungs",
        )


# ----------------------------------------------------------------------------- low res


def _lungs_lowres(
    low: np.ndarray, fov: np.ndarray, sp: tuple[float, float, float], s: Settings,
    gas_rim_mm: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lung labels on the working grid, plus the aerated part, the excluded air, the
    airway and free-gas lumen blocks, and the lung blocks within ``gas_rim_mm`` of free
    gas (:func:`_refine` takes their dense voxels out)."""
    voxel_ml = float(np.prod(sp)) / 1000.0
    outside = fov < 0.5
    air = (low < s.lung_threshold_hu) & ~outside
    tissue = ~air & ~outside
    body = _largest_component(tissue)
    body_filled = ndimage.binary_fill_holes(body, structure=_INPLANE)
    cropped = _is_cropped(body)
    inside = ~outside if cropped else body_filled
    airway = _airway(low, air & inside, sp, s)
    free_gas = _free_gas(low, air & ~airway, sp, s)

    cand = air & ~airway & ~free_gas
    lab, n = ndimage.label(cand, structure=_CROSS)
    if n == 0:
        empty = np.zeros(low.shape, bool)
        return np.zeros(low.shape, np.uint8), empty, empty, empty, empty
    idx = lab.ravel()
    count = np.bincount(idx, minlength=n + 1).astype(np.float64)
    mean = np.bincount(idx, weights=low.ravel(), minlength=n + 1) / np.maximum(count, 1)
    in_body = np.bincount(idx, weights=inside.ravel(), minlength=n + 1) / np.maximum(count, 1)
    gas_frac = np.bincount(idx, weights=(low < s.gas_mean_hu).ravel(), minlength=n + 1)
    gas_frac /= np.maximum(count, 1)
    # Mostly pure gas (bowel gas with stool, stomach): lung parenchyma, even emphysematous,
    # has most of its blocks above the gas threshold.
    keep = (mean >= s.gas_mean_hu) & (gas_frac <= 0.5) & (in_body >= 0.5)
    keep[0] = False
    if keep.any():
        biggest = count[keep].max()
        keep &= count >= max(0.05 * biggest, 0.2 / voxel_ml)
        # Far from the lung volume (entirely above or below the largest component, e.g.
        # pelvic or bowel gas below the diaphragm): not lung.
        objs = ndimage.find_objects(lab)
        main = objs[int(np.argmax(np.where(keep, count, 0))) - 1][0]
        for i in np.flatnonzero(keep):
            zsl = objs[i - 1][0]
            if zsl.stop <= main.start or zsl.start >= main.stop:
                keep[i] = False
    lung = keep[lab]
    excluded = (air & ~lung) | outside | airway | free_gas
    logger.debug(
        "lungs: %d air components, kept %d (%.0f mL); cropped FOV=%s; airway %.1f mL",
        n, int(keep.sum()), lung.sum() * voxel_ml, cropped, airway.sum() * voxel_ml,
    )
    if not lung.any():
        return np.zeros(low.shape, np.uint8), lung, excluded, airway, np.zeros_like(lung)
    labels = _split(lab, keep, lung, body_filled, sp)
    labels = _recover_dense(labels, low, excluded | ~inside, sp, s, free_gas, airway)
    near_airway = ndimage.binary_dilation(airway, structure=_CROSS, iterations=2)
    # Full-resolution gas voxels in the lung blocks touching free gas (the gastric fundus
    # under the base) belong to that gas, like the airway lumen.
    near_airway |= ndimage.binary_dilation(free_gas, structure=_CROSS)
    # The partial-volume rim of free gas: where a thick slice cuts the dome of the gastric
    # fundus obliquely, the gas blends with the stomach wall into an air-like ring that
    # joins the lung base (checked voxel by voxel in _refine).
    gas_rim = np.zeros_like(lung)
    if gas_rim_mm > 0:
        pockets = _gas_under_lung(free_gas, body_filled, labels > 0, sp)
        gas_rim = within(pockets, gas_rim_mm, sp) & (labels > 0)
    return labels, lung, excluded, near_airway, gas_rim


#: A free-gas pocket inside the body of at least this volume, mL, centred below the
#: middle of the lungs' height, is stomach or bowel gas under the lung base (not a
#: bronchus cut off the airway tree, nor oesophageal air, nor the air around the body).
_GAS_POCKET_MIN_ML = 10.0


def _gas_under_lung(free_gas: np.ndarray, body: np.ndarray, lung: np.ndarray,
                    sp: tuple[float, float, float]) -> np.ndarray:
    """The free-gas pockets under the lung base (all False when there are none)."""
    gas = free_gas & body
    if not gas.any() or not lung.any():
        return np.zeros(gas.shape, bool)
    lab, n = ndimage.label(gas, structure=_CROSS)
    count = np.bincount(lab.ravel(), minlength=n + 1)
    big = np.flatnonzero(count * float(np.prod(sp)) / 1000.0 >= _GAS_POCKET_MIN_ML)
    big = big[big > 0]
    keep = np.zeros(n + 1, bool)
    if big.size:
        zs = np.flatnonzero(lung.any(axis=(1, 2)))
        # LPS arrays: z grows towards the head, so "below" is the lower index.
        z_centre = np.array([c[0] for c in ndimage.center_of_mass(gas, lab, big)])
        keep[big[z_centre < 0.5 * (zs[0] + zs[-1])]] = True
    return keep[lab]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask, structure=_CROSS)
    if n == 0:
        return mask
    count = np.bincount(lab.ravel())
    count[0] = 0
    return lab == int(count.argmax())


def _is_cropped(body: np.ndarray) -> bool:
    """True when the body fills much of the in-plane image frame (FOV cropped to the chest)."""
    frame = np.concatenate(
        [body[:, 0, :], body[:, -1, :], body[:, :, 0], body[:, :, -1]], axis=1
    )
    return bool(frame.mean() > 0.25)


def _airway(low: np.ndarray, air: np.ndarray, sp: tuple[float, float, float],
            s: Settings) -> np.ndarray:
    """Trachea and main bronchi on the working grid (empty when not found)."""
    voxel_ml = float(np.prod(sp)) / 1000.0
    px_cm2 = sp[1] * sp[2] / 100.0
    zs = np.flatnonzero(air.any(axis=(1, 2)))
    if zs.size == 0:
        return np.zeros(low.shape, bool)
    for thr in (s.gas_mean_hu, s.gas_mean_hu - 25.0, s.gas_mean_hu - 40.0):
        gas = air & (low < thr)
        lab, n = ndimage.label(gas, structure=_CROSS)
        if n == 0:
            break
        objs = ndimage.find_objects(lab)
        count = np.bincount(lab.ravel(), minlength=n + 1)
        best, best_count = 0, 0
        x_mid = 0.5 * low.shape[2]
        for i, sl in enumerate(objs, start=1):
            if sl is None or count[i] * voxel_ml < 1.0:
                continue
            top = sl[0].stop - 1
            if top < zs[-1] - max(2, round(20.0 / sp[0])):
                continue  # must reach the top of the air (the trachea enters from above)
            area_top = np.count_nonzero(lab[top][sl[1], sl[2]] == i) * px_cm2
            cx = 0.5 * (sl[2].start + sl[2].stop)
            if not (0.3 <= area_top <= 8.0) or abs(cx - x_mid) > 0.2 * low.shape[2]:
                continue
            if count[i] > best_count:
                best, best_count = i, count[i]
        if best == 0:
            return np.zeros(low.shape, bool)
        if best_count * voxel_ml <= _AIRWAY_MAX_ML:
            tree = _bridge_bronchi(lab == best, lab, count, sp)
            return ndimage.binary_dilation(tree, structure=_CROSS) & air
        logger.debug("airway at %g HU leaks (%.0f mL); trying stricter", thr,
                     best_count * voxel_ml)
    logger.warning("airway could not be separated from the lung; it stays in the lung mask")
    return np.zeros(low.shape, bool)


#: When the gas threshold stops the airway at the carina (the walls of the main bronchi
#: lift the block means there), gas pieces within this distance of the tree's lower end
#: are joined to it, mm; each piece at most :data:`_BRONCHUS_MAX_ML` and centred within
#: :data:`_BRONCHUS_MIDLINE_MM` of the trachea (main and lobar bronchi, not peripheral lung).
_BRONCHUS_GAP_MM = 10.0
_BRONCHUS_MAX_ML = 30.0
_BRONCHUS_MIDLINE_MM = 60.0
#: The tree is "the trachea only" when its in-plane extent is at most this, mm.
_TRACHEA_MAX_WIDTH_MM = 35.0


def _bridge_bronchi(tree: np.ndarray, lab: np.ndarray, count: np.ndarray,
                    sp: tuple[float, float, float]) -> np.ndarray:
    """Join the main bronchi that the gas threshold cut off the trachea.

    Only when the grown tree is the trachea alone (in-plane extent at most
    :data:`_TRACHEA_MAX_WIDTH_MM`): in two rounds, gas components of ``lab`` within
    :data:`_BRONCHUS_GAP_MM` of the tree's lowest 10 mm, below its top, of at most
    :data:`_BRONCHUS_MAX_ML` and centred within :data:`_BRONCHUS_MIDLINE_MM` of the
    trachea join it. A tree that already branches is left as it is.
    """
    xs_tree = np.flatnonzero(tree.any(axis=(0, 1)))
    ys_tree = np.flatnonzero(tree.any(axis=(0, 2)))
    width = max(np.ptp(xs_tree) * sp[2], np.ptp(ys_tree) * sp[1])
    if width > _TRACHEA_MAX_WIDTH_MM:
        return tree
    voxel_ml = float(np.prod(sp)) / 1000.0
    top = int(np.flatnonzero(tree.any(axis=(1, 2)))[-1])
    x_mid = float(np.mean(xs_tree))
    objs = ndimage.find_objects(lab)
    pad = [int(np.ceil(_BRONCHUS_GAP_MM / v)) for v in sp]
    for _ in range(2):
        tips = tree.copy()
        bottom = int(np.flatnonzero(tree.any(axis=(1, 2)))[0])
        tips[bottom + max(1, round(10.0 / sp[0])):] = False
        box = bbox(tips, pad)  # the distance map only around the tips
        near = ndimage.distance_transform_edt(~tips[box], sampling=sp) <= _BRONCHUS_GAP_MM
        ids = np.unique(lab[box][near & ~tree[box]])
        ids = ids[ids > 0]
        keep = []
        for i in ids[count[ids] * voxel_ml <= _BRONCHUS_MAX_ML]:
            sl = objs[i - 1]
            cx = 0.5 * (sl[2].start + sl[2].stop - 1)
            if sl[0].stop - 1 < top and abs(cx - x_mid) * sp[2] <= _BRONCHUS_MIDLINE_MM:
                keep.append(i)
        if not keep:
            break
        tree = tree | np.isin(lab, keep)
    return tree


def _free_gas(low: np.ndarray, air: np.ndarray, sp: tuple[float, float, float],
              s: Settings) -> np.ndarray:
    """Pure-gas pockets that are not surrounded by lung parenchyma.

    A gas component (blocks below ``gas_mean_hu``) whose one-block shell is mostly soft
    tissue is stomach or bowel gas, trachea or outside air, even where partial volume
    through a thin diaphragm joins it to the lung; an emphysematous bulla or a bronchus
    inside the lung is wrapped in parenchyma and stays.
    """
    gas = air & (low < s.gas_mean_hu)
    lab, n = ndimage.label(gas, structure=_CROSS)
    if n == 0:
        return gas
    grown = ndimage.grey_dilation(lab, footprint=_CROSS)
    shell = (grown > 0) & ~gas
    paren = shell & air
    n_shell = np.bincount(grown[shell], minlength=n + 1)
    n_paren = np.bincount(grown[paren], minlength=n + 1)
    free = n_paren < _FREE_GAS_PAREN * n_shell
    free |= _gas_layers(lab, n, gas, air, sp)
    free[0] = False
    return free[lab]


#: A gas pocket under the lung is free gas (gastric fundus, splenic flexure) when it is a
#: flat layer (mean height at most this, mm) ...
_GAS_LAYER_MAX_MM = 15.0
#: ... of at least this volume, mL, ...
_GAS_LAYER_MIN_ML = 10.0
#: ... floating on soft tissue: at least this share of its floor (the one or two blocks
#: below it) is not air-like.
_GAS_LAYER_FLOOR = 0.7


def _gas_layers(lab: np.ndarray, n: int, gas: np.ndarray, air: np.ndarray,
                sp: tuple[float, float, float]) -> np.ndarray:
    """Per gas component: True for a flat gas layer lying on soft tissue.

    Gas rises onto the fluid or food of the stomach and bowel, which leaves a flat pocket
    with a soft-tissue floor; where the diaphragm is thinner than a working-grid block the
    pocket's roof touches the lung base and :func:`_free_gas`'s shell test counts it as
    wrapped in lung. An emphysematous bulla is round and its floor is mostly parenchyma.
    """
    # LPS arrays: index z grows towards the head, so the floor of a pocket is at z - 1.
    floor = np.zeros(gas.shape, bool)
    floor[:-1] = gas[1:] & ~gas[:-1]
    floor_lab = np.zeros(lab.shape, lab.dtype)
    floor_lab[:-1] = lab[1:]
    floor_lab[~floor] = 0
    n_floor = np.bincount(floor_lab.ravel(), minlength=n + 1).astype(np.float64)
    # Partial volume makes the block at a gas-fluid level air-like: the floor is soft
    # tissue when the block below the pocket or the one under it is not air-like.
    solid = ~air
    solid[1:] |= ~air[:-1]
    n_tissue = np.bincount(floor_lab[floor & solid], minlength=n + 1)
    count = np.bincount(lab.ravel(), minlength=n + 1)
    height_mm = count / np.maximum(n_floor, 1) * sp[0]
    layer = (
        (count * float(np.prod(sp)) / 1000.0 >= _GAS_LAYER_MIN_ML)
        & (n_tissue >= _GAS_LAYER_FLOOR * np.maximum(n_floor, 1))
        & (height_mm <= _GAS_LAYER_MAX_MM)
    )
    if layer[1:].any():
        logger.debug("lungs: %d flat gas layer(s) under the lung dropped", int(layer[1:].sum()))
    return layer


def _split(lab: np.ndarray, keep: np.ndarray, lung: np.ndarray, body: np.ndarray,
           sp: tuple[float, float, float]) -> np.ndarray:
    """Label ``lung`` as 1 right / 2 left."""
    x = np.arange(lung.shape[2], dtype=np.float64)
    ids = np.flatnonzero(keep)
    count = np.bincount(lab.ravel(), minlength=keep.size)[ids]
    order = ids[np.argsort(count)[::-1]]
    labels = np.zeros(lung.shape, np.uint8)
    ranked = np.sort(count)[::-1]
    if len(order) >= 2 and ranked[1] >= 0.2 * ranked[0]:
        cores: list[np.ndarray] | None = [lab == order[0], lab == order[1]]
    else:
        cores = _erosion_cores(lung, sp)
    if cores is not None:
        xa, xb = (float((c.sum(axis=(0, 1)) * x).sum() / c.sum()) for c in cores)
        right_core, left_core = (cores[0], cores[1]) if xa < xb else (cores[1], cores[0])
        seeds = np.zeros(lung.shape, np.uint8)
        seeds[right_core] = RIGHT
        seeds[left_core] = LEFT
        inds = ndimage.distance_transform_edt(
            seeds == 0, sampling=sp, return_distances=False, return_indices=True
        )
        nearest = seeds[tuple(inds)]
        labels[lung] = nearest[lung]
        return labels
    # Fall back: per slice at the body's midline (x centre of the filled body).
    bx = body.sum(axis=1)  # (z, x)
    w = bx.sum(axis=1)
    mid = np.where(w > 0, (bx * x).sum(axis=1) / np.maximum(w, 1), 0.5 * lung.shape[2])
    left_side = x[None, None, :] >= mid[:, None, None]
    labels[lung] = np.where(np.broadcast_to(left_side, lung.shape), LEFT, RIGHT)[lung]
    if not (labels == LEFT).any() or not (labels == RIGHT).any():
        logger.info("lungs: only one lung side found")
    return labels


def _erosion_cores(lung: np.ndarray, sp: tuple[float, float, float]) -> list[np.ndarray] | None:
    """Erode a joined lung mask until it falls into two large parts (or give up)."""
    depth = ndimage.distance_transform_edt(lung, sampling=sp)
    for d in (2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 20.0):
        core = depth > d
        lab, n = ndimage.label(core, structure=_CROSS)
        if n < 2:
            if n == 0:
                break
            continue
        count = np.bincount(lab.ravel())
        count[0] = 0
        first, second = np.argsort(count)[::-1][:2]
        if count[second] >= 0.2 * count[first]:
            logger.debug("lungs: joined lungs split by erosion at %g mm", d)
            return [lab == first, lab == second]
    return None


def _closing(mask: np.ndarray, radius_mm: float, sp: tuple[float, float, float]) -> np.ndarray:
    """Binary closing with a ball of ``radius_mm`` (distance transforms; edges replicated)."""
    pad = [int(np.ceil(radius_mm / v)) + 1 for v in sp]
    # The lung continues beyond the first and last slice (edge replicated in z); in-plane
    # the image border is not lung (zero padding), so a cropped FOV is not closed onto it.
    m = np.pad(mask, [(pad[0], pad[0]), (0, 0), (0, 0)], mode="edge")
    m = np.pad(m, [(0, 0), (pad[1], pad[1]), (pad[2], pad[2])])
    dil = ndimage.distance_transform_edt(~m, sampling=sp) <= radius_mm
    closed = ndimage.distance_transform_edt(dil, sampling=sp) > radius_mm
    return closed[pad[0]:-pad[0], pad[1]:-pad[1], pad[2]:-pad[2]] | mask


#: The medial lung edge of a row is the most medial edge within this distance along y:
#: a dense bite in the medial lung (paravertebral consolidation) is not mediastinum, mm.
_MEDIAL_NOTCH_MM = 15.0


def _between_lungs(labels: np.ndarray, sp: tuple[float, float, float],
                   notch_mm: float) -> np.ndarray:
    """The mediastinum proxy: in each image row (z, y), the voxels strictly between the
    right lung's most medial voxel and the left lung's (rows holding both lungs), the
    medial edges taken as the most medial within ``notch_mm`` along y."""
    x = np.arange(labels.shape[2])
    right, left = labels == RIGHT, labels == LEFT
    has_r, has_l = right.any(axis=2), left.any(axis=2)
    size = 2 * round(notch_mm / sp[1]) + 1
    r_max = ndimage.maximum_filter1d(np.where(right, x, -1).max(axis=2), size, axis=1)
    l_min = ndimage.minimum_filter1d(
        np.where(left, x, labels.shape[2]).min(axis=2), size, axis=1)
    r_max = np.where(has_r, r_max, -1)
    l_min = np.where(has_l, l_min, -1)
    both = (r_max >= 0) & (l_min >= 0) & (l_min > r_max)
    xx = x[None, None, :]
    return both[..., None] & (xx > r_max[..., None]) & (xx < l_min[..., None])


#: Closing additions within this distance of free gas (stomach, bowel) are its wall and
#: the diaphragm, not lung, mm.
_FREE_GAS_WALL_MM = 10.0
#: The mediastinum proxy grows this far (in-plane, through soft tissue) into the lung's
#: medial concavities (aorta, hilar vessels), mm.
_MEDIASTINUM_GROW_MM = 14.0


def _recover_dense(labels: np.ndarray, low: np.ndarray, forbidden: np.ndarray,
                   sp: tuple[float, float, float], s: Settings,
                   free_gas: np.ndarray | None = None,
                   airway: np.ndarray | None = None) -> np.ndarray:
    """Bring dense lung (consolidation, dependent density) back into each lung.

    Each lung is closed with a ball of ``lung_closing_mm`` (bites of dense lung narrower
    than about twice that, e.g. consolidation against the pleura, are filled) and its
    in-plane holes (vessels, consolidation cores surrounded by aerated lung or GGO) are
    filled whatever their density. Closing additions must be below ``dense_lung_max_hu``;
    nothing is taken from the other lung, the airway, gas or outside the body, or where
    the aerated lung around is healthy (:func:`_normal_fraction` above
    :data:`_HEALTHY_NORMAL_FRACTION`); the mediastinum proxy and the hilum
    (:func:`_hilum`) are taken only where the aerated lung around is diseased (below
    :data:`_DISEASED_NORMAL_FRACTION`).
    """
    dense = (low < s.dense_lung_max_hu) & ~forbidden
    mediastinum = _between_lungs(labels, sp, _MEDIAL_NOTCH_MM)
    between = mediastinum
    n_grow = round(_MEDIASTINUM_GROW_MM / sp[1])
    if n_grow > 0 and between.any():
        between = ndimage.binary_dilation(between, structure=_INPLANE, iterations=n_grow,
                                          mask=dense | between)
    # What borders an addition: diseased lung (consolidation grows out of it) lifts the
    # mediastinum and hilum vetoes; normally aerated lung all around, near the
    # mediastinum, marks a great vessel or the mediastinum bulging into healthy lung.
    # NaN (no aerated lung near) decides nothing.
    normal = _normal_fraction(labels, low, sp, 1)
    diseased = normal < _DISEASED_NORMAL_FRACTION
    erode = round(_PV_EROSION_MM / min(sp[1:]))
    if erode != 1:
        normal = _normal_fraction(labels, low, sp, erode)
    healthy = normal > _HEALTHY_NORMAL_FRACTION
    if healthy.any():
        healthy &= within_inplane(mediastinum, _HEALTHY_VETO_MM, sp)
    allowed = dense & ~(between & ~diseased) & ~healthy
    if free_gas is not None and free_gas.any():
        # The diaphragm and the stomach or bowel wall between the lung base and free gas
        # are a thin soft-tissue layer that the closing would fill as a bite of the lung.
        allowed &= ~within(free_gas, _FREE_GAS_WALL_MM, sp)
    if airway is not None and airway.any():
        box, hilum = _hilum(airway, sp)
        allowed[box] &= ~(hilum & ~diseased[box])
    out = labels.copy()
    r = s.lung_closing_mm
    pad = [int(np.ceil(r / v)) + 2 for v in sp]
    for value, other in ((RIGHT, LEFT), (LEFT, RIGHT)):
        m = labels == value
        if not m.any():
            continue
        box = bbox(m, pad)
        sub = m[box]
        add = _closing(sub, r, sp) & allowed[box]
        holes = ndimage.binary_fill_holes(sub | add, structure=_INPLANE) & ~sub & ~add
        add |= _small_holes(holes, sp) & ~forbidden[box]
        add &= (out[box] == 0) & (labels[box] != other)
        out[box][add] = value
    return out


#: The neighbourhood of an addition whose aerated lung is inspected (a box), mm.
_NEIGHBOURHOOD_MM = 16.0
#: Normally aerated: below the lung's own 10th HU percentile plus this (about -795 HU on
#: the phantoms and the aorta crop), HU ...
_NORMAL_OFFSET_HU = 60.0
#: ... and always below this, HU: with emphysema the 10th percentile is emphysema (the
#: COPD scan: -960 HU), and with a -900 HU level its -870 HU parenchyma read as diseased
#: around the hila (16 mL of hilar soft tissue came in).
_NORMAL_MIN_HU = -850.0
#: Diseased neighbourhood: less than this share of its aerated lung is normal.
_DISEASED_NORMAL_FRACTION = 0.3
#: Healthy neighbourhood: more than this share of its aerated lung is normal (0.6 left
#: the hilar vessels of a healthy 5 mm-slice phantom in: partial volume of vessels lifts
#: its healthy lung to a median share of 0.59). Only within :data:`_HEALTHY_VETO_MM`
#: (in-plane) of the tissue between the lungs, where the great vessels are: a
#: pleural-based consolidation at the chest wall with healthy lung around stays lung.
_HEALTHY_NORMAL_FRACTION = 0.55
_HEALTHY_VETO_MM = 50.0
#: For the healthy test the aerated lung is eroded by this much (its partial-volume edge
#: against the addition is not normal lung), mm: one block on the ~2 mm working grid,
#: none on coarse scans, where it took the narrow ground-glass rims of the COPD scan's
#: inserted consolidation (Dice 0.586 -> 0.562). The diseased test always erodes one
#: block: without, the partial-volume edge of healthy lung read as diseased (COPD false
#: lesion 0.20 -> 0.44 %).
_PV_EROSION_MM = 2.0


def _normal_fraction(labels: np.ndarray, low: np.ndarray, sp: tuple[float, float, float],
                     erode: int) -> np.ndarray:
    """Share of the aerated lung within :data:`_NEIGHBOURHOOD_MM` that is normally aerated.

    The aerated lung (``labels > 0``) is eroded by ``erode`` blocks (3D) against partial
    volume; NaN where none of it is in the box (single slices erode to nothing).
    """
    aerated = labels > 0
    inner = ndimage.binary_erosion(aerated, iterations=erode) if erode > 0 else aerated
    size = tuple(max(3, 2 * int(_NEIGHBOURHOOD_MM / (2.0 * v)) + 1) for v in sp)
    level = max(float(np.percentile(low[aerated], 10)) + _NORMAL_OFFSET_HU, _NORMAL_MIN_HU)
    den = ndimage.uniform_filter(inner.astype(np.float32), size)
    num = ndimage.uniform_filter((inner & (low < level)).astype(np.float32), size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0.01, num / den, np.nan)


#: The hilum: closing additions within this distance of the airway tree's
#: :data:`_HILUM_AIRWAY_MM` below the carina (the main bronchi), mm.
_HILUM_MM = 20.0
_HILUM_AIRWAY_MM = 30.0


def _hilum(airway: np.ndarray, sp: tuple[float, float, float]
           ) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """The hilum around the main bronchi: a box and its mask.

    The pulmonary arteries and veins enter the lung beside the main bronchi,
    where the lung wraps around them: the closing fills them like a bite of consolidated
    lung, and without contrast they have its density (the normal COPD scan: 0.1 % of its
    lung read as consolidation, all at the hila). Soft tissue within :data:`_HILUM_MM` of
    the tree's :data:`_HILUM_AIRWAY_MM` below the carina (:func:`_carina`; the lowest
    :data:`_HILUM_AIRWAY_MM` when the tree never splits) is not added (lung that is
    aerated there stays lung); lobar and segmental bronchi further down are inside the
    lung and do not count. Computed in a box around that part of the tree.
    """
    top = _carina(airway)
    if top is None:  # no split found: the tree is the trachea and main bronchi at most
        top = int(np.flatnonzero(airway.any(axis=(1, 2)))[0]) + round(_HILUM_AIRWAY_MM / sp[0])
    tips = airway.copy()
    tips[top + 1:] = False
    tips[:max(0, top - round(_HILUM_AIRWAY_MM / sp[0]))] = False
    box = bbox(tips, [int(np.ceil(_HILUM_MM / v)) for v in sp])
    near = ndimage.distance_transform_edt(~tips[box], sampling=sp) <= _HILUM_MM
    return box, near


def _carina(airway: np.ndarray) -> int | None:
    """Slice index (LPS: z grows towards the head) of the carina: the highest slice where
    the airway tree is two separate pieces in-plane; None when it never splits."""
    zs = np.flatnonzero(airway.any(axis=(1, 2)))
    for z in zs[::-1]:
        if ndimage.label(airway[z], structure=_INPLANE[1])[1] >= 2:
            return int(z)
    return None


def _small_holes(holes: np.ndarray, sp: tuple[float, float, float]) -> np.ndarray:
    """In-plane holes up to :data:`_MAX_HOLE_CM2` (vessels, consolidation cores); larger
    ones are abdominal organs ringed by the lung bases around the diaphragm dome."""
    lab, n = ndimage.label(holes, structure=_INPLANE)
    if n == 0:
        return holes
    area_cm2 = np.bincount(lab.ravel(), minlength=n + 1) * sp[1] * sp[2] / 100.0
    small = area_cm2 <= _MAX_HOLE_CM2
    small[0] = False
    return small[lab]


# ---------------------------------------------------------------------- full res


def _refine(labels_low: np.ndarray, aerated_low: np.ndarray, excluded_low: np.ndarray,
            airway_low: np.ndarray, gas_rim_low: np.ndarray, hu: np.ndarray,
            factors: tuple[int, int, int], s: Settings) -> np.ndarray:
    """Full-resolution labels: blocks copied, boundary blocks decided voxel by voxel.

    In the boundary blocks a voxel is lung when it is below :data:`_SURFACE_HU` (the
    partial-volume midpoint of parenchyma and soft tissue) or lies in a recovered dense
    block; gas voxels (below ``gas_mean_hu + 50``) within two blocks of the airway, or
    one block of free gas, are airway lumen or that gas, not lung; voxels at or above
    :data:`_GAS_RIM_HU` in ``gas_rim_low`` (lung blocks within a slice thickness plus
    :data:`_GAS_RIM_EXTRA_MM` of free gas) are the gas's partial volume, not lung.
    """
    lung_low = labels_low > 0
    inner = ndimage.binary_erosion(lung_low, structure=_CROSS, border_value=1)
    outer = ndimage.binary_dilation(lung_low, structure=_CROSS)
    band_low = outer & ~inner
    inds = ndimage.distance_transform_edt(
        ~lung_low, return_distances=False, return_indices=True
    )
    nearest_low = labels_low[tuple(inds)]
    dense_low = lung_low & ~aerated_low

    box_low = bbox(outer, [0, 0, 0])
    f = factors
    off = tuple(sl.start * fi for sl, fi in zip(box_low, f, strict=True))
    stop = tuple(min(hu.shape[i], box_low[i].stop * f[i]) for i in range(3))
    shape = tuple(b - a for a, b in zip(off, stop, strict=True))
    full = np.zeros(hu.shape, np.uint8)
    box = tuple(slice(a, b) for a, b in zip(off, stop, strict=True))
    up = lambda a: block_upsample(a, f, shape, off)  # noqa: E731
    lab = up(labels_low)
    band = up(band_low)
    sub = hu[box]
    surface = min(_SURFACE_HU, s.lung_threshold_hu)
    decide = (sub < surface) & (sub > PADDING_HU) & ~up(excluded_low)
    decide |= up(dense_low) & (sub < s.dense_lung_max_hu)
    lab = np.where(band, np.where(decide, up(nearest_low), 0), lab).astype(np.uint8)
    lab[up(airway_low) & (sub < s.gas_mean_hu + 50.0)] = 0
    if gas_rim_low.any():
        lab[up(gas_rim_low) & (sub >= _GAS_RIM_HU)] = 0
    full[box] = lab
    return full
