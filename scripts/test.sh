#!/usr/bin/env bash
# The test command: library tests (pytest) and every notebook of the book under nbval, in the
# fast smoke mode (PH_FAST=1). Prints its duration.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh
. .venv/bin/activate
export PH_FAST=1 PYTHONHASHSEED=0
set +e
python -m pytest tests book --nbval-lax --nbval-sanitize-with tests/sanitize.cfg -p no:cacheprovider "$@"
rc=$?
set -e
echo "test command took $(( $(date +%s) - start )) s"
exit $rc
