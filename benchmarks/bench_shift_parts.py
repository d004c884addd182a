"""Which part of PADA's shift ages a face? The mean shift split along the linear age direction (JSON).

For each held-out face and age group, the PAE mean (no sampling) gives z_age = modulation(z_src, e_txt);
its shift d = z_age − z_src is split into the part along the frozen DiffAE's linear age direction w (the one
the evaluation's linear baseline walks, fitted on the train split) and the rest:

    d_along = (d·ŵ) ŵ,    d_orth = d − d_along.

Each variant is rendered from the face's own inverted x_T (deterministic, one output per face and target)
and scored with the evaluation's critics (estimated age, SFace identity to the input):

* ``pada``: z_src + d (what ``pada age`` gives with ``--no-high-diversity``);
* ``along`` / ``orth``: z_src + d_along, z_src + d_orth;
* ``baseline@s``: the linear baseline z_src + s·(target − â(z_src))·w at strength s (``--strengths``), its
  Age MAE against identity curve: a variant beats the baseline when its (ID, MAE) point lies below the curve.

The JSON also holds d's size (‖d‖ / ‖z_src‖) and its length along w in "years" (d·w / ‖w‖²) per target.
About 20 s per variant on 2 CPU cores for 16 faces at 64 px.

    python3 benchmarks/bench_shift_parts.py --model pada-demo64 --data data/demo --max-images 16
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from pada.evaluation.scores import interpolate_curve


def shift_parts(z_src: torch.Tensor, z_age: torch.Tensor,
                w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(d_along, d_orth) of the shift d = z_age − z_src (B, S) against the direction w (S,): d = along + orth,
    along ∥ w, orth ⟂ w."""
    d = z_age - z_src
    u = w / w.norm().clamp_min(1e-12)
    along = (d @ u)[:, None] * u[None]
    return along, d - along


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="pada-demo64", help="PADA model file or registry name")
    ap.add_argument("--data", default="data/demo")
    ap.add_argument("--max-images", type=int, default=16)
    ap.add_argument("--strengths", default="1.5,2,2.5,3", help="baseline strengths (comma-separated)")
    ap.add_argument("--out", default=None, help="write the JSON here (default: print only)")
    args = ap.parse_args(argv)

    from pada.aging.pipeline import AgingPipeline
    from pada.data.groups import AGE_GROUPS, description
    from pada.errors import PadaError
    from pada.evaluation.metrics import identity_similarity, predict_ages
    from pada.evaluation.runner import EvalConfig, fit_baseline_direction, load_critics, load_eval_data

    try:
        strengths = [float(s) for s in args.strengths.split(",") if s.strip()]
        pipe = AgingPipeline.from_pretrained(args.model)
        size = int(pipe.diffae.unet.config.image_size)
        data = load_eval_data(args.data, size, max_images=args.max_images)
        direction, fit_note = fit_baseline_direction(pipe, args.data, size, EvalConfig())
        critics = load_critics()
    except (PadaError, ValueError, OSError) as e:
        print(f"bench_shift_parts: {e}", file=sys.stderr)
        return 2
    w = direction.direction.float()
    x = data.images
    n = x.shape[0]
    t0 = time.perf_counter()
    z_src = torch.cat([pipe.encode(x[i:i + 1]) for i in range(n)])
    x_T = torch.cat([pipe.invert(x[i:i + 1], z_src[i:i + 1]) for i in range(n)])  # noqa: N806
    codes: dict[str, dict[str, torch.Tensor]] = {}
    sizes: dict[str, dict[str, float]] = {}
    for g in AGE_GROUPS:
        e = torch.cat([pipe.pae(text=description(g, data.genders[i]), n=1, high_diversity=False)
                       for i in range(n)])
        z_age = torch.cat([pipe.modulate(z_src[i:i + 1], e[i:i + 1]) for i in range(n)])
        along, orth = shift_parts(z_src, z_age, w)
        d = z_age - z_src
        codes[g.word] = {"pada": z_age, "along": z_src + along, "orth": z_src + orth}
        for s in strengths:
            codes[g.word][f"baseline@{s:g}"] = direction.apply(z_src, g.center, s)
        sizes[g.word] = {"shift_rel": float((d.norm(dim=1) / z_src.norm(dim=1)).mean()),
                         "along_years": float((d @ w).mean() / w.square().sum()),
                         "orth_share": float((orth.norm(dim=1) / d.norm(dim=1).clamp_min(1e-12)).mean())}
    variants = list(next(iter(codes.values())))
    results: dict[str, dict] = {}
    for v in variants:
        per = {}
        for g in AGE_GROUPS:
            out = pipe.decode(x_T, codes[g.word][v])
            ages = predict_ages(critics.age, out)
            per[g.word] = {"target": g.center, "age_mean": float(ages.mean()),
                           "age_mae": float((ages - g.center).abs().mean()),
                           "id_similarity": float(identity_similarity(critics.identity, x, out).mean())}
        results[v] = {"per_target": per,
                      "age_mae": sum(p["age_mae"] for p in per.values()) / len(per),
                      "id_similarity": sum(p["id_similarity"] for p in per.values()) / len(per)}
    curve = [(r["id_similarity"], r["age_mae"]) for k, r in results.items() if k.startswith("baseline@")]
    for r in results.values():
        r["baseline_mae_at_equal_id"] = interpolate_curve(curve, r["id_similarity"])
    report = {"model": args.model, "data": data.source, "faces": n, "direction": fit_note,
              "shift": sizes, "variants": results, "seconds": round(time.perf_counter() - t0, 1),
              "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    print(f"{'variant':14s} {'MAE':>6s} {'ID':>6s} {'base@ID':>7s}  mean age by target")
    for k, r in results.items():
        b = r["baseline_mae_at_equal_id"]
        ages = " ".join(f"{p['age_mean']:.0f}" for p in r["per_target"].values())
        bs = "–" if b is None else f"{b:.2f}"
        print(f"{k:14s} {r['age_mae']:6.2f} {r['id_similarity']:6.3f} {bs:>7s}  {ages}")
    for word, s in sizes.items():
        print(f"  {word:10s} |d|/|z| {s['shift_rel']:.3f}  along w {s['along_years']:+6.1f} years  "
              f"orth share {s['orth_share']:.2f}")
    if args.out:
        from pada.outputs import write_text

        write_text(Path(args.out), json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
