#!/usr/bin/env bash
# Set up everything on a fresh Linux machine with Python 3.11: a virtual environment in .venv,
# PyTorch (the CPU build where there is no GPU; an existing torch is never replaced),
# the pinned requirements and the library itself (editable), Debian's chromium for the browser
# test and the book's offline web assets. Safe to run again.
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

# System packages, only where we are root and apt-get works: Debian's chromium for the browser
# test (tests/test_browser.py; Playwright drives it, it never downloads a browser) and npm for the
# web assets below. Without root the browser test says what is missing.
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    if [ -z "${PH_APT_UPDATED:-}" ]; then apt-get update -qq; PH_APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    echo "setup.sh: please install the Debian package(s) $* (needs root)" >&2
    return 1
  fi
}
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium || true
fi

# Web assets the rendered book serves itself instead of loading them from a CDN (see
# book/_ext/offline_assets.py): the ipywidgets HTML manager and RequireJS, pinned and checked.
# MathJax 3 comes from PyPI (django-static-mathjax in requirements.txt).
WEB=.venv/web-assets
HTML_MANAGER=1.0.15 HTML_MANAGER_SHA256=2b9d65cb7913e1c7d671757a10008b32c9c2448d4429513371e55c07d6107638
REQUIREJS=2.3.8 REQUIREJS_SHA256=777158e89275e16bd51aec3ef714fbcb5dc45789e7078659933bc814916d7dec
if [ ! -f "$WEB/.done-$HTML_MANAGER-$REQUIREJS" ]; then
  if ! command -v npm >/dev/null 2>&1 && ! apt_install npm; then
    echo "setup.sh: npm is needed once, to fetch the book's web assets from the npm registry" >&2
    exit 1
  fi
  rm -rf "$WEB" && mkdir -p "$WEB/tgz"
  (cd "$WEB/tgz" && npm pack --silent "@jupyter-widgets/html-manager@$HTML_MANAGER" "requirejs@$REQUIREJS" >/dev/null)
  echo "$HTML_MANAGER_SHA256  $WEB/tgz/jupyter-widgets-html-manager-$HTML_MANAGER.tgz" | sha256sum -c --quiet
  echo "$REQUIREJS_SHA256  $WEB/tgz/requirejs-$REQUIREJS.tgz" | sha256sum -c --quiet
  mkdir -p "$WEB/html-manager" "$WEB/requirejs"
  tar -xzf "$WEB/tgz/jupyter-widgets-html-manager-$HTML_MANAGER.tgz" -C "$WEB/html-manager" --strip-components 1
  tar -xzf "$WEB/tgz/requirejs-$REQUIREJS.tgz" -C "$WEB/requirejs" --strip-components 1
  rm -rf "$WEB/tgz"
  touch "$WEB/.done-$HTML_MANAGER-$REQUIREJS"
fi
