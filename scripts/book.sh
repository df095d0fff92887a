#!/usr/bin/env bash
# The main job: build the book into _build/html from the notebooks' stored outputs (real runs).
#   bash scripts/book.sh             # render (a minute or two)
#   bash scripts/book.sh --execute   # first re-run every chapter in the teaching mode (see README)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh
. .venv/bin/activate
export PYTHONHASHSEED=0
if [ "${1:-}" = "--execute" ]; then
  unset PH_FAST
  python scripts/execute_notebooks.py
fi
jupyter-book build . --all -W -n --keep-going
echo "book built in $(( $(date +%s) - start )) s: open _build/html/index.html"
