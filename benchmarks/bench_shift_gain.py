"""Calibrate PADA's shift gain by target age (``PadaConfig.shift_gain``) against the linear baseline (JSON).

For each face of a split (default: the *train* split, so the evaluation's test faces are not used to choose
the gain) and each age group, the learned shift d = z_age − z_src of the PAE mean (the model's own gain
off) is rendered scaled, z_src + α·d, for each α of ``--gains``, and the linear baseline at each strength of
``--strengths``; all from the face's inverted x_T (one deterministic output per face and target) and scored
with the evaluation's critics (Age MAE, SFace identity to the input, share of outputs with high-frequency
ratio ≤ 1.5). Per target this traces PADA's (ID, MAE) curve against α.

For each ``--lambdas`` value λ (years of Age MAE one unit of identity is worth) it picks, per target, the α
that maximises −MAE + λ·ID, and reports the resulting mean (ID, MAE) against the baseline's MAE at that
identity (interpolated on its strength curve; negative margin = PADA ahead). ``--spec`` renders one
``shift_gain`` spec as it is (e.g. the shipped one) for the same comparison.

About 10 minutes for 12 faces on 2 CPU cores at 64 px (6 gains + 5 strengths + 1 spec, 7 targets).

    python3 benchmarks/bench_shift_gain.py --model pada-demo64 --data data/demo --max-images 12 \\
        --spec "30.5:1,43:1.5,60.5:1.5,80:1.25" --out gain.json
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


def _floats(text: str) -> list[float]:
    return [float(s) for s in text.split(",") if s.strip()]


def overall(per: dict[str, dict[str, float]], words: list[str]) -> tuple[float, float]:
    """(mean ID, mean Age MAE) over the targets ``words`` of one variant's per-target scores."""
    return (sum(per[w]["id_similarity"] for w in words) / len(words),
            sum(per[w]["age_mae"] for w in words) / len(words))


def pick_gains(rows: dict[str, dict[str, dict[str, float]]], gains: list[float], lam: float, words: list[str],
               curve: list[tuple[float, float]]) -> dict:
    """Per target, the α of ``gains`` (rows ``gain@α``) maximising −MAE + λ·ID; the mean (ID, MAE) of that
    choice and its margin against the baseline ``curve`` [(ID, MAE), ...] at equal identity."""
    choice = {w: max(gains, key=lambda a, w=w: lam * rows[f"gain@{a:g}"][w]["id_similarity"]
                     - rows[f"gain@{a:g}"][w]["age_mae"]) for w in words}
    ident, mae = overall({w: rows[f"gain@{choice[w]:g}"][w] for w in words}, words)
    b = interpolate_curve(curve, ident)
    return {"gain_by_target": choice, "id_similarity": ident, "age_mae": mae, "baseline_mae_at_equal_id": b,
            "margin": None if b is None else mae - b}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="pada-demo64", help="PADA model file or registry name")
    ap.add_argument("--data", default="data/demo")
    ap.add_argument("--split", default="train", choices=("train", "test"))
    ap.add_argument("--max-images", type=int, default=12)
    ap.add_argument("--gains", default="0.6,0.8,1,1.25,1.5,1.8", help="α values (comma-separated)")
    ap.add_argument("--strengths", default="1.5,2,2.5,3,3.5", help="baseline strengths (comma-separated)")
    ap.add_argument("--lambdas", default="10,15,20", help="years per unit of identity (comma-separated)")
    ap.add_argument("--spec", default=None, help="also render this shift_gain spec (AGE:GAIN,...)")
    ap.add_argument("--out", default=None, help="write the JSON here (default: print only)")
    args = ap.parse_args(argv)

    from pada.aging.gain import parse_shift_gain
    from pada.aging.pipeline import AgingPipeline
    from pada.data.groups import AGE_GROUPS, description
    from pada.errors import PadaError
    from pada.evaluation.metrics import identity_similarity, predict_ages
    from pada.evaluation.runner import EvalConfig, fit_baseline_direction, load_critics, load_eval_data
    from pada.evaluation.scores import HF_RATIO_LIMIT, hf_energy_ratio

    try:
        gains, strengths, lambdas = _floats(args.gains), _floats(args.strengths), _floats(args.lambdas)
        if args.spec is not None:
            parse_shift_gain(args.spec)
        pipe = AgingPipeline.from_pretrained(args.model)
        size = int(pipe.diffae.unet.config.image_size)
        data = load_eval_data(args.data, size, split=args.split, max_images=args.max_images)
        direction, fit_note = fit_baseline_direction(pipe, args.data, size, EvalConfig())
        critics = load_critics(fid="none")
    except (PadaError, ValueError, OSError) as e:
        print(f"bench_shift_gain: {e}", file=sys.stderr)
        return 2
    x = data.images
    n = x.shape[0]
    t0 = time.perf_counter()
    z = torch.cat([pipe.encode(x[i:i + 1]) for i in range(n)])
    x_T = torch.cat([pipe.invert(x[i:i + 1], z[i:i + 1]) for i in range(n)])  # noqa: N806
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for g in AGE_GROUPS:
        e = torch.cat([pipe.pae(text=description(g, data.genders[i]), n=1, high_diversity=False)
                       for i in range(n)])
        learned = torch.cat([pipe.modulate(z[i:i + 1], e[i:i + 1], shift_gain="") for i in range(n)])
        codes = {f"gain@{a:g}": z + a * (learned - z) for a in gains}
        codes.update({f"baseline@{s:g}": direction.apply(z, g.center, s) for s in strengths})
        if args.spec is not None:
            codes["spec"] = torch.cat([pipe.modulate(z[i:i + 1], e[i:i + 1], shift_gain=args.spec)
                                       for i in range(n)])
        for name, c in codes.items():
            out = pipe.decode(x_T, c)
            ages = predict_ages(critics.age, out)
            rows.setdefault(name, {})[g.word] = {
                "target": g.center, "age_mean": float(ages.mean()),
                "age_mae": float((ages - g.center).abs().mean()),
                "id_similarity": float(identity_similarity(critics.identity, x, out).mean()),
                "hf_ok": float((hf_energy_ratio(out, x) <= HF_RATIO_LIMIT).float().mean())}
    words = [g.word for g in AGE_GROUPS]
    curve = [overall(r, words) for k, r in rows.items() if k.startswith("baseline@")]
    report_rows = {}
    for k, r in rows.items():
        ident, mae = overall(r, words)
        b = interpolate_curve(curve, ident)
        report_rows[k] = {"per_target": r, "id_similarity": ident, "age_mae": mae,
                          "baseline_mae_at_equal_id": b, "margin": None if b is None else mae - b}
    picks = {f"{lam:g}": pick_gains(rows, gains, lam, words, curve) for lam in lambdas}
    report = {"model": args.model, "data": data.source, "faces": n, "direction": fit_note,
              "rows": report_rows, "picks_by_lambda": picks, "seconds": round(time.perf_counter() - t0, 1),
              "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}

    def fmt(v: float | None) -> str:
        return "–" if v is None else f"{v:+.2f}"

    print(f"{'variant':14s} {'MAE':>6s} {'ID':>6s} {'margin':>7s}  age / ID by target")
    for k, r in report_rows.items():
        cells = " ".join(f"{p['age_mean']:.0f}/{p['id_similarity']:.2f}" for p in r["per_target"].values())
        print(f"{k:14s} {r['age_mae']:6.2f} {r['id_similarity']:6.3f} {fmt(r['margin']):>7s}  {cells}")
    for lam, p in picks.items():
        gains_txt = " ".join(f"{w}:{a:g}" for w, a in p["gain_by_target"].items())
        print(f"λ={lam:>4s}: MAE {p['age_mae']:.2f} ID {p['id_similarity']:.3f} margin {fmt(p['margin'])}  "
              f"{gains_txt}")
    if args.out:
        from pada.outputs import write_text

        write_text(Path(args.out), json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
