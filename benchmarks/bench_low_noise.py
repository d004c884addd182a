"""Low-level diversity by the share of fresh noise in each result's start (JSON).

With low-level diversity each result starts from √(1 − s²)·x_T + s·ε, the input's inverted start noise
mixed with fresh noise of its own (``PadaConfig.low_noise`` = s, :func:`pada.aging.pipeline.mix_start_noise`).
For each ``--shares`` entry s the first ``--faces`` held-out faces (the evaluation's test split) are aged to
``--target`` into ``--n`` results with the PAE sampled (s = 0: the inverted start itself, ``pada age``'s
default). Per share, means over the faces of:

* ``own_id``, ``own_div``: the input's own code rendered from each result's start: SFace cosine to the
  input, and mean pairwise SFace distance among the N (what the start noise alone changes);
* ``own_structure``: its skin's structure change against the input
  (:func:`pada.evaluation.scores.structure_change`);
* ``id``, ``div_id``: the same two for the aged results;
* ``age``: the dlib age critic's mean reading of the aged results.

``--grid PATH`` writes, per face and share, the input, two of its own-code renders and the N results: the
view to check the numbers against (where a face starts to mottle). About 35 s per share for 8 faces on 2
CPU cores.

    python3 benchmarks/bench_low_noise.py --data data/demo --faces 8 --shares 0,0.3,0.5,0.7,1
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch

KEYS = ("own_id", "own_div", "own_structure", "id", "div_id", "age")


def parse_shares(spec: str) -> list[float]:
    """``"0,0.3,1"`` -> [0.0, 0.3, 1.0]; every share in [0, 1] (0: the inverted start); a bad entry is a
    ValueError naming it."""
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        try:
            share = float(part)
        except ValueError:
            raise ValueError(f"--shares: {part!r} is not a number") from None
        if not 0.0 <= share <= 1.0:  # also rejects NaN
            raise ValueError(f"--shares: {part!r} is not in [0, 1]")
        out.append(share)
    if not out:
        raise ValueError("--shares: no share given")
    return out


def summarize(records: list[dict]) -> dict:
    """The per-face records of one share -> the mean of each of :data:`KEYS` (4 decimals)."""
    if not records:
        raise ValueError("no records")
    return {k: round(sum(r[k] for r in records) / len(records), 4) for k in KEYS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="pada-demo64", help="PADA model file or registry name")
    ap.add_argument("--data", default="data/demo")
    ap.add_argument("--faces", type=int, default=8, help="the first K held-out faces")
    ap.add_argument("--target", default="eighties", help="age-group word")
    ap.add_argument("--shares", default="0,0.3,0.5,0.7,1", help="comma-separated shares s in [0, 1]")
    ap.add_argument("--n", type=int, default=4, help="results per face (>= 2)")
    ap.add_argument("--grid", default=None, help="also write a PNG of the renders")
    ap.add_argument("--out", default=None, help="write the JSON here (default: print only)")
    args = ap.parse_args(argv)

    from pada.aging.pipeline import AgingPipeline, mix_start_noise
    from pada.critics.registry import load_critic
    from pada.data.groups import description, group_by_word
    from pada.errors import PadaError
    from pada.evaluation.diversity import mean_pairwise_distance
    from pada.evaluation.metrics import embed, predict_ages
    from pada.evaluation.runner import load_eval_data
    from pada.evaluation.scores import structure_change
    from pada.outputs import check_output_path, print_json

    try:
        if args.faces < 1 or args.n < 2:
            raise PadaError(f"--faces must be >= 1 and --n >= 2, got {args.faces} and {args.n}")
        shares = parse_shares(args.shares)
        group = group_by_word(args.target.strip())
        for path, option, exts in ((args.out, "--out", (".json",)), (args.grid, "--grid", (".png",))):
            if path:
                check_output_path(path, extensions=exts, option=option)
        pipe = AgingPipeline.from_pretrained(args.model, sampler="multistep")
        data = load_eval_data(args.data, int(pipe.diffae.unet.config.image_size), max_images=args.faces)
    except (PadaError, ValueError, OSError) as e:
        print(f"bench_low_noise: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    age_critic, sface = load_critic("dlib-age"), load_critic("sface")

    def id_and_div(x, images):
        e = embed(sface, torch.cat([x, images]), normalize=True)
        return float((e[1:] @ e[0]).mean()), mean_pairwise_distance(e[1:], "cosine")

    results, grid = {}, []
    for share in shares:
        records = []
        for i in range(len(data.images)):
            x = data.images[i:i + 1]
            opts = {"low_diversity": True, "low_noise": share} if share > 0 else {}
            res = pipe.age(x, text=description(group, data.genders[i]), n=args.n, seed=i, **opts)
            z_src = pipe.encode(x)
            x_inv = pipe.invert(x, z_src)
            start = mix_start_noise(x_inv, pipe.start_noise(x.shape[1:], res.seeds), share) if share > 0 \
                else x_inv.expand(args.n, -1, -1, -1)
            own = pipe.decode(start, z_src.expand(args.n, -1))
            own_id, own_div = id_and_div(x, own)
            aged_id, aged_div = id_and_div(x, res.images)
            records.append({"own_id": own_id, "own_div": own_div, "id": aged_id, "div_id": aged_div,
                            "own_structure": float(structure_change(own, x).mean()),
                            "age": float(predict_ages(age_critic, res.images, args.n).mean())})
            grid.append(torch.cat([x, own[:2], res.images]))
        results[f"{share:g}"] = summarize(records)
    out = {"model": args.model, "data": args.data, "faces": list(data.files), "target": group.word,
           "n": args.n, "shares": results, "seconds": round(time.perf_counter() - t0, 1),
           "torch": torch.__version__, "machine": platform.machine()}
    print_json(out, args.out)
    if args.grid:
        from pada.faces.grid import save_grid

        save_grid(torch.cat(grid), args.grid, nrow=3 + args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
