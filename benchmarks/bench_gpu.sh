#!/usr/bin/env bash
# One prepared GPU measurement of pada (see benchmarks/bench_gpu.py): the aging job at 256 px (8 futures,
# 25-step inversion + 25-step render) per execution option, and PADA training throughput at batch 24.
# Meant to finish in under 8 minutes on an H100/H200 (a 7.5-minute hard limit; the Python side stops
# starting new measurements after --budget-s 420 s). Extra arguments go to bench_gpu.py, e.g. --tiny for the
# CPU smoke run. Writes bench_gpu.json (or $OUT/bench_gpu.json when $OUT is set) and prints the JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
out="${OUT:-.}/bench_gpu.json"
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 450 python3 benchmarks/bench_gpu.py --json "$out" "$@"
