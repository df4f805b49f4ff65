#!/bin/sh
# Self-training phase on top of run_all.sh's phase-1 runs: each run (the 5 folds, then
# final) continues from its phase-1 checkpoint with the 1600 unlabelled COVID-19 slices
# (models/data.py load_unlabelled) pseudo-labelled by that same checkpoint (lesion class
# where its probability >= 0.7), so no fold's held-out slices reach its training.
# Resumable like phase 1: rerun after an interruption.
set -e
cd "$(dirname "$0")/.."
STEPS=${STEPS_SSL:-500}
ARGS="--steps $STEPS --val-every 100 --crop 160 --medseg 4 --synth 2 --pseudo 2 --pseudo-conf 0.7 --lr 2e-4 --base 16 --seed 2 --threads 1 --synthetic all"
PY=${PYTHON:-python}
run() { $PY -m models.train --run "models/runs/ssl_$1" --fold "$2" --init "models/runs/$1/ckpt.pt" $ARGS > "models/runs/ssl_$1.log" 2>&1; }
( run fold0 0; run fold2 2; run fold4 4 ) &
( run fold1 1; run fold3 3; run final -1 ) &
wait
