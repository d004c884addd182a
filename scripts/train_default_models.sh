#!/usr/bin/env bash
# Recipe of the shipped default models (64x64, trained on the ~1k demo faces on a 2-core CPU).
# Each step resumes where it stopped (checkpoints in $RUNS); run it again after an interruption.
#   RUNS=/path/outside/git bash scripts/train_default_models.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs}
DIFFAE_V_STEPS=${DIFFAE_V_STEPS:-800}
DIFFAE_E_STEPS=${DIFFAE_E_STEPS:-300}
PADA_STEPS=${PADA_STEPS:-400}

python3 -m pada.cli.main data demo --out data/demo

# 1. DiffAE (pada64) on the aligned 64x64 demo faces, flips on, batch 32, lr 2e-4, EMA 0.999.
# 1a. the official eps-prediction recipe: 1,300 steps without EMA warm-up, then resumed to 1,900 with it
#     (as the shipped run went; a fresh run can use --set ema_warmup=true from the start)
DIFFAE=(--data data/demo/aligned/64 --preset pada64 --batch-size 32 --lr 2e-4 --ema-decay 0.999 --seed 0
        --num-workers 1 --log-every 10 --ckpt-every 100 --no-progress)
python3 -m pada.cli.main train diffae "${DIFFAE[@]}" --out "$RUNS/diffae64" --steps 1300 --sample-every 1000 \
  --set warmup_steps=200 --resume
python3 -m pada.cli.main train diffae "${DIFFAE[@]}" --out "$RUNS/diffae64" --steps 1900 --sample-every 1000 \
  --set warmup_steps=200 --set ema_warmup=true --resume
# 1b. fine-tune into a v-prediction network (docs/diffae.md: with eps-prediction z did not yet carry the
#     face), EMA with warm-up, 800 steps
python3 -m pada.cli.main train diffae "${DIFFAE[@]}" --out "$RUNS/diffae64v" --steps 800 \
  --model-set prediction=v --init-from "$RUNS/diffae64/checkpoints/step_00001900.pt" --sample-every 500 \
  --set warmup_steps=100 --set ema_warmup=true --resume
# 1c. half of each batch at noisy t, where only z helps (seed 1: new draws)
python3 -m pada.cli.main train diffae "${DIFFAE[@]}" --seed 1 --out "$RUNS/diffae64v2" --steps "$DIFFAE_V_STEPS" \
  --model-set prediction=v --high-t-fraction 0.5 --init-from "$RUNS/diffae64v/checkpoints/step_00000800.pt" \
  --sample-every 500 --set warmup_steps=50 --set ema_warmup=true --resume
python3 -m pada.cli.main train diffae --export-from "$RUNS/diffae64v2/checkpoints/step_$(printf %08d "$DIFFAE_V_STEPS").pt" \
  --out "$RUNS/diffae64v2.safetensors" --fp16-export
# 1d. the eigenface code (docs/diffae.md, bake-off round 2): z's last 128 entries become the PCA code of the
#     32x32 image and z reaches the UNet only through the coarse image; 300 steps (the shipped run warm-started
#     from the fp16 export of 1c, as here)
python3 -m pada.cli.main train diffae --data data/demo/aligned/64 --preset pada64e --init-from "$RUNS/diffae64v2.safetensors" \
  --high-t-fraction 0.5 --coarse-weight 1 --z-noise 0.1 --batch-size 32 --lr 3e-4 --ema-decay 0.999 --seed 0 \
  --num-workers 0 --log-every 10 --ckpt-every 100 --sample-every 500 --no-progress \
  --set warmup_steps=30 --set ema_warmup=true --out "$RUNS/diffae64e" --steps "$DIFFAE_E_STEPS" --resume
python3 -m pada.cli.main train diffae --export-from "$RUNS/diffae64e/checkpoints/step_$(printf %08d "$DIFFAE_E_STEPS").pt" \
  --out src/pada/networks/weights/diffae_demo64.safetensors --fp16-export
python3 benchmarks/bench_diffae_quality.py --diffae src/pada/networks/weights/diffae_demo64.safetensors --max-faces 16

# 2. FaceCLIP heads (already shipped; deterministic)
# python3 -m pada.cli.main train faceclip --data data/demo --out src/pada/vl/weights/faceclip.safetensors \
#   --cache "$RUNS/faceclip/cache" --threads 1

# 3. PADA age encoder + modulation on top (frozen DiffAE, FaceCLIP, dlib-age, SFace), v3 recipe: the guards
#    against critic-fooling texture (docs/pada_method.md): bounded latent shift inside the 16 leading directions
#    of real codes, shift norm, augmented critic views, t in [200, 900), no same-group triplets, small PAE
#    sigma, wider text samples + mode seeking, and the data prior L_dir (the linear age direction, x2).
python3 -m pada.cli.main train pada --data data/demo --diffae diffae-demo64 --vl faceclip --out "$RUNS/pada64v3" \
  --steps "$PADA_STEPS" --batch-size 8 --lr 3e-4 --seed 0 --log-every 10 --ckpt-every 100 \
  --sample-faces 0 --no-progress --resume \
  --pada-set max_shift=0.35 --pada-set shift_subspace=16 --pada-set sigma_init=0.02 --pada-set eps=0.02 \
  --loss-set lambda_id=0.6 --loss-set norm_target=shift --loss-set lambda_norm=0.1 --loss-set augment=0.5 \
  --loss-set skip_same_group=true --loss-set lambda_div=0.5 --loss-set div_target=0.05 \
  --loss-set t_min=200 --loss-set t_max=900 --loss-set lambda_dir=50 --loss-set dir_gain=2
cp "$RUNS/pada64v3/pada.safetensors" src/pada/aging/weights/pada_demo64.safetensors

# Experimental (issue 16 bake-off, not shipped): the coarse-image-path DiffAE, warm-started from the shipped one.
# python3 -m pada.cli.main train diffae --data data/demo/aligned/64 --preset pada64c --init-from diffae-demo64 \
#   --high-t-fraction 0.5 --z-noise 0.1 --batch-size 32 --lr 3e-4 --ema-decay 0.999 --seed 0 --num-workers 1 \
#   --log-every 10 --ckpt-every 100 --no-progress --set warmup_steps=30 --set ema_warmup=true \
#   --out "$RUNS/diffae64c" --steps 300 --resume
