"""Benchmark the DiffAE network and sampler on this machine; prints one JSON document.

For each preset (random weights, drawn like the official fixtures: conv/linear N(0,1)/sqrt(fan_in),
GroupNorm 1 + 0.1·N(0,1)) it measures, under ``torch.inference_mode``:

* UNet forward images/s at each batch size, for three paths:
  ``plain``   the literal official forward (einsum attention, affine GroupNorm then the two
              conditioning products, per-block SiLU of the embeddings), NCHW, under ``torch.no_grad``
              — the "plain re-implementation" baseline;
  ``fast``    pada's default path (SDPA attention, folded conditioning affine, in-place
              activations, inference_mode), NCHW;
  ``fast_cl`` the fast path with ``channels_last`` weights and activations.
* the max abs difference of ``fast``/``fast_cl`` against ``plain`` (fixture tolerance for ε̂: 1e-4);
* 25-step DDIM sampling latency (``fast_cl`` and ``plain``), encoder time, peak RSS;
* with ``--bf16`` also the fast path under bfloat16 autocast (not within fp32 tolerances).

Every timing is the best of ``--iters`` runs after one warm-up, reported both as wall time and as
process CPU time: on a shared machine wall time mostly measures the neighbours, CPU time divided by
the thread count is the better estimate of the code's own cost.

    python benchmarks/bench_diffae.py                         # tiny32, pada64, ffhq128_autoenc
    python benchmarks/bench_diffae.py --presets ffhq128_autoenc --batches 1 --iters 2
    python benchmarks/bench_diffae.py --ffhq256 --bf16 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import resource
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from pada import diffusion as D
from pada.networks.config import load_preset
from pada.networks.unet import DiffAEUNet


def randomize_(model: nn.Module, seed: int) -> None:
    """Overwrite every parameter (also the official zero-inits) so outputs are not trivially 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(fan_in))
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))


def emit_json(report: dict, path: str | None = None) -> None:
    """Print ``report`` as indented JSON (the benchmarks' output) and also write it to ``path`` if given."""
    text = json.dumps(report, indent=1)
    print(text)
    if path:
        from pathlib import Path

        Path(path).write_text(text + "\n")


def timed(fn: Callable[[], object], iters: int) -> dict[str, float]:
    """Best-of-``iters`` wall and process-CPU seconds after one warm-up call."""
    fn()
    wall, cpu = [], []
    for _ in range(iters):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return {"wall_s": min(wall), "cpu_s": min(cpu)}


def set_path(model: DiffAEUNet, path: str) -> contextlib.AbstractContextManager:
    model.set_plain(path == "plain")
    model.to_channels_last(path in ("fast_cl", "bf16_cl"))
    if path == "plain":
        return torch.no_grad()
    return torch.inference_mode()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def bench_preset(name: str, args: argparse.Namespace) -> dict:
    cfg = load_preset(name)
    model = DiffAEUNet(cfg).eval()
    randomize_(model, 0)
    s = cfg.image_size
    n_params = model.num_parameters()
    out: dict = {
        "preset": name,
        "params": n_params,
        "image_size": s,
        "forward": {},
        "ddim": {},
        "encoder": {},
    }
    paths = ["plain", "fast", "fast_cl"] + (["bf16_cl"] if args.bf16 else [])
    large = n_params > 50_000_000
    for b in args.batches:
        g = torch.Generator().manual_seed(b)
        x = torch.randn(b, 3, s, s, generator=g)
        t = torch.randint(0, 1000, (b,), generator=g)
        z = torch.randn(b, cfg.enc_out_channels, generator=g)
        row: dict = {}
        ref = None
        for path in paths:
            print(f"[bench] {name} batch {b} forward {path}", file=sys.stderr, flush=True)
            with set_path(model, path):
                ac = (
                    torch.autocast("cpu", dtype=torch.bfloat16)
                    if path.startswith("bf16")
                    else contextlib.nullcontext()
                )
                with ac:
                    res = timed(lambda x=x, t=t, z=z: model(x, t, z), args.iters)
                    eps = model(x, t, z).float()
            res["images_per_s_wall"] = b / res["wall_s"]
            res["images_per_s_cpu"] = b / res["cpu_s"]
            if ref is None:
                ref = eps
            else:
                res["max_abs_diff_vs_plain"] = (eps - ref).abs().max().item()
            row[path] = res
        row["eps_abs_max"] = ref.abs().max().item()
        for path in paths[1:]:
            row[path]["speedup_vs_plain_wall"] = row["plain"]["wall_s"] / row[path]["wall_s"]
            row[path]["speedup_vs_plain_cpu"] = row["plain"]["cpu_s"] / row[path]["cpu_s"]
        out["forward"][f"batch{b}"] = row

        # encoder
        with set_path(model, "fast_cl"):
            out["encoder"][f"batch{b}"] = timed(lambda x=x: model.encode(x), args.iters)

        # 25-step DDIM latency
        if b in args.ddim_batches and not (large and b > 1 and not args.full):
            ddim: dict = {}
            for path in ("plain", "fast_cl"):
                print(f"[bench] {name} batch {b} ddim{args.ddim_steps} {path}", file=sys.stderr, flush=True)
                with set_path(model, path):

                    def sample(x: torch.Tensor = x, z: torch.Tensor = z) -> torch.Tensor:
                        return D.ddim_sample(lambda xx, tt: model(xx, tt, z), x, args.ddim_steps)

                    ddim[path] = timed(sample, 1 if large else args.iters)
            ddim["fast_cl"]["speedup_vs_plain_cpu"] = ddim["plain"]["cpu_s"] / ddim["fast_cl"]["cpu_s"]
            ddim["fast_cl"]["speedup_vs_plain_wall"] = ddim["plain"]["wall_s"] / ddim["fast_cl"]["wall_s"]
            out["ddim"][f"batch{b}_steps{args.ddim_steps}"] = ddim
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny32,pada64,ffhq128_autoenc")
    ap.add_argument("--ffhq256", action="store_true", help="also benchmark ffhq256_autoenc")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--ddim-batches", default="1,8")
    ap.add_argument("--ddim-steps", type=int, default=25)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--bf16", action="store_true", help="also time bfloat16 autocast")
    ap.add_argument("--full", action="store_true", help="DDIM at batch > 1 also for presets > 50M params")
    args = ap.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",")]
    args.ddim_batches = [int(b) for b in args.ddim_batches.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    presets = [p for p in args.presets.split(",") if p]
    if args.ffhq256 and "ffhq256_autoenc" not in presets:
        presets.append("ffhq256_autoenc")
    report = {
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "note": "best of --iters after warm-up; cpu_s is process CPU time (all threads)",
        "presets": [bench_preset(p, args) for p in presets],
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
