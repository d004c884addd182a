"""How few DDIM steps keep the quality? Inversion / render step counts vs quality, with a PADA model (JSON).

For each ``(inversion steps, render steps)`` pair, on held-out demo faces (the test split ``pada train``
leaves out) and the shipped model by default:

* ``recon``: DiffAE reconstruction x -> DDIM inversion -> render with z_src: PSNR / SSIM / SFace cosine to
  the input (what ``bench_diffae_quality.py`` reports at one setting);
* ``aged``: what ``pada age`` returns (PADA mean PAE for the face's own gender at ``--target``, the face's
  inverted x_T): PSNR and SFace cosine to the aged output of the reference setting (the first pair,
  25/25 = the paper's), SFace cosine to the input (identity kept), the dlib age estimate (mean and mean
  absolute difference to the reference's);
* ``cpu_s_per_face``: single-thread CPU seconds of one face's inversion + render (``pada age -n 8``
  costs about ``inv + 8 * render`` of those image-steps).

    python3 benchmarks/bench_steps_quality.py                       # pada-demo64, 12 faces
    python3 benchmarks/bench_steps_quality.py --pairs 25/25,10/10 --max-faces 24
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="pada-demo64", help="PADA model (registry name or file)")
    ap.add_argument("--data", default="data/demo", help="demo folder (aligned/<size>/ + labels.csv)")
    ap.add_argument("--max-faces", type=int, default=12)
    ap.add_argument("--pairs", default=DEFAULT_PAIRS,
                    help="comma list of INV/RENDER step pairs; the first is the reference")
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
    pairs = [tuple(int(v) for v in p.split("/")) for p in args.pairs.split(",") if p]
    rows, ref_aged, ref_age = [], None, None
    for inv, ren in pairs:
        print(f"[bench_steps_quality] {inv}/{ren}", file=sys.stderr, flush=True)
        c0 = time.process_time()
        x_T = diffae.encode_stochastic(x, z, T=inv)  # noqa: N806
        c1 = time.process_time()
        recon = diffae.render(x_T, z, T=ren)
        c2 = time.process_time()
        aged = diffae.render(x_T, z_age, T=ren)
        with torch.inference_mode():
            age = age_critic(aged).age.float()
            row = {
                "inversion_steps": inv, "render_steps": ren,
                "recon": {"psnr": float(psnr(recon, x).mean()), "ssim": float(ssim(recon, x).mean()),
                          "sface_cos": float(identity_similarity(sface, x, recon).mean())},
                "aged": {"sface_cos_to_input": float(identity_similarity(sface, x, aged).mean()),
                         "age_mean": float(age.mean())},
                "cpu_s_per_face": {"inversion": round((c1 - c0) / n, 4), "render": round((c2 - c1) / n, 4)},
            }
            if ref_aged is None:
                ref_aged, ref_age = aged, age
            else:
                row["aged"].update({"psnr_to_reference": float(psnr(aged, ref_aged).mean()),
                                    "sface_cos_to_reference": float(identity_similarity(sface, ref_aged,
                                                                                         aged).mean()),
                                    "age_mae_to_reference": float((age - ref_age).abs().mean())})
        rows.append(row)
    out = {"model": args.model, "faces": n, "image_size": size, "target": args.target,
           "reference": f"{pairs[0][0]}/{pairs[0][1]}", "threads": args.threads, "rows": rows}
    emit_json(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
