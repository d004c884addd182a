"""How few sampling steps keep the quality? Sampler, inversion / render steps vs quality, PADA model (JSON).

For each ``[SAMPLER:]INV/RENDER[@SPACING]`` entry of ``--pairs`` (sampler ``ddim`` or ``multistep``, default
``--sampler``; spacing ``ddim`` (even in t, official) or ``logsnr``, default the sampler's own; see
:mod:`pada.diffusion.samplers`), on held-out demo faces (the test split ``pada train`` leaves out) and the
shipped model by default:

* ``recon``: DiffAE reconstruction x -> DDIM inversion -> render with z_src: PSNR / SSIM / SFace cosine to
  the input (what ``bench_diffae_quality.py`` reports at one setting);
* ``aged``: what ``pada age`` returns (PADA mean PAE for the face's own gender at ``--target``, the face's
  inverted x_T): PSNR and SFace cosine to the aged output of the reference setting (the first pair,
  25/25 = the paper's), SFace cosine to the input (identity kept), the dlib age estimate (mean and mean
  absolute difference to the reference's);
* ``--converged SPEC`` (e.g. ``multistep:50/50``): also PSNR / SFace of each aged output to that one's,
  a near-exact solution of the same ODE (``aged.*_to_converged``): how far each setting is from what
  its sampler approximates, apart from how far it is from the reference setting's own error;
* ``cpu_s_per_face``: single-thread CPU seconds of one face's inversion + render (``pada age -n 8``
  costs about ``inv + 8 * render`` of those image-steps).

    python3 benchmarks/bench_steps_quality.py                       # pada-demo64, 12 faces
    python3 benchmarks/bench_steps_quality.py --pairs 25/25,10/10 --max-faces 24
    python3 benchmarks/bench_steps_quality.py --pairs 25/25,multistep:10/10,ddim:10/10@logsnr \
        --converged multistep:50/50
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_diffae import emit_json  # noqa: E402

DEFAULT_PAIRS = "25/25,25/15,25/10,25/8,25/5,15/15,10/10,8/8,5/5"


def parse_spec(text: str, default_sampler: str) -> dict:
    """``[SAMPLER:]INV/RENDER[@SPACING]`` -> {sampler, spacing, inv, ren, label} (steps as sections)."""
    from pada.diffusion import get_sampler

    body, _, spacing = text.strip().partition("@")
    sampler, _, steps = body.rpartition(":")
    sampler = sampler or default_sampler
    spacing = spacing or get_sampler(sampler).spacing
    if spacing not in ("ddim", "logsnr"):
        raise SystemExit(f"bench_steps_quality: spacing {spacing!r} unknown in {text!r} (ddim | logsnr)")
    inv, ren = (int(v) for v in steps.split("/"))
    return {"sampler": sampler, "spacing": spacing, "inv": inv, "ren": ren,
            "label": f"{sampler}:{inv}/{ren}@{spacing}"}


def run(diffae, x, z, z_age, spec: dict):
    """(x_T, reconstruction, aged output, (inversion CPU s, render CPU s)) of one setting."""
    inv, ren, sampler = f"{spec['spacing']}{spec['inv']}", f"{spec['spacing']}{spec['ren']}", spec["sampler"]
    c0 = time.process_time()
    x_T = diffae.encode_stochastic(x, z, T=inv, sampler=sampler)  # noqa: N806
    c1 = time.process_time()
    recon = diffae.render(x_T, z, T=ren, sampler=sampler)
    c2 = time.process_time()
    aged = diffae.render(x_T, z_age, T=ren, sampler=sampler)
    return x_T, recon, aged, (c1 - c0, c2 - c1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="pada-demo64", help="PADA model (registry name or file)")
    ap.add_argument("--data", default="data/demo", help="demo folder (aligned/<size>/ + labels.csv)")
    ap.add_argument("--max-faces", type=int, default=12)
    ap.add_argument("--pairs", default=DEFAULT_PAIRS,
                    help="comma list of [SAMPLER:]INV/RENDER[@SPACING]; the first is the reference")
    ap.add_argument("--sampler", default="ddim", help="sampler of pairs that name none (ddim | multistep)")
    ap.add_argument("--converged", default="", help="a near-exact setting to compare the aged outputs with")
    ap.add_argument("--target", default="sixties", help="target decade word of the aging text")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from pada.aging.pipeline import AgingPipeline
    from pada.critics.registry import load_critic
    from pada.data.datasets import AlignedFaceDataset
    from pada.data.demo import aligned_dir
    from pada.evaluation.metrics import identity_similarity, psnr, ssim

    pipe = AgingPipeline.from_pretrained(args.model)
    diffae = pipe.diffae
    size = int(diffae.config.image_size)
    data = Path(args.data)
    ds = AlignedFaceDataset(aligned_dir(data, size), data / "labels.csv", size=size, split="test")
    n = min(len(ds), args.max_faces)
    items = [ds[i] for i in range(n)]
    x = torch.stack([it["image"] for it in items])
    texts = [("man's face in his " if it["gender"] == "male" else "woman's face in her ") + args.target
             for it in items]
    with torch.inference_mode():
        z = diffae.encode(x)
        z_age = torch.cat([pipe.modulate(z[i:i + 1], pipe.pae(text=t, n=1, high_diversity=False))
                           for i, t in enumerate(texts)])
    sface, age_critic = load_critic("sface"), load_critic("dlib-age")
    specs = [parse_spec(p, args.sampler) for p in args.pairs.split(",") if p]
    conv_aged = None
    if args.converged:
        spec = parse_spec(args.converged, args.sampler)
        print(f"[bench_steps_quality] converged {spec['label']}", file=sys.stderr, flush=True)
        conv_aged = run(diffae, x, z, z_age, spec)[2]
    rows, ref_aged, ref_age = [], None, None
    for spec in specs:
        print(f"[bench_steps_quality] {spec['label']}", file=sys.stderr, flush=True)
        x_T, recon, aged, (inv_s, ren_s) = run(diffae, x, z, z_age, spec)  # noqa: N806
        with torch.inference_mode():
            age = age_critic(aged).age.float()
            row = {
                "label": spec["label"], "sampler": spec["sampler"], "spacing": spec["spacing"],
                "inversion_steps": spec["inv"], "render_steps": spec["ren"],
                "recon": {"psnr": float(psnr(recon, x).mean()), "ssim": float(ssim(recon, x).mean()),
                          "sface_cos": float(identity_similarity(sface, x, recon).mean())},
                "aged": {"sface_cos_to_input": float(identity_similarity(sface, x, aged).mean()),
                         "age_mean": float(age.mean())},
                "cpu_s_per_face": {"inversion": round(inv_s / n, 4), "render": round(ren_s / n, 4)},
            }
            if conv_aged is not None:
                row["aged"].update({"psnr_to_converged": float(psnr(aged, conv_aged).mean()),
                                    "sface_cos_to_converged": float(identity_similarity(sface, conv_aged,
                                                                                        aged).mean())})
            if ref_aged is None:
                ref_aged, ref_age = aged, age
            else:
                row["aged"].update({"psnr_to_reference": float(psnr(aged, ref_aged).mean()),
                                    "sface_cos_to_reference": float(identity_similarity(sface, ref_aged,
                                                                                         aged).mean()),
                                    "age_mae_to_reference": float((age - ref_age).abs().mean())})
        rows.append(row)
    out = {"model": args.model, "faces": n, "image_size": size, "target": args.target,
           "reference": specs[0]["label"], "converged": args.converged or None, "threads": args.threads,
           "rows": rows}
    emit_json(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
