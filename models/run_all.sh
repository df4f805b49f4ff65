#!/bin/sh
# Train lesionnet-v2: the shipped model (all 65 MedSeg slices) and the 5 cross-validation
# folds, all with the same recipe, two runs at a time (one thread each: on a 2-core CPU
# two 1-thread runs train faster than one 2-thread run). Every run checkpoints every 25
# steps and resumes: rerun this script after an interruption. Then:
#   python -m models.export models/runs/final --name lesionnet-v2
#   python -m models.evaluate_model medseg
set -e
cd "$(dirname "$0")/.."
STEPS=${STEPS:-1500}
ARGS="--steps $STEPS --val-every 250 --crop 160 --medseg 4 --synth 4 --base 16 --seed 0 --threads 1 --synthetic all"
PY=${PYTHON:-python}
[ -d models/cache/v2 ] || $PY -m models.data
mkdir -p models/runs
run() { $PY -m models.train --run "models/runs/$1" --fold "$2" $ARGS > "models/runs/$1.log" 2>&1; }
( run final -1; run fold1 1; run fold3 3 ) &
( run fold0 0; run fold2 2; run fold4 4 ) &
wait
