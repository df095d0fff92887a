#!/usr/bin/env bash
# Trains every model the ANT-GAN chapters use and exports it to data/zoo, one after the other,
# with the recipes of pseudohealthy_lib.zoo.RECIPES (the same commands the manifests record).
# A model already in the zoo is skipped; an interrupted run resumes from runs/NAME.
#   bash scripts/train_antgan_studies.sh      # about 2 h on 2 CPU cores, minutes on a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
python -m pseudohealthy_lib zoo --train segmentor-phantom \
  antgan antgan-cyclegan antgan-cyclegan-shortcut antgan-gan antgan-gan+ac antgan-gan+nc \
  antgan-sweep-lam0 antgan-sweep-lam0.01 antgan-sweep-lam0.1 antgan-sweep-lam1 antgan-sweep-lam10 antgan-sweep-lam100 \
  antgan-resize
