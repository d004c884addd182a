"""Does the semantic code z carry the face? DiffAE quality on held-out faces (JSON).

The check that must pass before PADA is trained on a DiffAE (issue 7): on faces the DiffAE never saw,

* ``recon``: encode -> stochastic encoding (DDIM inversion, ``--enc-steps``) -> render (``--steps``):
  PSNR / SSIM / SFace cosine to the input (target PSNR >= 25 dB);
* ``z_only``: render from fresh Gaussian noise with z alone (``--seeds`` draws): SFace cosine to the input
  (target >= 0.4; SFace's same-person threshold is about 0.36) and PSNR;
* ``z_swap``: render with the inverted x_T of face A and the z of face B, for pairs of faces whose estimated
  ages differ by ``--swap-min-gap`` years or more: does z carry the attributes aging changes? Reports the
  share of the way the estimated age moves from A toward B (median over pairs; target >= 0.5),
  SFace(out, A) (the person stays, target >= 0.5), SFace(out, B) - SFace(out, A), and how often the
  estimated gender follows B where A and B differ;
* ``x0_follow``: one network step, no sampling chain: face A noised to t (300, 500, 700, 900), the clean
  image x̂0 the network predicts with face B's z (B = the next face); correlation of x̂0's estimated age with
  B's and with A's. High here but low in ``z_only`` means the network reads z but the chain of steps loses
  it (bake-off round 5 in docs/diffae.md);
* ``coarse_ceiling`` (networks with a coarse path): SFace cosine to the input of coarse(z) alone, upsampled
  to the image size, beside the same for the input's own area-downsampled image at the coarse size. When z
  reaches the UNet only through coarse(z), the first bounds what z-only renders can keep of the person
  (measured in docs/diffae.md: the eigenface code of 128 components keeps 0.25-0.28, the 32x32 image 0.76);
* references: SFace cosine of a face with its mirror image and of different people (the scale of the score).

``--grid out.png`` writes a picture: rows of input, reconstruction, z-only render (and coarse(z) for a
network with a coarse path), then z-swap triplets (A, B, A's x_T with B's z).

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


def load_diffae(spec: str, device: str | torch.device = "cpu"):
    from pada.diffae import DiffAE

    if spec.endswith(".pt"):
        from pada.diffae.train import load_checkpoint_ema

        unet, info = load_checkpoint_ema(spec)
        return DiffAE(unet).to(device), {"source": spec, "step": info["step"]}
    return DiffAE.from_pretrained(spec, device=device), {"source": spec}


def swap_pairs(age: torch.Tensor, min_gap: float, limit: int) -> list[tuple[int, int]]:
    """Ordered pairs (a, b), a != b, with |age_a - age_b| >= min_gap; ``limit`` of them evenly spread."""
    n = len(age)
    pairs = [(a, b) for a in range(n) for b in range(n) if a != b and abs(float(age[a] - age[b])) >= min_gap]
    if len(pairs) > limit > 0:
        step = len(pairs) / limit
        pairs = [pairs[int(i * step)] for i in range(limit)]
    return pairs


def z_swap(diffae, x, z, x_T, age_x, age_rec, male_x, age_critic, gender_critic, sface,  # noqa: N803
           args) -> dict:
    """Render A's inverted x_T with B's z (module docstring, ``z_swap``). ``age_rec``: estimated ages of the
    reconstructions, the base of ``age_fraction_from_recon`` (removes the estimator's reading of
    reconstruction error)."""
    from pada.evaluation.metrics import identity_similarity

    pairs = swap_pairs(age_x, args.swap_min_gap, args.swap_pairs) if args.swap_pairs else []
    if not pairs:
        return {"scores": {"pairs": 0}, "triplets": None}
    a = torch.tensor([p[0] for p in pairs])
    b = torch.tensor([p[1] for p in pairs])
    out = diffae.render(x_T[a], z[b], T=args.steps)
    age_out = age_critic(out).age.float()
    frac = (age_out - age_x[a]) / (age_x[b] - age_x[a])
    frac_rec = (age_out - age_rec[a]) / (age_x[b] - age_rec[a])
    id_a = identity_similarity(sface, x[a], out)
    id_b = identity_similarity(sface, x[b], out)
    male_out = gender_critic(out)[:, 1] > 0.5
    differ = male_x[a] != male_x[b]
    follows = float((male_out[differ] == male_x[b][differ]).float().mean()) if differ.any() else float("nan")
    scores = {"pairs": len(pairs), "min_gap": args.swap_min_gap,
              "age_fraction_median": float(frac.median()), "age_fraction_mean": float(frac.mean()),
              "age_fraction_from_recon_median": float(frac_rec.median()),
              "age_gap_median": float((age_x[b] - age_x[a]).abs().median()),
              "sface_to_a": float(id_a.mean()), "sface_to_b": float(id_b.mean()),
              "sface_b_minus_a": float((id_b - id_a).mean()),
              "gender_follows_b": follows, "gender_pairs": int(differ.sum())}
    k = min(8, len(pairs))
    return {"scores": scores, "triplets": (x[a[:k]], x[b[:k]], out[:k])}


def x0_follow(diffae, x, z, age_x, age_critic, ts=(300, 500, 700, 900)) -> dict:  # noqa: ANN001
    """Module docstring, ``x0_follow``: {t: {"age_corr_to_z_face", "age_corr_to_x_t_face"}}."""
    from pada import diffusion as D

    other = torch.roll(torch.arange(x.shape[0]), 1)
    g = torch.Generator().manual_seed(77)
    out = {}
    for t in ts:
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        x_t = D.q_sample(diffae.schedule, x, tt, torch.randn(x.shape, generator=g).to(x.device))
        x0 = D.predict_x0(diffae.schedule, x_t, tt, diffae.eps(x_t, tt, z[other])).clamp(-1, 1)
        a = age_critic(x0).age.float()
        out[str(t)] = {"age_corr_to_z_face": float(torch.corrcoef(torch.stack([a, age_x[other]]))[0, 1]),
                       "age_corr_to_x_t_face": float(torch.corrcoef(torch.stack([a, age_x]))[0, 1])}
    return out


def coarse_ceiling(diffae, x, z, sface) -> dict:  # noqa: ANN001
    """Module docstring, ``coarse_ceiling``: {} for a network without a coarse path."""
    from pada.evaluation.metrics import identity_similarity

    size = int(diffae.unet.config.coarse_size or 0)
    if not size:
        return {}

    def up(img: torch.Tensor) -> torch.Tensor:
        return upsample(img, x).clamp(-1, 1)

    coarse = diffae.unet.coarse_image(z)
    small = torch.nn.functional.adaptive_avg_pool2d(x.float(), size)
    return {"coarse_size": size, "sface_coarse_z": float(identity_similarity(sface, x, up(coarse)).mean()),
            "sface_downsampled_input": float(identity_similarity(sface, x, up(small)).mean())}


def upsample(img: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A coarse image (n, 3, s, s) bilinearly upsampled to the size of ``like`` (float32)."""
    return torch.nn.functional.interpolate(img.float(), size=like.shape[-2:], mode="bilinear",
                                           align_corners=False)


def save_grid(rows: list[torch.Tensor], triplets, path: Path) -> None:
    """Rows of images (each (n, 3, H, W) in [-1, 1]) then z-swap triplet rows, as one PNG."""
    from pada.faces.grid import save_grid as write_grid

    k = min(8, rows[0].shape[0])
    rows = [r[:k] for r in rows]
    if triplets is not None:
        rows += [t for t in triplets]
    width = max(r.shape[0] for r in rows)
    pad = [torch.cat([r, r.new_ones(width - r.shape[0], *r.shape[1:])]) if r.shape[0] < width else r
           for r in rows]
    write_grid(torch.cat(pad), path, nrow=width)


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
    p.add_argument("--swap-pairs", type=int, default=24, help="z-swap pairs (0: skip the z-swap score)")
    p.add_argument("--swap-min-gap", type=float, default=20.0, help="z-swap pairs differ by >= this age")
    p.add_argument("--grid", default="", help="write a PNG of the renders and z-swaps here")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda, cuda:N or auto (the GPU when there is one); the fresh noise is drawn on "
                        "the CPU, so z-only renders start from the same noise on any device")
    p.add_argument("--json", default="", help="also write the JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {args.device}: no CUDA GPU is visible to torch {torch.__version__}")

    from pada.critics.registry import load_critic
    from pada.data.datasets import AlignedFaceDataset
    from pada.data.demo import aligned_dir
    from pada.evaluation.metrics import identity_similarity, psnr, ssim

    diffae, info = load_diffae(args.diffae, device)
    size = int(diffae.unet.config.image_size)
    data = Path(args.data)
    ds = AlignedFaceDataset(aligned_dir(data, size), data / "labels.csv", size=size, split=args.split,
                            test_fraction=args.test_fraction)
    n = min(len(ds), args.max_faces)
    x = torch.stack([ds[i]["image"] for i in range(n)]).to(device)
    sface = load_critic("sface", device=device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        z = diffae.encode(x)
        x_T = diffae.encode_stochastic(x, z, T=args.enc_steps)
        recon = diffae.render(x_T, z, T=args.steps)
        fresh = []
        for s in range(args.seeds):
            g = torch.Generator().manual_seed(1000 + s)
            noise = torch.randn(x.shape, generator=g).to(device)
            fresh.append(diffae.render(noise, z, T=args.steps))
        fresh = torch.stack(fresh, 1)  # (n, seeds, 3, H, W)
        id_recon = identity_similarity(sface, x, recon)
        id_fresh = identity_similarity(sface, x, fresh)
        id_mirror = identity_similarity(sface, x, x.flip(-1))
        id_other = identity_similarity(sface, x, x.roll(1, 0))
        # the semantics PADA edits: does z alone carry the person's apparent age and gender?
        age_critic = load_critic("dlib-age", device=device)
        gender_critic = load_critic("dlib-gender", device=device)
        flat = fresh.flatten(0, 1)
        age_in = age_critic(x).age.float().repeat_interleave(args.seeds)
        age_out = age_critic(flat).age.float()
        male_in = (gender_critic(x)[:, 1] > 0.5).repeat_interleave(args.seeds)
        male_out = gender_critic(flat)[:, 1] > 0.5
        other_agree = float((male_in == male_in.roll(args.seeds)).float().mean())
        age_corr = float(torch.corrcoef(torch.stack([age_in, age_out]))[0, 1]) if n > 2 else float("nan")
        age_x, male_x = age_critic(x).age.float(), gender_critic(x)[:, 1] > 0.5
        age_rec = age_critic(recon).age.float()
        swap = z_swap(diffae, x, z, x_T, age_x, age_rec, male_x, age_critic, gender_critic, sface, args)
        follow = x0_follow(diffae, x, z, age_x, age_critic) if n > 2 else {}
        ceiling = coarse_ceiling(diffae, x, z, sface)
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
        "z_swap": swap["scores"],
        "x0_follow": follow,
        "coarse_ceiling": ceiling,
        "reference": {"sface_cos_mirror": float(id_mirror.mean()),
                      "sface_cos_other_people": float(id_other.mean())},
        "targets": {"recon_psnr": 25.0, "z_only_sface_cos": 0.4, "z_only_age_corr": 0.6,
                    "z_only_gender_agreement": 0.9, "z_swap_age_fraction": 0.5, "z_swap_sface_to_a": 0.5},
        "seconds": round(seconds, 1), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": platform.machine(), "device": str(device),
    }
    result["targets_met"] = {"recon_psnr": result["recon"]["psnr"] >= 25.0,
                             "z_only_sface_cos": result["z_only"]["sface_cos"] >= 0.4,
                             "z_only_age_corr": result["z_only"]["age_corr"] >= 0.6,
                             "z_only_gender_agreement": result["z_only"]["gender_agreement"] >= 0.9}
    if swap["scores"].get("pairs"):
        result["targets_met"]["z_swap_age_fraction"] = swap["scores"]["age_fraction_median"] >= 0.5
        result["targets_met"]["z_swap_sface_to_a"] = swap["scores"]["sface_to_a"] >= 0.5
    if args.grid:
        rows = [x, recon, fresh[:, 0]]
        if diffae.unet.config.coarse_size:
            with torch.inference_mode():
                c = diffae.unet.coarse_image(z)
            rows.append(upsample(c, x))
        save_grid(rows, swap["triplets"], Path(args.grid))
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
