#!/bin/sh
# Build .devkit/ for a GPU call (models/README.md, "A GPU session"): what lesionquant's
# training and pipeline need that the GPU machine's image lacks, and the MedSeg slices.
#
# The GPU machine's image has torch (CUDA), numpy, scipy, scikit-image, matplotlib, pillow
# and tqdm but not SimpleITK or pydicom, and nothing can be fetched there; a call carries at
# most 64 MiB beside nothing else, the repository's files included. So the two wheels
# (CPython 3.12, manylinux, the versions installed here) are unpacked and packed again with
# xz (SimpleITK's 53 MB wheel becomes about 28 MB), and the 65 MedSeg slices (2 MB) are
# copied from the shared data into the ignored .devkit/data (never into git). Then, with
# the device tool: run `bash models/gpu_session.sh` with carry [".devkit"].
#
#   sh scripts/device_kit.sh            # about 3 min on 2 cores (xz -9e)
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DATA=${LESIONQUANT_DATA:-../shared/data}
KIT=.devkit
ver() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf "$KIT"
mkdir -p "$KIT/wheels" "$KIT/site" "$KIT/data/chest"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$KIT/wheels" \
    "SimpleITK==$(ver SimpleITK)" "pydicom==$(ver pydicom)"
for w in "$KIT"/wheels/*.whl; do
    "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" \
        "$w" "$KIT/site"
done
tar -C "$KIT/site" -cf - . | xz -9e -T0 > "$KIT/site.tar.xz"
rm -rf "$KIT/site" "$KIT/wheels"
cp -r "$DATA/chest/medseg-covid-2d-ggo-consolidation" "$KIT/data/chest/"
cp "$DATA/README.md" "$KIT/data/"
# what one call carries: the tracked and untracked-not-ignored files, and the kit
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null \
       | tail -1 | cut -f1)
kit=$(du -sb "$KIT" | cut -f1)
total=$((tree + kit))
echo "repository $((tree / 1048576)) MiB + .devkit $((kit / 1048576)) MiB = $((total / 1048576)) MiB (limit 64)"
if [ "$total" -gt $((64 * 1048576)) ]; then
    echo "too large for one device call: carry less" >&2
    exit 1
fi
