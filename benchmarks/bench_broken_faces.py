"""How well each failure score agrees with a person's eye, as one JSON document.

``benchmarks/labels/broken_v7h.json`` holds by-eye labels (broken or not) of 192 results of the shipped
``pada-demo64`` (v7h) on the 32 held-out demo faces: per face one sixty and two eighty results ("labelled
first", on which the limit of ``structure ok`` was set) and the other sixty and two toddler results
("labelled after", a check of that limit). This script renders the same results again (the labels' call,
deterministic on CPU) or loads them (``--outputs``, a file this script wrote with ``--save``), scores each
against its input and reports, per split and score, the area under the ROC curve (the chance that a
broken result scores worse than a clean one; 0.5 = no better than chance) and the accuracy of the score's
limit. Scores: ``blotch``, ``patch_change``, ``structure_change`` (docs/evaluation.md) and ``1 - SFace``
(identity lost).

    python benchmarks/bench_broken_faces.py --data data/demo                  # ~10 min on 2 cores
    python benchmarks/bench_broken_faces.py --data data/demo --outputs outs.pt   # scores only, ~20 s
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

LABELS = Path(__file__).resolve().parent / "labels" / "broken_v7h.json"


def auc(scores: torch.Tensor, broken: torch.Tensor) -> float | None:
    """P(score of a broken result > score of a clean one), ties counting half; None without both kinds."""
    pos, neg = scores[broken], scores[~broken]
    if pos.numel() == 0 or neg.numel() == 0:
        return None
    d = pos[:, None] - neg[None, :]
    return float((d > 0).double().mean() + 0.5 * (d == 0).double().mean())


def render(pipe, data, labels: dict, n: int) -> dict[str, torch.Tensor]:
    """The labelled results: for each group of the labels, ``n`` results per face (the labels' call, with
    the labelled model's settings where the shipped file's defaults have moved on: ``how_made.options``)."""
    from pada.data.groups import description, group_by_word

    options = labels.get("how_made", {}).get("options", {})
    out = {}
    for word in sorted({s["group"] for s in labels["sets"]}):
        g = group_by_word(word)
        out[word] = torch.stack([pipe.age(data.images[i:i + 1], text=description(g, data.genders[i]), n=n,
                                          seed=i, **options).images for i in range(len(data.files))])
        print(f"rendered {word}", file=sys.stderr, flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="pada-demo64")
    ap.add_argument("--data", default="data/demo")
    ap.add_argument("--labels", default=str(LABELS))
    ap.add_argument("--outputs", default=None, help="results saved by an earlier --save (skips rendering)")
    ap.add_argument("--save", default=None, help="write the rendered results here (a torch file)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from pada.errors import PadaError
    from pada.evaluation.metrics import embed
    from pada.evaluation.runner import load_eval_data
    from pada.evaluation.scores import (
        BLOTCH_LIMIT,
        PATCH_LIMIT,
        STRUCTURE_LIMIT,
        blotch,
        patch_change,
        structure_change,
    )

    try:
        labels = json.loads(Path(args.labels).read_text())
        files = labels["faces"]
        data = load_eval_data(args.data, 64, max_images=len(files))
    except (OSError, ValueError, KeyError, PadaError) as e:
        print(f"bench_broken_faces: {e}", file=sys.stderr)
        return 2
    if list(data.files) != list(files):
        print(f"bench_broken_faces: the test split of {args.data} is not the labelled faces "
              f"({data.files[:3]}... vs {files[:3]}...)", file=sys.stderr)
        return 2
    n = 1 + max(s["output"] for s in labels["sets"])
    if args.outputs:
        results = torch.load(args.outputs)
    else:
        from pada.aging.pipeline import AgingPipeline

        results = render(AgingPipeline.from_pretrained(args.model), data, labels, n)
        if args.save:
            torch.save(results, args.save)
    from pada.critics.registry import load_critic

    sface = load_critic("sface")
    e_in = embed(sface, data.images)
    limits = {"blotch": BLOTCH_LIMIT, "patch_change": PATCH_LIMIT, "structure_change": STRUCTURE_LIMIT,
              "identity_lost": None}
    report: dict = {"labels": str(args.labels), "model": args.model, "data": args.data, "splits": {}}
    for split in sorted({s["split"] for s in labels["sets"]}):
        outs, broken = [], []
        for s in (s for s in labels["sets"] if s["split"] == split):
            outs.append(results[s["group"]][:, s["output"]])
            broken += [f in set(s["broken"]) for f in files]
        y, x = torch.cat(outs), data.images.repeat(len(outs), 1, 1, 1)
        is_broken = torch.tensor(broken)
        e_out = embed(sface, y)
        scores = {"blotch": blotch(y, x), "patch_change": patch_change(y, x),
                  "structure_change": structure_change(y, x),
                  "identity_lost": 1.0 - (e_out * e_in.repeat(len(outs), 1)).sum(1)}
        entry = {"n": len(broken), "n_broken": int(is_broken.sum())}
        for name, v in scores.items():
            v = v.float().cpu()
            row = {"auc": auc(v, is_broken)}
            if limits[name] is not None:
                flagged = v > limits[name]
                row.update(limit=limits[name], accuracy=float((flagged == is_broken).float().mean()),
                           flagged=int(flagged.sum()), flagged_broken=int((flagged & is_broken).sum()))
            entry[name] = row
        report["splits"][split] = entry
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
