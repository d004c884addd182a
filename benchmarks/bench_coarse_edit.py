"""What PADA's edit adds to the coarse image, and which faces it breaks (JSON).

On a DiffAE with a coarse image path (``coarse_size``; the shipped ``diffae-demo64``), z reaches the image
through coarse(z), a small image fed to the UNet, so an edit z_src → z_age adds the image
Δc = coarse(z_age) − coarse(z_src) to the face's coarse image. For each held-out face and target this script
ages the face as ``pada age`` does (``AgingPipeline.age(..., n, seed=i)``, the model's defaults or the
options given), takes Δc of the outputs' mean code, and scores the outputs' skin structure
(:func:`pada.evaluation.scores.structure_change`). Per target the JSON holds:

* ``pairwise_cosine``: the mean cosine between two faces' Δc (1 = one fixed image added to every face);
* ``cosine_to_mean``: each face's Δc against the mean Δc (mean, min, max);
* ``relative_size``: ‖Δc‖ / the input's coarse contrast ‖coarse(z_src) − its mean‖ (mean, min, max; what
  ``--contrast-bound`` bounds);
* ``structure_mean`` and ``spearman``: the rank correlation over faces of the structure lost with the
  relative size, with the cosine to the mean Δc and with the face's distance from the mean coarse face:
  which of them tells the faces that break.

About 2 min for 32 faces and three targets on 2 CPU cores.

    python3 benchmarks/bench_coarse_edit.py --data data/demo --max-images 32
    python3 benchmarks/bench_coarse_edit.py --data data/demo --option contrast_bound=0.5
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch


def coarse_edit_stats(c_src: torch.Tensor, c_age: torch.Tensor, structure: torch.Tensor) -> dict:
    """Statistics of the coarse-image edits of N faces: ``c_src`` / ``c_age`` (N, C, s, s) the coarse images
    of the input and edited codes, ``structure`` (N,) the structure each face's results lost (module
    docstring). Needs N >= 2."""
    from pada.evaluation.scores import spearman

    n = c_src.shape[0]
    if n < 2 or c_age.shape != c_src.shape or structure.shape != (n,):
        raise ValueError(f"need N >= 2 faces with matching shapes, got {tuple(c_src.shape)}, "
                         f"{tuple(c_age.shape)}, {tuple(structure.shape)}")
    d = (c_age - c_src).flatten(1).double()
    u = torch.nn.functional.normalize(d, dim=1)
    pair = (u @ u.T)[~torch.eye(n, dtype=torch.bool)].mean()
    to_mean = u @ torch.nn.functional.normalize(d.mean(0), dim=0)
    centred = c_src.flatten(1).double()
    contrast = (centred - centred.mean(1, keepdim=True)).norm(dim=1).clamp_min(1e-12)
    rel = d.norm(dim=1) / contrast
    far = (centred - centred.mean(0)).norm(dim=1)
    s = structure.double()

    def spread(v: torch.Tensor) -> dict:
        return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}

    return {"faces": n, "pairwise_cosine": float(pair), "cosine_to_mean": spread(to_mean),
            "relative_size": spread(rel), "structure_mean": float(s.mean()),
            "spearman": {"relative_size": spearman(s, rel), "cosine_to_mean": spearman(s, to_mean),
                         "distance_from_mean_face": spearman(s, far)}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="pada-demo64", help="PADA model file or registry name")
    ap.add_argument("--data", default="data/demo")
    ap.add_argument("--max-images", type=int, default=32)
    ap.add_argument("--targets", default="toddler,sixties,eighties", help="age-group words (comma-separated)")
    ap.add_argument("--n", type=int, default=4, help="results per face and target")
    ap.add_argument("--sampler", default="multistep")
    ap.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="extra AgingPipeline.age option, e.g. contrast_bound=0.5 (repeatable)")
    ap.add_argument("--out", default=None, help="write the JSON here (default: print only)")
    args = ap.parse_args(argv)

    from pada.aging.pipeline import AgingPipeline
    from pada.data.groups import description, group_by_word
    from pada.errors import PadaError
    from pada.evaluation.runner import load_eval_data
    from pada.evaluation.scores import structure_change
    from pada.validation import parse_literal, split_key_value

    try:
        options = {}
        for item in args.option:
            name, value = split_key_value(item, "--option", "NAME=VALUE", need_value=True)
            options[name] = parse_literal(value)
        groups = [group_by_word(w.strip()) for w in args.targets.split(",") if w.strip()]
        pipe = AgingPipeline.from_pretrained(args.model, sampler=args.sampler)
        unet = pipe.diffae.unet
        if getattr(unet, "coarse", None) is None:
            raise PadaError(f"{args.model}: its DiffAE has no coarse image path; nothing to measure")
        data = load_eval_data(args.data, int(unet.config.image_size), max_images=args.max_images)
        if data.images.shape[0] < 2:
            raise PadaError(f"{args.data}: need at least 2 test faces, got {data.images.shape[0]}")
    except (PadaError, ValueError, OSError) as e:
        print(f"bench_coarse_edit: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    per = {}
    with torch.no_grad():
        for g in groups:
            c_src, c_age, lost = [], [], []
            for i in range(data.images.shape[0]):
                x = data.images[i:i + 1]
                try:
                    res = pipe.age(x, text=description(g, data.genders[i]), n=args.n, seed=i, **options)
                except (PadaError, TypeError) as e:
                    print(f"bench_coarse_edit: {str(e).splitlines()[0]}", file=sys.stderr)
                    return 2
                z_src = pipe.encode(x)
                c_src.append(unet.coarse_image(z_src).float())
                c_age.append(unet.coarse_image(res.z_age.to(z_src).mean(0, keepdim=True)).float())
                lost.append(float(structure_change(res.images, x).mean()))
            per[g.word] = coarse_edit_stats(torch.cat(c_src), torch.cat(c_age), torch.tensor(lost))
    out = {"model": args.model, "data": data.source, "n": args.n, "options": options, "per_target": per,
           "seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__,
           "machine": platform.machine()}
    from pada.outputs import print_json

    print_json(out, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
