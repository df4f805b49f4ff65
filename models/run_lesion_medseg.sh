#!/bin/sh
# The lesion network of lesionnet-v3 and v4: the lesionnet-v2 architecture trained on the 65
# MedSeg expert slices alone (8 a step, no synthetic slices), the shipped model and the
# 5 cross-validation folds, two runs at a time (one thread each). Its lung head is not
# used: lesionnet-v3 and v4 take the lungs from lesionnet-v2's lung head (models/README.md).
# Every run checkpoints every 25 steps and resumes: rerun this script after an
# interruption. Then:
#   python -m models.export models/runs/final --name lesionnet-v3 --lesion-run models/runs/mo_final
#   python -m models.evaluate_model medseg --prefix mo_ --lung-prefix ''
# lesionnet-v4 is the md_ variant below: --lesion-run models/runs/md_final --name lesionnet-v4
# Variants: PREFIX names the runs, EXTRA adds training options (models/README.md):
#   PREFIX=mc_ EXTRA="--coarse 0.2" sh models/run_lesion_medseg.sh  # coarse pixels
#   PREFIX=mp_ EXTRA="--dice slice --coarse 0.2" sh models/run_lesion_medseg.sh  # + per-slice Dice
#   PREFIX=mf_ EXTRA="--spacing 1.0 --crop 240" sh models/run_lesion_medseg.sh  # 1.0 mm pixels
#   PREFIX=md_ EXTRA="--dice slice --coarse 0.2 --dependent 0.3" sh models/run_lesion_medseg.sh
#     # + the dependent-density band
set -e
cd "$(dirname "$0")/.."
STEPS=${STEPS:-1500}
PREFIX=${PREFIX:-mo_}
ARGS="--steps $STEPS --val-every 250 --crop 160 --medseg 8 --synth 0 --base 16 --seed 0 --threads 1 --synthetic all ${EXTRA:-}"
PY=${PYTHON:-python}
mkdir -p models/runs
run() { $PY -m models.train --run "models/runs/$PREFIX$1" --fold "$2" $ARGS >> "models/runs/$PREFIX$1.log" 2>&1; }
( run fold0 0; run fold1 1; run fold4 4 ) &
( run fold2 2; run fold3 3; run final -1 ) &
wait
