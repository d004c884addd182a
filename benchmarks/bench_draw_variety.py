"""How PADA's N results of one request differ, and what that costs, per draw setting (JSON).

A request's N results differ through the PAE draws, which a model can move further at inference: the draw
spread (``PadaConfig.draw_spread``, an offset over the leading directions of real codes) and the ageing
pattern (``PadaConfig.draw_pattern``, each draw's edit shifted between hair and face,
:mod:`pada.aging.pattern`). Each ``--settings`` entry ``PATTERN:SPREAD`` is rendered for ``--faces``
training faces (a seeded choice, not the evaluation's test faces) at each of ``--targets``, N = ``--n``
results per face, with the model's other defaults (calibration, guards, contrast bound). Per setting and
target the JSON holds what the evaluation's checks read, on these faces:

* ``id``: mean SFace cosine of the results to the input (inverted start noise, PAE sampled: the
  evaluation's main mode);
* ``div_id``: mean pairwise SFace distance among those results;
* ``div_gain``: the evaluation's PAE-diversity gain, (div-ID with the PAE sampled − without) / without,
  both with low-level diversity (each output's own start noise, at the model's ``low_noise``);
* ``age``, ``age_std``: the dlib age critic's mean reading of the results and its spread within a request;
* ``structure_ok``: share of results whose skin kept its structure
  (:func:`pada.evaluation.scores.structure_change` ≤ ``STRUCTURE_LIMIT``).

``overall`` averages the targets. ``--grid PATH`` writes the main-mode results (per face: the input, then
each target's N results, one block per setting) to look at before trusting the numbers.

About 3 min per setting for 8 faces × 3 targets on 2 CPU cores.

    python3 benchmarks/bench_draw_variety.py --data data/demo --faces 8 --settings 0:0.14,1:0.09
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch

KEYS = ("id", "div_id", "div_gain", "age", "age_std", "structure_ok")


def parse_settings(spec: str) -> list[tuple[float, float]]:
    """``"P:S,P:S"`` -> [(pattern, spread), ...]; a bad entry is a ValueError naming it."""
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        try:
            pattern, spread = (float(v) for v in part.split(":"))
        except ValueError:
            raise ValueError(f"--settings: {part!r} is not PATTERN:SPREAD (e.g. 1:0.09)") from None
        if not (0.0 <= pattern <= 10.0 and 0.0 <= spread <= 1.0):
            raise ValueError(f"--settings: {part!r}: the pattern must be in [0, 10] and the spread in [0, 1]")
        out.append((pattern, spread))
    if not out:
        raise ValueError("--settings: no PATTERN:SPREAD entry")
    return out


def summarize(rows: dict[str, list[dict]]) -> dict:
    """Per target word, the records of each face ({KEYS} plus ``div_on`` / ``div_off``) -> per target the
    means (``div_gain`` from the mean div-ID on and off, as the evaluation computes it) and ``overall``."""
    per = {}
    for word, recs in rows.items():
        if not recs:
            raise ValueError(f"no records for {word!r}")
        mean = {k: sum(r[k] for r in recs) / len(recs) for k in ("id", "div_id", "age", "age_std",
                                                                 "structure_ok", "div_on", "div_off")}
        mean["div_gain"] = (mean["div_on"] - mean["div_off"]) / max(mean["div_off"], 1e-12)
        per[word] = {k: round(mean[k], 4) for k in KEYS}
    overall = {k: round(sum(p[k] for p in per.values()) / len(per), 4) for k in KEYS}
    return {"targets": per, "overall": overall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="pada-demo64", help="PADA model file or registry name")
    ap.add_argument("--data", default="data/demo")
    ap.add_argument("--faces", type=int, default=8, help="training faces (a seeded choice)")
    ap.add_argument("--targets", default="toddler,thirties,eighties", help="comma-separated age-group words")
    ap.add_argument("--settings", default="0:0.14,1:0.09", help="comma-separated PATTERN:SPREAD pairs")
    ap.add_argument("--n", type=int, default=4, help="results per face and target (>= 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid", default=None, help="also write a PNG of the main-mode results")
    ap.add_argument("--out", default=None, help="write the JSON here (default: print only)")
    args = ap.parse_args(argv)

    from pada.aging.pipeline import AgingPipeline
    from pada.critics.registry import load_critic
    from pada.data.groups import description, group_by_word
    from pada.errors import PadaError
    from pada.evaluation.diversity import mean_pairwise_distance
    from pada.evaluation.metrics import embed, predict_ages
    from pada.evaluation.runner import training_faces
    from pada.evaluation.scores import STRUCTURE_LIMIT, structure_change
    from pada.outputs import check_output_path, print_json

    try:
        if args.faces < 1 or args.n < 2:
            raise PadaError(f"--faces must be >= 1 and --n >= 2, got {args.faces} and {args.n}")
        settings = parse_settings(args.settings)
        groups = [group_by_word(w.strip()) for w in args.targets.split(",") if w.strip()]
        for path, option, exts in ((args.out, "--out", (".json",)), (args.grid, "--grid", (".png",))):
            if path:
                check_output_path(path, extensions=exts, option=option)
        pipe = AgingPipeline.from_pretrained(args.model, sampler="multistep")
        items = training_faces(args.data, int(pipe.diffae.unet.config.image_size), args.faces, args.seed)
    except (PadaError, ValueError, OSError) as e:
        print(f"bench_draw_variety: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    age_critic, sface = load_critic("dlib-age"), load_critic("sface")

    def ident(images):
        return embed(sface, images, normalize=True)

    off: dict[tuple[int, str], float] = {}  # PAE off, own start noise: the same for every setting
    results, grid = {}, []
    try:
        for pattern, spread in settings:
            opts = {"draw_pattern": pattern, "draw_spread": spread}
            rows: dict[str, list[dict]] = {g.word: [] for g in groups}
            blocks = []
            for f, item in enumerate(items):
                x = item["image"][None]
                block = [x]
                for g in groups:
                    text = description(g, item["gender"])
                    seed = args.seed + f
                    main_out = pipe.age(x, text=text, n=args.n, seed=seed, **opts).images
                    own = pipe.age(x, text=text, n=args.n, seed=seed, low_diversity=True, **opts).images
                    if (f, g.word) not in off:
                        base = pipe.age(x, text=text, n=args.n, seed=seed, low_diversity=True,
                                        high_diversity=False, **opts).images
                        off[(f, g.word)] = mean_pairwise_distance(ident(base), "cosine")
                    e = ident(torch.cat([x, main_out]))
                    ages = predict_ages(age_critic, main_out, args.n)
                    kept = (structure_change(main_out, x) <= STRUCTURE_LIMIT).float()
                    rows[g.word].append({
                        "id": float((e[1:] @ e[0]).mean()), "div_id": mean_pairwise_distance(e[1:], "cosine"),
                        "age": float(ages.mean()), "age_std": float(ages.double().std()),
                        "structure_ok": float(kept.mean()),
                        "div_on": mean_pairwise_distance(ident(own), "cosine"),
                        "div_off": off[(f, g.word)]})
                    block.append(main_out)
                blocks.append(torch.cat(block))
            results[f"{pattern:g}:{spread:g}"] = summarize(rows)
            grid.append(torch.cat(blocks))
    except PadaError as e:
        print(f"bench_draw_variety: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    out = {"model": args.model, "data": args.data, "faces": [it["file"] for it in items],
           "targets": [g.word for g in groups], "n": args.n, "settings": results,
           "seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__,
           "machine": platform.machine()}
    print_json(out, args.out)
    if args.grid:
        from pada.faces.grid import save_grid

        save_grid(torch.cat(grid), args.grid, nrow=1 + args.n * len(groups))
    return 0


if __name__ == "__main__":
    sys.exit(main())
