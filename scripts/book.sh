#!/usr/bin/env bash
# The main job: build the executed book into _build/html (notebooks run in full mode).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh
. .venv/bin/activate
export PYTHONHASHSEED=0
jupyter-book build . --all -W -n --keep-going
echo "book built in $(( $(date +%s) - start )) s: open _build/html/index.html"
