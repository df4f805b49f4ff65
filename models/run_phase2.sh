#!/bin/sh
# Second training phase of lesionnet-v3 on top of run_all.sh's lesionnet-v2 runs: each
# run (final and the 5 folds) continues from its phase-1 checkpoint with real lesion-free
# CT slices in every batch (models/data.py REAL_NEGATIVES and the training hosts), more
# MedSeg per batch, the coarse-pixel augmentation and a lower learning rate. Resumable
# like phase 1: rerun after an interruption.
set -e
cd "$(dirname "$0")/.."
STEPS=${STEPS2:-500}
ARGS="--steps $STEPS --val-every 100 --crop 160 --medseg 5 --synth 2 --real 1 --coarse 0.2 --lr 5e-4 --base 16 --seed 1 --threads 1 --synthetic all"
PY=${PYTHON:-python}
[ -f models/cache/real/totalseg_small.npz ] || $PY -c "from models import data; data.build_real_negatives()"
run() { $PY -m models.train --run "models/runs/p2_$1" --fold "$2" --init "models/runs/$1/ckpt.pt" $ARGS > "models/runs/p2_$1.log" 2>&1; }
( run fold0 0; run fold2 2; run fold4 4 ) &
( run fold1 1; run fold3 3; run final -1 ) &
wait
