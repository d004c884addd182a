#!/usr/bin/env bash
# Recipe of the shipped default models (64x64, trained on the ~1k demo faces on a 2-core CPU).
# Each step resumes where it stopped (checkpoints in $RUNS); run it again after an interruption.
#   RUNS=/path/outside/git bash scripts/train_default_models.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs}
DIFFAE_STEPS=${DIFFAE_STEPS:-1300}
PADA_STEPS=${PADA_STEPS:-600}

python3 -m pada.cli.main data demo --out data/demo

# 1. DiffAE (pada64) on the aligned 64x64 demo faces, flips on, EMA 0.999
python3 -m pada.cli.main train diffae --data data/demo/aligned/64 --preset pada64 --out "$RUNS/diffae64" \
  --steps "$DIFFAE_STEPS" --batch-size 32 --lr 2e-4 --ema-decay 0.999 --seed 0 --num-workers 1 \
  --log-every 10 --sample-every 1000 --ckpt-every 100 --no-progress --set warmup_steps=200 --resume
python3 -m pada.cli.main train diffae --export-from "$(ls "$RUNS"/diffae64/checkpoints/step_*.pt | tail -1)" \
  --out src/pada/networks/weights/diffae_demo64.safetensors --fp16-export --online
# (--online: this short run's EMA, decay 0.999 without warm-up, still held ~27 % of the random init; a longer
#  run should add --set ema_warmup=true and export the EMA)

# 2. FaceCLIP heads (already shipped; deterministic)
# python3 -m pada.cli.main train faceclip --data data/demo --out src/pada/vl/weights/faceclip.safetensors \
#   --cache "$RUNS/faceclip/cache" --threads 1

# 3. PADA age encoder + modulation on top (frozen DiffAE, FaceCLIP, dlib-age, SFace)
python3 -m pada.cli.main train pada --data data/demo --diffae diffae-demo64 --vl faceclip --out "$RUNS/pada64" \
  --steps "$PADA_STEPS" --batch-size 8 --lr 1e-3 --seed 0 --log-every 10 --ckpt-every 100 \
  --sample-faces 0 --no-progress --resume
cp "$RUNS/pada64/pada.safetensors" src/pada/aging/weights/pada_demo64.safetensors
