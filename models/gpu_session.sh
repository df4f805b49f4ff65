#!/bin/bash
# One GPU call (models/README.md, "A GPU session"), prepared so that a session lent a GPU
# machine spends its 15 minutes of device time on one call. Build the kit here first
# (`sh scripts/device_kit.sh`), then with the device tool, from the repository root:
#
#   run: bash models/gpu_session.sh [sweep options]    carry: [".devkit"]    timeout_s: 570
#
# With no options the sweep is the plan the model card names (the v4 recipe and the same
# at 32 base channels, seeds 0 and 1, five folds and a final network each: 24 runs).
# Steps, each under its own time limit so that one failing or slow step leaves the others'
# output:
#   1. env.txt        the GPU, torch, SimpleITK and pydicom as found there;
#   2. bench_gpu.txt  bench/bench_pipeline.py --method model --device cuda (512 x 512 x 300;
#                     issue 21's GPU target: whole pipeline <= 3 s);
#   3. sweep.txt      python -m models.sweep on the GPU (--workers, default 14 of the 16
#                     cores: the augmentation is drawn on the CPU);
#   4. runs.tar.gz    every run's meta.json, val.json and log, no checkpoint;
#      final_<run>.pt each final network's weights (float16; at most 4 finals: a call
#                     brings back 8 files of at most 16 MiB) for the CPU evaluation here.
# Back here: `python -m models.gpu_import <files_at>` (models/README.md).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_out}
RUNS=${RUNS:-/tmp/gpu_runs}
mkdir -p "$OUT" "$RUNS"
SITE=/tmp/lq_site
mkdir -p "$SITE" && xz -dc .devkit/site.tar.xz | tar -C "$SITE" -xf - || exit 2
export PYTHONPATH="$SITE:$PWD" LESIONQUANT_DATA="$PWD/.devkit/data" PYTHONUNBUFFERED=1
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}  # cpu: to try this script on a machine without a GPU
if [ $# -eq 0 ]; then
    set -- --recipe v4= --recipe "w32=--base 32" --seeds 0,1
fi

{ nvidia-smi; nproc; free -g
  "$PY" -c "import torch, SimpleITK, pydicom, numpy, scipy, skimage
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')
print('SimpleITK', SimpleITK.Version.VersionString(), 'pydicom', pydicom.__version__,
      'numpy', numpy.__version__, 'scipy', scipy.__version__, 'skimage', skimage.__version__)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

echo "== bench"
timeout "${BENCH_S:-170}" "$PY" bench/bench_pipeline.py --method model --device "$DEVICE" \
    ${BENCH_ARGS:-} > "$OUT/bench_gpu.txt" 2>&1
echo "exit $?" >> "$OUT/bench_gpu.txt"
tail -12 "$OUT/bench_gpu.txt"

echo "== sweep"
timeout "${SWEEP_S:-330}" "$PY" -m models.sweep --out "$RUNS" --device "$DEVICE" \
    --workers "${WORKERS:-14}" --base-args "${BASE_ARGS:---steps 1500 --val-every 250 \
--crop 160 --medseg 8 --synth 0 --base 16 --threads 1 --synthetic all --dice slice \
--coarse 0.2 --dependent 0.3 --ckpt-every 250}" "$@" > "$OUT/sweep.txt" 2>&1
echo "exit $?" >> "$OUT/sweep.txt"
"$PY" -m models.sweep --out "$RUNS" --summary-only "$@" >> "$OUT/sweep.txt" 2>&1
tail -30 "$OUT/sweep.txt"

echo "== pack"
tar -C "$RUNS" -czf "$OUT/runs.tar.gz" --exclude=ckpt.pt .
"$PY" - "$RUNS" "$OUT" <<'PYEOF'
import sys
from pathlib import Path

import torch

runs, out = Path(sys.argv[1]), Path(sys.argv[2])
for ckpt in sorted(runs.glob("*_final/ckpt.pt"))[:4]:
    st = torch.load(ckpt, map_location="cpu", weights_only=True)
    torch.save({"step": int(st["step"]),
                "model": {k: v.half() if v.is_floating_point() else v
                          for k, v in st["model"].items()}},
               out / f"final_{ckpt.parent.name}.pt")
    print(ckpt.parent.name, "step", int(st["step"]))
PYEOF
ls -la "$OUT"
