#!/bin/sh
# Train the shipped model (all 65 MedSeg slices, 900 steps) and the 5 cross-validation folds
# (450 steps each: the CPU time this session had; the fold numbers are therefore a lower
# bound for the shipped recipe), one after the other, each resumable (rerun this script
# after an interruption). 0.6-2.5 s per step on 2 shared CPU cores, 1 thread.
# Then: python -m models.export models/runs/final ; python -m models.evaluate_model medseg
set -e
cd "$(dirname "$0")/.."
ARGS="--crop 112 --medseg 4 --synth 2 --base 16 --seed 0 --threads 1"
[ -d models/cache ] || python -m models.data
python -m models.train --run models/runs/final --fold -1 --steps 900 --val-every 150 $ARGS
for f in 0 1 2 3 4; do
  python -m models.train --run models/runs/fold$f --fold $f --steps 450 --val-every 150 $ARGS
done
