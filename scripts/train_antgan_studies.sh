#!/usr/bin/env bash
# Trains every model the ANT-GAN chapters ship (data/zoo), one after the other.
# Each command resumes if it is interrupted; a model already in the zoo is skipped.
#   bash scripts/train_antgan_studies.sh            # all of them (about 2 h on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
train() {  # NAME ARGS...
  local name=$1; shift
  if [ -f "data/zoo/$name/manifest.json" ]; then echo "skip $name (in the zoo)"; return; fi
  echo "=== $name: $*"
  python -m pseudohealthy_lib train antgan "$@" --out "runs/$name" --export "$name"
}
# the ablation study (Fig. 5, Table IV): the cpu preset, seed 0, one budget for all
train antgan                    --preset cpu
train antgan-cyclegan           --preset cpu --variant cyclegan
train antgan-cyclegan-shortcut  --preset cpu --variant cyclegan+shortcut
train antgan-gan                --preset cpu --variant gan
train antgan-gan+ac             --preset cpu --variant gan+ac
train antgan-gan+nc             --preset cpu --variant gan+nc
# the lambda_AM sensitivity study (Fig. 12): the smaller sweep preset, one model per value
for lam in 0 0.01 0.1 1 10 100; do
  train "antgan-sweep-lam$lam" --preset sweep --set lambda_am=$lam
done
# a remedy for checkerboard artefacts, clearly a variant: resize + conv instead of transposed convs
train antgan-resize             --preset cpu --set upsample=resize
