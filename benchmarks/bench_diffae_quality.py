"""Does the semantic code z carry the face? DiffAE quality on held-out faces (JSON).

The check that must pass before PADA is trained on a DiffAE (issue 7): on faces the DiffAE never saw,

* ``recon``: encode -> stochastic encoding (DDIM inversion, ``--enc-steps``) -> render (``--steps``):
  PSNR / SSIM / SFace cosine to the input (target PSNR >= 25 dB);
* ``z_only``: render from fresh Gaussian noise with z alone (``--seeds`` draws): SFace cosine to the input
  (target >= 0.4; SFace's same-person threshold is about 0.36) and PSNR;
* references: SFace cosine of a face with its mirror image and of different people (the scale of the score).

    python3 benchmarks/bench_diffae_quality.py --diffae runs/diffae64/diffae_ema.safetensors --data data/demo
    python3 benchmarks/bench_diffae_quality.py --diffae runs/diffae64/checkpoints/step_00001300.pt

``--diffae`` takes a pada/official DiffAE file, a registry name, or a ``pada train diffae`` training
checkpoint (its EMA weights). Held-out faces: the test split of ``pada.data.datasets`` (the split
``pada train diffae`` leaves out).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch


def load_diffae(spec: str):
    from pada.diffae import DiffAE

    if spec.endswith(".pt"):
        from pada.training.diffae_task import load_checkpoint_ema

        unet, info = load_checkpoint_ema(spec)
        return DiffAE(unet), {"source": spec, "step": info["step"]}
    return DiffAE.from_pretrained(spec), {"source": spec}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--diffae", required=True)
    p.add_argument("--data", default="data/demo", help="demo folder (aligned/<size>/ + labels.csv)")
    p.add_argument("--test-fraction", type=float, default=0.05)
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="held-out faces (default) or training faces (memorisation vs generalisation)")
    p.add_argument("--max-faces", type=int, default=24)
    p.add_argument("--steps", type=int, default=25, help="render DDIM steps")
    p.add_argument("--enc-steps", type=int, default=50, help="stochastic-encoding DDIM steps")
    p.add_argument("--seeds", type=int, default=2, help="fresh-noise renders per face")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", default="", help="also write the JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from pada.critics.registry import load_critic
    from pada.data.datasets import AlignedFaceDataset
    from pada.data.demo import aligned_dir
    from pada.evaluation.metrics import identity_similarity, psnr, ssim

    diffae, info = load_diffae(args.diffae)
    size = int(diffae.unet.config.image_size)
    data = Path(args.data)
    ds = AlignedFaceDataset(aligned_dir(data, size), data / "labels.csv", size=size, split=args.split,
                            test_fraction=args.test_fraction)
    n = min(len(ds), args.max_faces)
    x = torch.stack([ds[i]["image"] for i in range(n)])
    sface = load_critic("sface")
    t0 = time.perf_counter()
    with torch.inference_mode():
        z = diffae.encode(x)
        x_T = diffae.encode_stochastic(x, z, T=args.enc_steps)
        recon = diffae.render(x_T, z, T=args.steps)
        fresh = []
        for s in range(args.seeds):
            g = torch.Generator().manual_seed(1000 + s)
            noise = torch.randn(x.shape, generator=g)
            fresh.append(diffae.render(noise, z, T=args.steps))
        fresh = torch.stack(fresh, 1)  # (n, seeds, 3, H, W)
        id_recon = identity_similarity(sface, x, recon)
        id_fresh = identity_similarity(sface, x, fresh)
        id_mirror = identity_similarity(sface, x, x.flip(-1))
        id_other = identity_similarity(sface, x, x.roll(1, 0))
        # the semantics PADA edits: does z alone carry the person's apparent age and gender?
        age_critic, gender_critic = load_critic("dlib-age"), load_critic("dlib-gender")
        flat = fresh.flatten(0, 1)
        age_in = age_critic(x).age.float().repeat_interleave(args.seeds)
        age_out = age_critic(flat).age.float()
        male_in = (gender_critic(x)[:, 1] > 0.5).repeat_interleave(args.seeds)
        male_out = gender_critic(flat)[:, 1] > 0.5
        other_agree = float((male_in == male_in.roll(args.seeds)).float().mean())
        age_corr = float(torch.corrcoef(torch.stack([age_in, age_out]))[0, 1]) if n > 2 else float("nan")
    seconds = time.perf_counter() - t0
    result = {
        "diffae": info, "faces": n, "split": args.split, "image_size": size, "steps": args.steps,
        "enc_steps": args.enc_steps,
        "recon": {"psnr": float(psnr(recon, x).mean()), "ssim": float(ssim(recon, x).mean()),
                  "sface_cos": float(id_recon.mean())},
        "z_only": {"psnr": float(psnr(fresh.flatten(0, 1), x.repeat_interleave(args.seeds, 0)).mean()),
                   "sface_cos": float(id_fresh.mean()), "seeds": args.seeds,
                   "age_corr": age_corr, "age_mae": float((age_in - age_out).abs().mean()),
                   "gender_agreement": float((male_in == male_out).float().mean()),
                   "gender_agreement_other_people": other_agree},
        "reference": {"sface_cos_mirror": float(id_mirror.mean()),
                      "sface_cos_other_people": float(id_other.mean())},
        "targets": {"recon_psnr": 25.0, "z_only_sface_cos": 0.4},
        "seconds": round(seconds, 1), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    result["targets_met"] = {"recon_psnr": result["recon"]["psnr"] >= 25.0,
                             "z_only_sface_cos": result["z_only"]["sface_cos"] >= 0.4}
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
