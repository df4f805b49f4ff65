"""Time make_phantom at full size (512x512x300, 0.7x0.7x1 mm) and insert_lesions on it.

Run: ``python bench/synth_phantom_speed.py [repeats]``. Prints seconds per call (wall
clock) and the truth; timings belong here, not in the tests.
"""

from __future__ import annotations

import sys
import time

import SimpleITK as sitk

from lesionquant.synth import insert_lesions, make_phantom


def main() -> int:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    for _ in range(repeats):
        t0 = time.perf_counter()
        ph = make_phantom(seed=0, lesion_burden_pct=10.0)
        t1 = time.perf_counter()
        print(f"make_phantom 512x512x300: {t1 - t0:.1f} s  lung {ph.lung_ml:.0f} mL, "
              f"lesion {ph.lesion_pct:.2f} %")
    lungs = sitk.Threshold(ph.labels, 0, 2, 0)
    t0 = time.perf_counter()
    ins = insert_lesions(ph.image, lungs, seed=1, target_lesion_pct=20.0)
    print(f"insert_lesions 512x512x300: {time.perf_counter() - t0:.1f} s  "
          f"lesion {ins.lesion_pct:.2f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
