"""GPU path of pada, one prepared run (JSON): the aging job per execution option, and PADA training speed.

Run through ``benchmarks/bench_gpu.sh`` on a machine with a CUDA GPU (about 5-7 minutes on an H100/H200);
``--tiny`` runs the same code at toy scale on the CPU (what the test suite checks).

* ``job``: one face at ``--size`` (default 256: the ffhq256 DiffAE preset, random weights drawn like the
  official fixtures) -> encode -> ``--inv-steps`` DDIM inversion (batch 1) -> ``--n`` futures rendered with
  ``--steps`` (batch n, n different codes z). For each option in ``--variants``:
  ``fp32`` (NCHW, TF32 off: the official numerics), ``tf32`` (TF32 matmul/conv), ``bf16`` (autocast),
  ``bf16_cl`` (+ channels_last), ``bf16_cl_compile`` (+ ``torch.compile(mode="reduce-overhead")``: CUDA
  graphs over the fixed-shape loops). Median of ``--repeats`` after a warm-up that also compiles
  (``compile_s``), the max abs difference to the fp32 images, and the FLOP limit of the job
  (FLOPs counted by ``torch.utils.flop_counter`` / ``--peak-tflops``).
* ``train``: PADA training steps (objective of paper Eq. 12 with all six losses, backward through the
  frozen DiffAE, AdamW on E_age + modulation) at the paper's batch 24, fp32/TF32 and bf16 autocast,
  images per second. Critics / VL: the shipped ``dlib-age``, ``sface``, ``faceclip`` when their weights
  are installed, otherwise (or with ``--tiny``) the tiny random stand-ins (said in the output).

A variant that fails (e.g. no Triton for ``torch.compile``) is reported with its error; the run goes on.
``--budget-s`` skips what would start after that many seconds.

    bash benchmarks/bench_gpu.sh                       # on the GPU machine; JSON to stdout and bench_gpu.json
    python3 benchmarks/bench_gpu.py --tiny             # CPU smoke run at toy scale
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_diffae import emit_json, randomize_  # noqa: E402

VARIANTS = ("fp32", "tf32", "bf16", "bf16_cl", "bf16_cl_compile")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def tf32(enabled: bool):
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def build_diffae(preset: str, device: torch.device):
    from pada.diffae import DiffAE
    from pada.networks.config import load_preset
    from pada.networks.unet import DiffAEUNet

    unet = DiffAEUNet(load_preset(preset)).eval()
    randomize_(unet, 0)
    return DiffAE(unet).to(device).eval()


def configure(diffae, variant: str, compile_backend: str | None):
    """Set ``diffae`` up for ``variant`` (fresh compile each time); returns the TF32 switch to use."""
    diffae.__dict__["_compiled"] = None
    diffae.unet.to_channels_last("_cl" in variant)
    diffae.set_precision("bf16" if variant.startswith("bf16") else "fp32")
    if variant.endswith("compile"):
        diffae.compile_unet(mode="reduce-overhead" if diffae.unet.out[2].weight.is_cuda else None,
                            backend=compile_backend or "inductor")
    return variant == "tf32"


def job_fn(diffae, x: torch.Tensor, dz: torch.Tensor, inv_steps: int, steps: int):
    n = dz.shape[0]

    def run() -> torch.Tensor:
        with torch.inference_mode():
            z = diffae.encode(x)
            x_T = diffae.encode_stochastic(x, z, T=inv_steps)  # noqa: N806
            return diffae.render(x_T.expand(n, -1, -1, -1), z + dz, T=steps)

    return run


def job_flops(diffae, x: torch.Tensor, dz: torch.Tensor, inv_steps: int, steps: int) -> float:
    """FLOPs of the job: one encoder call + inv_steps UNet calls at batch 1 + steps at batch n."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = diffae.config
    n = dz.shape[0]
    with torch.inference_mode():
        z = diffae.encode(x)
        t1 = torch.zeros(1, dtype=torch.long, device=x.device)
        with FlopCounterMode(display=False) as enc:
            diffae.encode(x)
        with FlopCounterMode(display=False) as f1:
            diffae.unet(x, t1, z)
        with FlopCounterMode(display=False) as fn:
            diffae.unet(x.expand(n, -1, -1, -1), t1.expand(n), z.expand(n, cfg.enc_out_channels))
    return enc.get_total_flops() + inv_steps * f1.get_total_flops() + steps * fn.get_total_flops()


def bench_job(args, device: torch.device, report: dict, t_start: float) -> None:
    diffae = build_diffae(args.preset, device)
    cfg = diffae.config
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(1, 3, cfg.image_size, cfg.image_size, generator=g) * 2 - 1).to(device)
    dz = (0.1 * torch.randn(args.n, cfg.enc_out_channels, generator=g)).to(device)
    flops = job_flops(diffae, x, dz, args.inv_steps, args.steps)
    out: dict = {"preset": args.preset, "image_size": cfg.image_size, "n": args.n,
                 "inversion_steps": args.inv_steps, "render_steps": args.steps, "tflop": flops / 1e12,
                 "flop_limit_s": flops / (args.peak_tflops * 1e12), "peak_tflops_assumed": args.peak_tflops,
                 "variants": {}}
    ref = None
    for variant in args.variants:
        if time.perf_counter() - t_start > args.budget_s:
            out["variants"][variant] = {"skipped": f"time budget {args.budget_s}s used up"}
            continue
        print(f"[bench_gpu] job {variant}", file=sys.stderr, flush=True)
        try:
            use_tf32 = configure(diffae, variant, args.compile_backend)
            run = job_fn(diffae, x, dz, args.inv_steps, args.steps)
            with tf32(use_tf32):
                w0 = time.perf_counter()
                img = run()
                sync(device)
                first = time.perf_counter() - w0
                times = []
                for _ in range(args.repeats):
                    w0 = time.perf_counter()
                    img = run()
                    sync(device)
                    times.append(time.perf_counter() - w0)
            res = {"median_s": statistics.median(times), "min_s": min(times), "first_call_s": first,
                   "x_flop_limit": statistics.median(times) / out["flop_limit_s"]}
            if variant.endswith("compile"):
                res["compile_s"] = first - statistics.median(times)
            if ref is None:
                ref = img.float()
                res["reference_of_max_abs_diff"] = True
            else:
                res["max_abs_diff_vs_first"] = float((img.float() - ref).abs().max())
            if device.type == "cuda":
                res["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
                torch.cuda.reset_peak_memory_stats(device)
            out["variants"][variant] = res
        except Exception as exc:  # noqa: BLE001 - a failing option is a result, the run goes on
            out["variants"][variant] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    diffae.__dict__["_compiled"] = None
    report["job"] = out


def frozen_for_training(args, device: torch.device, diffae):
    """(vl, age critic, id critic, note): shipped ones if installed (not --tiny), else tiny stand-ins."""
    from pada.aging.testing import TinyAgeCritic, TinyIdentityCritic, TinyVL

    if not args.tiny:
        try:
            from pada.critics.registry import load_critic
            from pada.vl import load_vl

            return (load_vl("faceclip").to(device), load_critic("dlib-age", device=device),
                    load_critic("sface", device=device), "shipped faceclip / dlib-age / sface")
        except Exception as exc:  # noqa: BLE001
            note = f"tiny random critics/VL (shipped ones unavailable: {str(exc).splitlines()[0][:200]})"
    else:
        note = "tiny random critics/VL (--tiny)"
    return TinyVL(dim=512).to(device), TinyAgeCritic().to(device), TinyIdentityCritic().to(device), note


def pair_batch(b: int, size: int, device: torch.device, seed: int) -> dict:
    """A synthetic AgingPairDataset batch: smooth random faces, alternating image / text references."""
    from pada.data.groups import description

    g = torch.Generator().manual_seed(seed)
    low = torch.rand((2 * b, 3, 8, 8), generator=g) * 2 - 1
    imgs = torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False).to(device)
    genders = ["female" if i % 2 else "male" for i in range(b)]
    src_g, tar_g = [i % 7 for i in range(b)], [(3 * i + 2) % 7 for i in range(b)]
    return {"source": imgs[:b], "reference": imgs[b:], "ref_is_source": torch.zeros(b, dtype=torch.bool),
            "mode": ["image" if i % 2 == 0 else "text" for i in range(b)],
            "source_description": [description(a, s) for a, s in zip(src_g, genders)],
            "target_description": [description(a, s) for a, s in zip(tar_g, genders)]}


def bench_train(args, device: torch.device, report: dict, t_start: float) -> None:
    from pada.aging.config import PadaConfig
    from pada.aging.model import PadaModel
    from pada.aging.objective import Frozen, PadaObjective

    diffae = build_diffae(args.preset, device)
    vl, age, idc, note = frozen_for_training(args, device, diffae)
    cfg = PadaConfig(e_dim=int(vl.dim), z_dim=int(diffae.config.enc_out_channels))
    out: dict = {"batch": args.train_batch, "image_size": diffae.config.image_size, "frozen": note,
                 "runs": {}}
    for precision in ("tf32", "bf16") if device.type == "cuda" else ("fp32", "bf16"):
        if time.perf_counter() - t_start > args.budget_s:
            out["runs"][precision] = {"skipped": f"time budget {args.budget_s}s used up"}
            continue
        print(f"[bench_gpu] train {precision}", file=sys.stderr, flush=True)
        try:
            model = PadaModel(cfg).to(device).train()
            objective = PadaObjective(model, Frozen(diffae, vl, age, idc))
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            gen = torch.Generator(device=device).manual_seed(0)
            batch = pair_batch(args.train_batch, diffae.config.image_size, device, 0)
            ac = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                  else contextlib.nullcontext())
            times = []
            with tf32(precision == "tf32"):
                for step in range(args.train_warmup + args.train_steps):
                    w0 = time.perf_counter()
                    with ac:
                        losses = objective(batch, gen)
                    opt.zero_grad(set_to_none=True)
                    losses["total"].float().backward()
                    opt.step()
                    sync(device)
                    if step >= args.train_warmup:
                        times.append(time.perf_counter() - w0)
            med = statistics.median(times)
            res = {"step_s_median": med, "img_per_s": args.train_batch / med, "steps_timed": len(times),
                   "loss_total_last": float(losses["total"].detach())}
            if device.type == "cuda":
                res["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
                torch.cuda.reset_peak_memory_stats(device)
            out["runs"][precision] = res
        except Exception as exc:  # noqa: BLE001
            out["runs"][precision] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    report["train"] = out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--preset", default="ffhq256_autoenc")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--inv-steps", type=int, default=25)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor)")
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="dense bf16 peak used for the FLOP limit (H100/H200 SXM: 989)")
    ap.add_argument("--train-batch", type=int, default=24)
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--train-warmup", type=int, default=3)
    ap.add_argument("--parts", default="job,train")
    ap.add_argument("--budget-s", type=float, default=420.0)
    ap.add_argument("--tiny", action="store_true",
                    help="toy scale on the CPU: tiny32 preset, 2 futures, 2 steps, batch 2, eager compile")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    if args.tiny:
        args.device, args.preset, args.n, args.inv_steps, args.steps = "cpu", "tiny32", 2, 2, 2
        args.repeats, args.train_batch, args.train_steps, args.train_warmup = 1, 2, 1, 1
        args.compile_backend = args.compile_backend or "eager"
    args.variants = [v for v in args.variants.split(",") if v]
    for v in args.variants:
        if v not in VARIANTS:
            raise SystemExit(f"--variants: unknown {v!r} (known: {', '.join(VARIANTS)})")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA device here (use --tiny for the CPU smoke run)")
    t_start = time.perf_counter()
    report: dict = {"torch": torch.__version__, "device": str(device), "machine": platform.machine(),
                    "tiny": args.tiny}
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
        report["sdpa_flash"] = torch.backends.cuda.flash_sdp_enabled()
    parts = [p for p in args.parts.split(",") if p]
    if "job" in parts:
        bench_job(args, device, report, t_start)
    if "train" in parts:
        bench_train(args, device, report, t_start)
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    emit_json(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
