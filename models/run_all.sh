#!/bin/sh
# Train the shipped model (all 65 MedSeg slices) and the 5 cross-validation folds, one after
# the other, each resumable (rerun this script after an interruption). About 12 min per run (900 steps)
# on 2 shared CPU cores. Then: python -m models.export models/runs/final
set -e
cd "$(dirname "$0")/.."
ARGS="--steps 900 --crop 112 --medseg 4 --synth 2 --base 16 --seed 0 --val-every 150 --threads 1"
[ -d models/cache ] || python -m models.data
python -m models.train --run models/runs/final --fold -1 $ARGS
for f in 0 1 2 3 4; do
  python -m models.train --run models/runs/fold$f --fold $f $ARGS
done
