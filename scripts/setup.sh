#!/usr/bin/env bash
# Set up everything on a fresh Linux machine with Python 3.11: a virtual environment in .venv,
# PyTorch (the CPU build where there is no GPU; an existing torch is never replaced),
# the pinned requirements and the library itself (editable). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
if [ ! -f .venv/.ph-setup-done ] || [ requirements.txt -nt .venv/.ph-setup-done ] || [ pyproject.toml -nt .venv/.ph-setup-done ]; then
  python -m pip install -q --upgrade pip
  if ! python -c "import torch" 2>/dev/null; then
    # torch==2.13.0 is served as a CPU-only build here; on a GPU machine it brings CUDA.
    python -m pip install -q "torch==2.13.0"
  fi
  python -m pip install -q -r requirements.txt
  python -m pip install -q --no-deps -e .
  python -m ipykernel install --sys-prefix --name python3 >/dev/null
  touch .venv/.ph-setup-done
fi
