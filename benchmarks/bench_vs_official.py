"""pada vs the official DiffAE code, side by side in one process (JSON on stdout).

The official code (github ``phizaz/diffae``) is never downloaded: point the script at a local checkout
with ``--official PATH`` or ``PADA_OFFICIAL_DIFFAE=PATH``; without one it prints one line and exits 0.
Only its ``model/``, ``diffusion/``, ``choices.py`` and ``config_base.py`` are imported, as they are
(they need nothing beyond torch and numpy; no stub is used).

Both implementations get the same random weights (drawn like the official fixtures: conv/linear
N(0,1)/sqrt(fan_in), GroupNorm 1 + 0.1·N(0,1), also over the official zero-inits), loaded key for key.
Each item is timed in rounds that alternate which implementation runs first, so machine noise hits
both; wall and process-CPU seconds are reported as median and min over ``--repeats`` after a warm-up
(for ``job``: one ``fwd1`` each, and the first timed round gives the compared outputs):

* ``fwd1`` / ``fwd8``: one UNet forward ε_θ(x_t, t, z) at batch 1 / 8;
* ``enc8``: the semantic encoder at batch 8;
* ``job``: the aging job: encode one face -> DDIM inversion (``--steps``, batch 1) -> render ``--n``
  futures (``--steps``) from that x_T with ``--n`` different codes z (as PADA's z_age).

Official calls: ``BeatGANsAutoencModel.forward(x, t, cond=z).pred`` / ``.encoder(x)`` under
``torch.no_grad`` and ``SpacedDiffusionBeatGans.ddim_reverse_sample_loop`` / ``ddim_sample_loop`` (eta 0,
clip), fp32. pada calls: :class:`pada.diffae.DiffAE` as ``from_pretrained`` sets it up on this device
(fast path, channels_last on CPU): ``unet(...)``, ``encode``, ``encode_stochastic``, ``render``.
``max_abs_diff`` compares the two outputs of each item (fixture tolerances: ε̂ 1e-4, z 1e-5, images
of a 10-step chain 5e-2 max / 1e-3 mean, README of the official fixtures §6).

Peak RSS per implementation comes from a child process that builds only that implementation and runs
``enc8`` + ``fwd8`` once (``--no-rss`` skips it).

    python3 benchmarks/bench_vs_official.py --official /path/to/diffae --items fwd1,fwd8,enc8
    python3 benchmarks/bench_vs_official.py --official /path/to/diffae --items job --repeats 2 --no-rss
    python3 benchmarks/bench_vs_official.py --official /path/to/diffae --preset ffhq256_autoenc --items fwd1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_diffae import emit_json, randomize_  # noqa: E402

ITEMS = ("fwd1", "fwd8", "enc8", "job")


def find_official(arg: str | None) -> Path | None:
    """The official checkout from ``--official`` or ``PADA_OFFICIAL_DIFFAE`` (None when absent)."""
    spec = arg or os.environ.get("PADA_OFFICIAL_DIFFAE")
    if not spec:
        return None
    p = Path(spec).expanduser()
    ok = (p / "model" / "unet_autoenc.py").is_file() and (p / "diffusion" / "base.py").is_file()
    return p if ok else None


def import_official(path: Path) -> dict:
    """The official classes, imported from the checkout as they are."""
    sys.path.insert(0, str(path))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.cuda.amp.autocast deprecation in diffusion/base.py
        import choices
        import diffusion.base
        import diffusion.diffusion
        import model.unet_autoenc
    mods = {name: getattr(choices, name)
            for name in ("GenerativeType", "LossType", "ModelMeanType", "ModelType", "ModelVarType")}
    mods["get_named_beta_schedule"] = diffusion.base.get_named_beta_schedule
    mods["SpacedDiffusionBeatGansConfig"] = diffusion.diffusion.SpacedDiffusionBeatGansConfig
    mods["space_timesteps"] = diffusion.diffusion.space_timesteps
    mods["BeatGANsAutoencConfig"] = model.unet_autoenc.BeatGANsAutoencConfig
    mods["BeatGANsAutoencModel"] = model.unet_autoenc.BeatGANsAutoencModel
    return mods


def official_model(mods: dict, cfg):
    """The official ``BeatGANsAutoencModel`` for a pada :class:`DiffAEConfig` (same fields)."""
    conf = mods["BeatGANsAutoencConfig"](
        image_size=cfg.image_size, in_channels=cfg.in_channels, model_channels=cfg.model_channels,
        out_channels=cfg.out_channels, num_res_blocks=cfg.num_res_blocks, embed_channels=cfg.embed_channels,
        attention_resolutions=tuple(cfg.attention_resolutions), dropout=cfg.dropout,
        channel_mult=tuple(cfg.channel_mult), conv_resample=True, dims=2, num_classes=None,
        num_heads=cfg.num_heads, num_head_channels=cfg.num_head_channels,
        num_heads_upsample=cfg.num_heads_upsample, resblock_updown=cfg.resblock_updown,
        use_new_attention_order=False, resnet_two_cond=True, resnet_use_zero_module=True,
        resnet_cond_channels=cfg.enc_out_channels,  # None in official files, where it equals embed_channels
        enc_out_channels=cfg.enc_out_channels, enc_pool="adaptivenonzero",
        enc_num_res_block=cfg.enc_num_res_block, enc_channel_mult=cfg.enc_channel_mult,
        enc_attn_resolutions=cfg.enc_attn_resolutions, latent_net_conf=None,
    )
    return mods["BeatGANsAutoencModel"](conf).eval()


def official_sampler(mods: dict, steps: int):
    """Official ``_make_diffusion_conf(steps)`` for beatgans DDIM: T=1000 linear, eps, fp32."""
    conf = mods["SpacedDiffusionBeatGansConfig"](
        gen_type=mods["GenerativeType"].ddim, model_type=mods["ModelType"].autoencoder,
        betas=mods["get_named_beta_schedule"]("linear", 1000),
        model_mean_type=mods["ModelMeanType"].eps, model_var_type=mods["ModelVarType"].fixed_large,
        loss_type=mods["LossType"].mse, rescale_timesteps=False,
        use_timesteps=mods["space_timesteps"](num_timesteps=1000, section_counts=f"ddim{steps}"), fp16=False,
    )
    return conf.make_sampler()


def build(preset: str, official_path: Path | None, seed: int = 0):
    """(pada DiffAE set up as ``from_pretrained`` does on CPU, official model or None)."""
    from pada.diffae import DiffAE
    from pada.networks.config import load_preset
    from pada.networks.unet import DiffAEUNet

    cfg = load_preset(preset)
    unet = DiffAEUNet(cfg).eval()
    randomize_(unet, seed)
    off = None
    if official_path is not None:
        off = official_model(import_official(official_path), cfg)
        missing, unexpected = off.load_state_dict(unet.state_dict(), strict=True)
        del missing, unexpected
    unet.to_channels_last(True)  # what DiffAE.from_pretrained does on CPU
    return DiffAE(unet).eval(), off


def inputs(cfg, batch: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = cfg.image_size
    x = torch.rand(batch, 3, s, s, generator=g) * 2 - 1
    t = torch.randint(0, 1000, (batch,), generator=g)
    z = torch.randn(batch, cfg.enc_out_channels, generator=g)
    return x, t, z


def make_item(item: str, pada, off, mods, args) -> tuple:
    """(official fn, pada fn): each returns the output tensor of the item."""
    cfg = pada.config
    if item in ("fwd1", "fwd8"):
        x, t, z = inputs(cfg, 1 if item == "fwd1" else 8)

        def f_off():
            with torch.no_grad():
                return off(x, t, cond=z).pred

        def f_pada():
            with torch.inference_mode():
                return pada.unet(x, t, z)

        return f_off, f_pada
    if item == "enc8":
        x = inputs(cfg, 8)[0]

        def f_off():
            with torch.no_grad():
                return off.encoder(x)

        def f_pada():
            with torch.inference_mode():
                return pada.encode(x)

        return f_off, f_pada
    if item == "job":
        x = inputs(cfg, 1)[0]
        g = torch.Generator().manual_seed(2)
        dz = 0.1 * torch.randn(args.n, cfg.enc_out_channels, generator=g)  # stands in for z_age - z_src
        sampler = official_sampler(mods, args.steps) if off is not None else None

        def f_off():
            with torch.no_grad():
                z = off.encoder(x)
                x_T = sampler.ddim_reverse_sample_loop(off, x, model_kwargs={"cond": z})["sample"]  # noqa: N806
                return sampler.ddim_sample_loop(off, noise=x_T.expand(args.n, -1, -1, -1).contiguous(),
                                                model_kwargs={"cond": z + dz})

        def f_pada():
            with torch.inference_mode():
                z = pada.encode(x)
                x_T = pada.encode_stochastic(x, z, T=args.steps)  # noqa: N806
                return pada.render(x_T.expand(args.n, -1, -1, -1), z + dz, T=args.steps)

        return f_off, f_pada
    raise SystemExit(f"--items: unknown item {item!r} (known: {', '.join(ITEMS)})")


def clock(fn) -> tuple[float, float, torch.Tensor]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def summary(walls: list[float], cpus: list[float]) -> dict:
    return {"wall_median_s": statistics.median(walls), "wall_min_s": min(walls),
            "cpu_median_s": statistics.median(cpus), "cpu_min_s": min(cpus), "runs": len(walls)}


def run_item(item: str, pada, off, mods, args) -> dict:
    f_off, f_pada = make_item(item, pada, off, mods, args)
    fns = {"official": f_off, "pada": f_pada}
    outs = {}
    if item == "job":  # warm-up with one small forward each; the first timed job gives the outputs
        fwd = make_item("fwd1", pada, off, mods, args)
        fwd[0](), fwd[1]()
    for name, fn in fns.items() if item != "job" else ():  # warm-up (also the outputs compared below)
        print(f"[bench_vs_official] {item} warm-up {name}", file=sys.stderr, flush=True)
        outs[name] = clock(fn)[2].float()
    times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in fns}
    for r in range(args.repeats):
        order = ["official", "pada"] if r % 2 == 0 else ["pada", "official"]
        for name in order:
            w, c, out = clock(fns[name])
            outs.setdefault(name, out.float())
            times[name][0].append(w)
            times[name][1].append(c)
            print(f"[bench_vs_official] {item} round {r} {name}: wall {w:.3f}s cpu {c:.3f}s",
                  file=sys.stderr, flush=True)
    res = {k: summary(*v) for k, v in times.items()}
    diff = (outs["pada"] - outs["official"]).abs()
    res["max_abs_diff"] = float(diff.max())
    res["mean_abs_diff"] = float(diff.mean())
    res["speedup_wall_median"] = res["official"]["wall_median_s"] / res["pada"]["wall_median_s"]
    res["speedup_cpu_median"] = res["official"]["cpu_median_s"] / res["pada"]["cpu_median_s"]
    return res


def _vm_kib(field: str) -> float | None:
    """A ``/proc/self/status`` field in KiB (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux >= 4.0)."""
    import gc

    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_child(which: str, args) -> dict:
    """Peak RSS (MiB) of a process that builds only one implementation and runs enc8 + fwd8 once; with
    ``run_peak_mib`` the peak of the run alone (the peak mark is reset after building: building random
    weights has its own, larger temporaries)."""
    cfg = load_cfg(args.preset)
    x, t, z = inputs(cfg, 8)
    if which == "official":
        off = official_model(import_official(find_official(args.official)), cfg)
        randomize_(off, 0)  # same distribution as the pada weights; values do not change the memory
        built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        reset = _reset_peak_rss()
        with torch.no_grad():
            off.encoder(x)
            off(x, t, cond=z)
    else:
        pada = build(args.preset, None)[0]
        built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        reset = _reset_peak_rss()
        with torch.inference_mode():
            pada.encode(x)
            pada.unet(x, t, z)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"peak_rss_mib": round(peak, 1), "peak_rss_after_build_mib": round(built, 1)}
    hwm = _vm_kib("VmHWM")
    if reset and hwm is not None:
        out["run_peak_rss_mib"] = round(hwm / 1024, 1)
    return out


def load_cfg(preset: str):
    from pada.networks.config import load_preset

    return load_preset(preset)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official", default=None, help="official DiffAE checkout (or PADA_OFFICIAL_DIFFAE)")
    ap.add_argument("--preset", default="ffhq128_autoenc", help="pada DiffAE preset (random weights)")
    ap.add_argument("--items", default=",".join(ITEMS), help=f"comma list of {', '.join(ITEMS)}")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds per item after a warm-up")
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps of the job (inversion and render)")
    ap.add_argument("-n", type=int, default=4, help="futures rendered by the job")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS child processes")
    ap.add_argument("--rss-only", action="store_true", help="only the peak-RSS child processes")
    ap.add_argument("--rss-child", choices=("official", "pada"), help=argparse.SUPPRESS)
    ap.add_argument("--json", default="", help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child:
        print(json.dumps(rss_child(args.rss_child, args)))
        return 0
    official = find_official(args.official)
    if official is None:
        print("bench_vs_official: skipped (no official DiffAE checkout: pass --official PATH or set "
              "PADA_OFFICIAL_DIFFAE to a clone of github.com/phizaz/diffae)")
        return 0
    items = [i for i in args.items.split(",") if i]
    for i in items:
        if i not in ITEMS:
            raise SystemExit(f"--items: unknown item {i!r} (known: {', '.join(ITEMS)})")
    if args.rss_only:
        items = []
    pada, off = build(args.preset, official) if items else (None, None)
    mods = import_official(official)
    report: dict = {
        "preset": args.preset, "official": str(official), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "job": {"steps": args.steps, "n": args.n}, "repeats": args.repeats,
        "note": "median/min over alternating rounds after one warm-up each; cpu = process CPU time",
        "items": {},
    }
    for item in items:
        report["items"][item] = run_item(item, pada, off, mods, args)
    if not args.no_rss:
        report["peak_rss"] = {}
        for which in ("official", "pada"):
            cmd = [sys.executable, __file__, "--rss-child", which, "--preset", args.preset,
                   "--official", str(official)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            report["peak_rss"][which] = json.loads(out.strip().splitlines()[-1])
    emit_json(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
