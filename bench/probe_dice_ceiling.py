"""Probe how far a density-band lesion segmentation can go on the phantoms (lesion Dice).

For each phantom of ``lesionquant evaluate`` (512x512x300 at 0.7x0.7x1.0 mm, seeds and
burdens below) it prints the lesion Dice of

* ``pipeline``: :func:`lesionquant.quantify` as it is (our lung mask);
* ``true lungs``: :func:`lesionquant.segment.segment_lesions` given the true lung mask,
  i.e. the lesion stage alone;
* ``band oracle``: every true-lung voxel within 3 voxels of a true lesion whose HU
  (Gaussian 0.7 voxel, less the lesion stage's dependent correction) is at or above the
  GGO threshold (-750 HU). It knows where the lesions are (no false lesion farther out)
  and has no vessel filter: the vessels next to a lesion and the lesion's partial-volume
  edge decide;
* ``+ true vessels``: the band oracle less the non-lesion voxels denser than -500 HU
  and their one-voxel halo (a vessel filter that knows the truth).

The gap between ``true lungs`` and ``band oracle`` is what the vessel and partial-volume
rules of the lesion stage could still gain without a better lung mask; the gap to
``+ true vessels`` needs vessels told from lesion voxels they touch. Reported in
``docs/method.md`` (what limits the lesion Dice).

Run: ``python bench/probe_dice_ceiling.py`` (about 3 min on 2 cores; deterministic).
"""

from __future__ import annotations

import argparse

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lesionquant import quantify
from lesionquant.evaluate import dice
from lesionquant.segment import lesion_sides, segment_lesions
from lesionquant.segment.classical._filters import dependent_correction
from lesionquant.settings import Settings
from lesionquant.synth import make_phantom


def ceilings(seed: int, burden: float) -> dict[str, float]:
    ph = make_phantom(seed=seed, lesion_burden_pct=burden)
    lab = sitk.GetArrayFromImage(ph.labels)
    hu = sitk.GetArrayFromImage(ph.image).astype(np.float32)
    lung = (lab >= 1) & (lab <= 4)
    truth = (lab == 3) | (lab == 4)
    out: dict[str, float] = {}
    out["pipeline"] = dice(sitk.GetArrayFromImage(quantify(ph.image).labelmap) >= 3, truth)
    sides = sitk.GetImageFromArray(lesion_sides(np.where(lung, lab, 0).astype(np.uint8)))
    sides.CopyInformation(ph.image)
    out["true lungs"] = dice(sitk.GetArrayFromImage(segment_lesions(ph.image, sides)) >= 3,
                             truth)
    corr = dependent_correction(hu, lung, Settings().classical_lesions.filters)[None, :, None]
    cube = np.ones((3, 3, 3), bool)
    near = ndimage.binary_dilation(truth, cube, iterations=3) & lung
    band = near & (ndimage.gaussian_filter(hu, 0.7) - corr >= Settings().ggo_hu[0])
    out["band oracle"] = dice(band, truth)
    vessels = ndimage.binary_dilation(lung & ~truth & (hu > -500), cube) & ~truth
    out["+ true vessels"] = dice(band & ~vessels, truth)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--burdens", default="5,20")
    args = p.parse_args()
    cols = ["pipeline", "true lungs", "band oracle", "+ true vessels"]
    print("| seed | burden % | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 2) + "|")
    for seed in (int(v) for v in args.seeds.split(",")):
        for burden in (float(v) for v in args.burdens.split(",")):
            r = ceilings(seed, burden)
            print(f"| {seed} | {burden:g} | " + " | ".join(f"{r[c]:.3f}" for c in cols)
                  + " |", flush=True)


if __name__ == "__main__":
    main()
