"""Aging quality (PADA §4: Age MAE, ID, Fréchet distance, diversity, reconstruction) as one JSON document.

Three modes:

``--model PADA.safetensors --data DIR``  the real protocol of ``pada evaluate`` (test split of DIR, critics
    from the registry: dlib-age for Age MAE, SFace for ID and the Fréchet-distance features by default),
    including the DiffAE linear baseline at matched identity and ``--ablation NAME=PATH`` checkpoints.
    Prints the full report plus wall times as JSON on stdout and the one-screen summary (face found,
    high-frequency ratio, lifespan monotonicity, diversity, ``--ref`` direction, acceptance checks) on
    stderr. ``--quick``: 4 faces, N 2, 10 steps, no baseline, to compare models fast.
``--tiny`` (default when no model is given)  the same runner on a random tiny pipeline (tiny32 DiffAE,
    random PAE / modulation / critics) and smooth random "faces": it checks that the protocol runs end to
    end and times the runner's overhead. **Its metric values mean nothing about aging quality.**
``--reference --data DIR``  reference scales on real faces only (no model): SFace cosine of a face and its
    mirror image vs of two different people; the Fréchet distance between two disjoint halves of one age
    group (the noise floor at that sample size) and between groups; real faces' Age MAE to their group
    centre (when the labels came from the same age critic this is the within-group spread only).
``--kernels``  timings of the metric kernels themselves: Fréchet distance (float64 eigh square root) at
    D = 128 / 512 / 2048, SSIM and PSNR on 256² batches.

    python benchmarks/bench_aging_quality.py --model pada-demo64 --data data/demo --quick   # minutes
    python benchmarks/bench_aging_quality.py --kernels
    python benchmarks/bench_aging_quality.py --tiny
    python benchmarks/bench_aging_quality.py --reference --data data/demo
    python benchmarks/bench_aging_quality.py --model runs/pada/pada.safetensors --data data/demo \\
        --n 4 --max-images 50 --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch


def _env(device: str) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
            "threads": torch.get_num_threads(), "machine": platform.machine()}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _best(fn, repeats: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_kernels(device: str) -> dict:
    from pada.evaluation import GaussianStats, frechet_distance, psnr, ssim

    g = torch.Generator().manual_seed(0)
    out: dict = {"frechet_distance_s": {}, "image_metrics_s": {}}
    for d in (128, 512, 2048):
        a = GaussianStats.from_features(torch.randn(4 * d, d, generator=g, dtype=torch.float64))
        b = GaussianStats.from_features(torch.randn(4 * d, d, generator=g, dtype=torch.float64) + 0.1)
        out["frechet_distance_s"][str(d)] = _best(lambda a=a, b=b: frechet_distance(a, b), 2)
    x = (torch.rand(16, 3, 256, 256, generator=g) * 2 - 1).to(device)
    y = (x + 0.05 * torch.randn(x.shape, generator=g).to(device)).clamp(-1, 1)
    out["image_metrics_s"]["ssim_16x256"] = _best(lambda: ssim(x, y))
    out["image_metrics_s"]["psnr_16x256"] = _best(lambda: psnr(x, y))
    return out


def bench_tiny(args) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from pada.aging.baseline import LinearBaselinePipeline
    from pada.aging.pipeline import AgingPipeline
    from pada.aging.testing import TinyAgeCritic, TinyIdentityCritic, TinyVL
    from pada.evaluation.fid import CriticFeatures
    from pada.evaluation.runner import Critics, EvalConfig, EvalData, fit_baseline_direction, run_evaluation
    from test_aging_helpers import faces, tiny_diffae, tiny_model

    m = args.max_images or 4
    pipe = AgingPipeline(tiny_diffae(), TinyVL(dim=32), tiny_model(), steps=args.steps or 5)
    x = faces(m)
    ages = torch.linspace(20, 75, m)
    from pada.data.groups import group_of_age

    groups = torch.tensor([group_of_age(float(a)).index for a in ages])
    data = EvalData(images=x, files=[f"{i}.png" for i in range(m)], ages=ages,
                    genders=(["female", "male"] * m)[:m], groups=groups,
                    real_loader=lambda grp, n: faces(8, seed=100 + grp)[:n],
                    source=f"{m} smooth random faces")
    idc = TinyIdentityCritic()
    critics = Critics(TinyAgeCritic(), idc, CriticFeatures(idc),
                      {"age": "tiny-random", "identity": "tiny-random", "fid_features": "tiny-random"})
    cfg = EvalConfig(targets=tuple(args.targets or ("twenties", "eighties")), n_outputs=args.n or 2,
                     steps=args.steps or 5, max_images=m,
                     baseline_strengths=(0.5, 1.0, 2.0), baseline_search_images=2)
    direction, note = fit_baseline_direction(pipe, None, 32, cfg, eval_data=data)
    base = LinearBaselinePipeline(pipe.diffae, direction, steps=cfg.steps)
    t0 = time.perf_counter()
    report = run_evaluation({"tiny-random": pipe}, data, critics, cfg, baseline=base, baseline_note=note)
    return {"warning": "random tiny networks: the metric values say nothing about aging quality",
            "wall_s": time.perf_counter() - t0, "report": report}


def bench_reference(args) -> dict:
    from pada.data.groups import AGE_GROUPS
    from pada.evaluation import embed, frechet_distance_features, predict_ages
    from pada.evaluation.fid import features_of
    from pada.evaluation.runner import load_critics, load_eval_data

    t0 = time.perf_counter()
    fid = args.fid_features or "sface"
    critics = load_critics("dlib-age", "sface", fid, device=args.device)
    data = load_eval_data(args.data, 256, split="all", max_images=args.max_images)
    x = data.images
    emb = embed(critics.identity, x, 32)
    emb_flip = embed(critics.identity, x.flip(-1), 32)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(x.shape[0], generator=g)
    other = perm[perm != torch.arange(x.shape[0])]
    same = torch.arange(x.shape[0])[perm != torch.arange(x.shape[0])]
    ages = predict_ages(critics.age, x, 32)
    feats = features_of(critics.fid, x, 32)
    out: dict = {"n_faces": int(x.shape[0]), "fid_features": fid,
                 "id_mirror_mean": float((emb * emb_flip).sum(1).mean()),
                 "id_different_people_mean": float((emb[same] * emb[other]).sum(1).mean()),
                 "groups": {}}
    halves = {}
    for grp in AGE_GROUPS:
        idx = (data.groups == grp.index).nonzero().flatten()
        if idx.numel() < 4:
            continue
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        a, b = idx[: idx.numel() // 2], idx[idx.numel() // 2:]
        halves[grp.word] = a
        out["groups"][grp.word] = {
            "n": int(idx.numel()),
            "age_mae_to_center": float((ages[idx] - grp.center).abs().mean()),
            "fd_between_halves": frechet_distance_features(feats[a], feats[b]),
        }
    words = list(halves)
    out["fd_between_groups"] = {f"{u}-{v}": frechet_distance_features(feats[halves[u]], feats[halves[v]])
                                for i, u in enumerate(words) for v in words[i + 1:]}
    out["wall_s"] = time.perf_counter() - t0
    return out


def bench_real(args) -> dict:
    from pada.cli.main import main as cli

    out = Path(args.out or "runs/bench_aging_quality")
    argv = ["evaluate", "--model", args.model, "--data", args.data, "--seed", str(args.seed),
            "--device", args.device, "--out", str(out), "--quiet"]
    for flag, value in (("--n", args.n), ("--targets", args.targets and ",".join(args.targets)),
                        ("--fid-features", args.fid_features)):
        if value is not None:
            argv += [flag, str(value)]
    for flag in ("quick", "no_lifespan", "no_reference", "no_diversity"):
        if getattr(args, flag):
            argv.append("--" + flag.replace("_", "-"))
    for a in args.ablation:
        argv += ["--ablation", a]
    for o in args.pipeline_option:
        argv += ["--pipeline-option", o]
    if args.max_shift is not None:
        argv += ["--max-shift", str(args.max_shift)]
    if args.max_images:
        argv += ["--max-images", str(args.max_images)]
    if args.steps:
        argv += ["--steps", str(args.steps)]
    if args.no_baseline:
        argv.append("--no-baseline")
    if args.eps is not None:
        argv += ["--eps", str(args.eps)]
    t0 = time.perf_counter()
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        rc = cli(argv)
    if rc != 0:
        raise SystemExit(rc)
    report = json.loads((out / "report.json").read_text())
    from pada.evaluation.runner import summary_table

    print(summary_table(report), file=sys.stderr, end="")  # stdout stays one JSON document
    return {"wall_s": time.perf_counter() - t0, "command": "pada " + " ".join(argv), "report": report}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model")
    p.add_argument("--data")
    p.add_argument("--ablation", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--kernels", action="store_true")
    p.add_argument("--reference", action="store_true")
    p.add_argument("--n", type=int, default=None, help="outputs per face and target (default 4; --quick 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--targets", type=lambda s: s.split(","), default=None,
                   help="comma-separated age-group words (default: all seven groups)")
    p.add_argument("--fid-features", default=None, help="sface (default), dlib-age, inception or none")
    p.add_argument("--quick", action="store_true",
                   help="pada evaluate --quick: 4 faces, N 2, 10 steps, no baseline (compare models fast)")
    p.add_argument("--no-lifespan", action="store_true")
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--no-diversity", action="store_true")
    p.add_argument("--pipeline-option", action="append", default=[], metavar="NAME=VALUE",
                   help="passed to pada evaluate --pipeline-option")
    p.add_argument("--max-shift", type=float, default=None,
                   help="inference-time bound on the latent shift (pada evaluate --max-shift)")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--eps", type=float, default=None, help="PADA's text sampling intensity ε (model default)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out")
    args = p.parse_args(argv)
    result: dict = {"benchmark": "aging_quality", "env": _env(args.device)}
    if args.kernels:
        result["kernels"] = bench_kernels(args.device)
    if args.reference:
        if not args.data:
            p.error("--reference needs --data")
        result["reference"] = bench_reference(args)
    if args.model:
        if not args.data:
            p.error("--model needs --data")
        result["real"] = bench_real(args)
    elif args.tiny or not (args.kernels or args.reference):
        result["tiny"] = bench_tiny(args)
    print(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
