"""Numbers from a label map: volumes (mL), % of lung, zones, densities, severity score.

Definitions (also in ``docs/method.md``):

* Lung = labels 1-4; right lung = label 1 plus the lesions inside it, left likewise (each
  lesion voxel belongs to the lung it lies in, found from the lung labels).
* Percentages are of the lung volume they refer to: global % of the total lung,
  per-lung % of that lung, per-zone % of that zone.
* Zones: each lung is cut into thirds of equal *height* along the patient's
  superior-inferior axis, between its most superior and most inferior voxel centres:
  ``upper``, ``middle``, ``lower``.
* Zone score 0-5 from the zone's lesion % as in the lobar score of Pan et al. (Radiology
  2020;295:715-721): 0 none, 1 <5 %, 2 5-25 %, 3 25-50 %, 4 50-75 %, 5 >=75 %. "None" is
  below :data:`SCORE_MIN_LESION_PCT` (1 %): the visual score is read in whole percent
  (1-5 %, 6-25 %, ...), and below 1 % of a zone lie the partial-volume vessel and fissure
  voxels a normal lung shows (the healthy sample's zones reach 0.97 %); a trace of false
  lesion must not make a healthy scan 3/30.
  ``severity_score`` sums the 6 zones (0-30); ``severity_score_25`` rescales it to the
  0-25 range of the 5-lobe score (x 25/30). Zones are not lobes (the fissures are not
  segmented), so the two scores agree in range and meaning but not voxel for voxel.
"""

from __future__ import annotations

import numpy as np

from lesionquant.segment import Label

__all__ = ["SCORE_MIN_LESION_PCT", "ZONES", "measure_labels", "zone_score"]

#: A zone whose lesion % is below this scores 0 ("none") in the severity score, %.
SCORE_MIN_LESION_PCT = 1.0
ZONES = ("upper", "middle", "lower")
_SIDES = (("right", Label.RIGHT_LUNG), ("left", Label.LEFT_LUNG))
_PERCENTILES = (5, 10, 25, 50, 75, 90, 95)


def zone_score(lesion_pct: float) -> int:
    """Pan et al. 0-5 score of a zone's lesion % (0 below 1 %, 1 <5, ..., 5 >=75).

    Examples
    --------
    >>> [zone_score(p) for p in (0.0, 0.97, 1.0, 4.9, 5.0, 30.0, 80.0)]
    [0, 0, 1, 1, 2, 3, 5]
    """
    if lesion_pct < SCORE_MIN_LESION_PCT:
        return 0
    for score, upper in ((1, 5.0), (2, 25.0), (3, 50.0), (4, 75.0)):
        if lesion_pct < upper:
            return score
    return 5


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else 0.0


def _volumes(prefix: str, lung: int, ggo: int, cons: int, voxel_ml: float) -> dict[str, float]:
    lesion = ggo + cons
    return {
        f"{prefix}lung_ml": lung * voxel_ml,
        f"{prefix}lesion_ml": lesion * voxel_ml,
        f"{prefix}ggo_ml": ggo * voxel_ml,
        f"{prefix}consolidation_ml": cons * voxel_ml,
        f"{prefix}lesion_pct": _pct(lesion, lung),
        f"{prefix}ggo_pct": _pct(ggo, lung),
        f"{prefix}consolidation_pct": _pct(cons, lung),
    }


def measure_labels(
    labels: np.ndarray, side: np.ndarray, hu: np.ndarray, voxel_ml: float
) -> dict[str, float | int]:
    """Measure a label map.

    Parameters
    ----------
    labels : (Z, Y, X) ndarray of uint8
        Label map (0-4) of an LPS-oriented scan (z index grows towards superior).
    side : (Z, Y, X) ndarray of uint8
        Lung side of every lung voxel (1 right, 2 left, 0 outside).
    hu : (Z, Y, X) ndarray
        CT in HU, same grid.
    voxel_ml : float
        Volume of one voxel, mL.

    Returns
    -------
    dict
        Flat ``{name: value}``; names carry their unit (``_ml``, ``_pct``, ``_hu``).
    """
    out: dict[str, float | int] = {}
    lung = labels > 0
    ggo = labels == Label.GGO
    cons = labels == Label.CONSOLIDATION
    out.update(_volumes("", int(lung.sum()), int(ggo.sum()), int(cons.sum()), voxel_ml))
    # Per-slice counts (z, side) make the per-lung and per-zone numbers cheap.
    scores = []
    for name, value in _SIDES:
        in_side = side == value
        zl, zg, zc = (np.count_nonzero(in_side & m, axis=(1, 2)) for m in (lung, ggo, cons))
        out.update(_volumes(f"{name}_", int(zl.sum()), int(zg.sum()), int(zc.sum()), voxel_ml))
        present = np.flatnonzero(zl)
        if present.size:
            top, bottom = float(present[-1]), float(present[0])
            height = top - bottom
            # Position of each slice from the top, 0 (top) to 1 (bottom).
            frac = (top - np.arange(labels.shape[0])) / height if height > 0 else np.zeros(
                labels.shape[0]
            )
            zone_of = np.clip((frac * 3).astype(int), 0, 2)
        else:
            zone_of = np.zeros(labels.shape[0], int)
        for k, zone in enumerate(ZONES):
            sel = zone_of == k
            vol = _volumes(f"{name}_{zone}_", int(zl[sel].sum()), int(zg[sel].sum()),
                           int(zc[sel].sum()), voxel_ml)
            out.update(vol)
            score = zone_score(vol[f"{name}_{zone}_lesion_pct"])
            out[f"{name}_{zone}_score"] = score
            scores.append(score)
    out["severity_score"] = int(sum(scores))
    out["severity_score_25"] = float(sum(scores)) * 25.0 / 30.0
    values = hu[lung].astype(np.float32)
    if values.size:
        out["lung_mean_hu"] = float(values.mean())
        out["lung_std_hu"] = float(values.std())
        for p, v in zip(_PERCENTILES, np.percentile(values, _PERCENTILES), strict=True):
            out[f"lung_p{p:02d}_hu"] = float(v)
        out["lung_laa950_pct"] = _pct(int((values < -950).sum()), values.size)
    else:
        out["lung_mean_hu"] = float("nan")
        out["lung_std_hu"] = float("nan")
        for p in _PERCENTILES:
            out[f"lung_p{p:02d}_hu"] = float("nan")
        out["lung_laa950_pct"] = float("nan")
    out["voxel_volume_ml"] = voxel_ml
    return out
