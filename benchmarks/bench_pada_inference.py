"""PADA inference time per stage, printed as JSON.

``python benchmarks/bench_pada_inference.py`` ages one face into ``--n`` (default 8) results with the
``pada64`` DiffAE preset (random weights: timing does not depend on the values) through
:class:`pada.aging.pipeline.AgingPipeline` and reports, per stage, the best of ``--repeats`` runs:

* ``encode``: semantic encoder z_src, VL text / image embedding, N PAE samples, modulation (Eq. 5-6);
* ``invert``: one inversion of the input with z_src (``--steps`` steps, shared by the N results);
* ``decode``: the N decodes (``--steps`` steps), in chunks.

Sampling as ``pada age``: ``--sampler multistep`` (default) with its 8 steps; ``--sampler ddim`` 25.

``--vl``: ``tiny`` (a small random stand-in, default, so the numbers are those of PADA's own stages),
``faceclip`` (the offline FaceCLIP, needs its heads) or ``openclip:ViT-B-32:random``.
``--low-diversity`` starts each result from its own noise (the inversion mixed with fresh noise at the
model's ``low_noise``; a random model's share is 1, fresh noise alone, which needs no inversion).

``--model pada-demo64`` (or a PADA file) times the shipped pipeline instead (its DiffAE, its VL model), as
``pada age photo --aligned -n 8`` runs it; the report then also gives the seconds of ``import torch`` + pada
and of loading the models (``load_seconds``), which a CLI call pays once. ``--inv-steps`` sets the
inversion steps apart from the render steps, ``--sampler`` the sampler of both. Every stage is reported
as wall seconds and as process CPU seconds (``cpu``: all threads; on a shared machine the better measure
of the code's own cost).

    python3 benchmarks/bench_pada_inference.py --model pada-demo64 -n 8 --threads 2
    python3 benchmarks/bench_pada_inference.py --model pada-demo64 -n 8 --sampler ddim --steps 25
"""

from __future__ import annotations

import argparse
import json
import platform
import time

T_START = time.perf_counter()
import torch  # noqa: E402

T_TORCH = time.perf_counter()


def build(preset: str, vl_name: str, device: torch.device):
    from pada.aging.config import PadaConfig
    from pada.aging.model import PadaModel
    from pada.aging.pipeline import AgingPipeline
    from pada.aging.testing import TinyVL
    from pada.diffae import DiffAE
    from pada.networks.config import load_preset
    from pada.networks.unet import DiffAEUNet

    torch.manual_seed(0)
    diffae = DiffAE(DiffAEUNet(load_preset(preset))).eval()
    if vl_name == "tiny":
        vl = TinyVL(dim=512)
    else:
        from pada.vl import load_vl

        vl = load_vl(vl_name)
    cfg = PadaConfig(e_dim=int(vl.dim), z_dim=int(diffae.config.enc_out_channels), vl=vl_name, diffae=preset)
    return AgingPipeline(diffae, vl, PadaModel(cfg), device=device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="pada64")
    ap.add_argument("--vl", default="tiny")
    ap.add_argument("-n", type=int, default=8)
    ap.add_argument("--steps", type=int, default=0, help="sampler steps (0: the sampler's default)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--low-diversity", action="store_true")
    ap.add_argument("--model", default="", help="trained PADA model (registry name or file), not random")
    ap.add_argument("--inv-steps", type=int, default=0, help="inversion steps (0: --steps)")
    ap.add_argument("--sampler", default="multistep",
                    help="multistep (default, as `pada age`) | ddim (pada.diffusion.samplers)")
    ap.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=None,
                    help="per-face edit length first (5 extra renders; default: the model's, "
                         "on for pada-demo64)")
    ap.add_argument("--draw-spread", type=float, default=None,
                    help="default: the model's (0.14 for pada-demo64)")
    ap.add_argument("--tone-guard", type=float, default=None,
                    help="skin-shading margin while sampling (default: the model's; 0 = off)")
    ap.add_argument("--background-guard", type=float, default=None,
                    help="backdrop margin while sampling (default: the model's; 0 = off)")
    ap.add_argument("--saturation-guard", type=float, default=None,
                    help="head colour-strength margin while sampling (default: the model's; 0 = off)")
    ap.add_argument("--blotch-guard", type=float, default=None,
                    help="re-render results whose skin brightness changed unevenly beyond this with a "
                         "shorter edit (default: the model's; 0 = off)")
    ap.add_argument("--contrast-bound", type=float, default=None,
                    help="shorten every edit before it is rendered so that its coarse-image change stays "
                         "within R x the face's coarse contrast (default: the model's, 0.5 for pada-demo64; "
                         "0 = off)")
    ap.add_argument("--out-size", type=int, default=0,
                    help="also carry the results onto an S px crop of the face (detail transfer, as "
                         "pada age --out-size; with --model the demo set's S px crop if built; 0 = off)")
    args = ap.parse_args()
    from pada.diffusion.samplers import get_sampler

    args.steps = args.steps or get_sampler(args.sampler).default_steps
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    l0, c0 = time.perf_counter(), time.process_time()
    if args.model:
        import pada.cli.main  # noqa: F401 - what the CLI imports before loading
        from pada.aging.pipeline import AgingPipeline

        t_import = time.perf_counter()
        pipe = AgingPipeline.from_pretrained(args.model, device=device)
    else:
        t_import = time.perf_counter()
        pipe = build(args.preset, args.vl, device)
    load = {"import_torch_s": round(T_TORCH - T_START, 3), "import_pada_s": round(t_import - l0, 3),
            "load_models_s": round(time.perf_counter() - t_import, 3),
            "load_cpu_s": round(time.process_time() - c0, 3)}
    size = int(pipe.diffae.config.image_size)
    g = torch.Generator().manual_seed(0)
    face = torch.rand((3, size, size), generator=g) * 2 - 1
    face_hr = None
    if args.model:  # a real face: the demo set's first aligned image
        from pathlib import Path

        from pada.faces.align import face_tensors
        from pada.faces.io import load_image

        found = sorted(Path("data/demo/aligned", str(size)).glob("*.png"))
        if found:
            face = face_tensors(load_image(found[0]), size, aligned=True, name=str(found[0]))[0][0]
            sharp = Path("data/demo/aligned", str(args.out_size), found[0].name)
            if args.out_size and sharp.is_file():
                face_hr = face_tensors(load_image(sharp), args.out_size, aligned=True, name=str(sharp))[0][0]
    kw = {"text": "man's face in his sixties", "n": args.n, "steps": args.steps,
          "low_diversity": args.low_diversity, "sampler": args.sampler, "calibrate": args.calibrate,
          "draw_spread": args.draw_spread, "tone_guard": args.tone_guard,
          "background_guard": args.background_guard, "saturation_guard": args.saturation_guard,
          "blotch_guard": args.blotch_guard, "contrast_bound": args.contrast_bound}
    if args.inv_steps:
        kw["inversion_steps"] = args.inv_steps
    if args.out_size:
        if face_hr is None:  # no demo crop at that size: the face enlarged (the cost is the same)
            face_hr = torch.nn.functional.interpolate(face[None], size=args.out_size, mode="bicubic")[0]
        kw["image_hr"] = face_hr.clamp(-1, 1)
    pipe.age(face, **{**kw, "n": 1, "steps": 2, "inversion_steps": 2})  # warm-up
    best: dict[str, float] = {}
    totals, cpus = [], []
    for r in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        res = pipe.age(face, seed=r, **kw)
        totals.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        for k, v in res.timings.items():
            best[k] = min(best.get(k, float("inf")), v)
    print(json.dumps({
        "benchmark": "pada_inference", "model": args.model or "random", "load_seconds": load,
        "inversion_steps": args.inv_steps or args.steps, "sampler": args.sampler,
        "total_cpu_seconds_best": round(min(cpus), 4),
        "preset": args.preset, "image_size": size, "vl": args.vl, "n_outputs": args.n, "steps": args.steps,
        "low_diversity": args.low_diversity, "calibrate": args.calibrate, "draw_spread": args.draw_spread,
        "tone_guard": args.tone_guard, "background_guard": args.background_guard,
        "saturation_guard": args.saturation_guard, "blotch_guard": args.blotch_guard,
        "contrast_bound": args.contrast_bound, "out_size": args.out_size or None,
        "device": str(device), "threads": torch.get_num_threads(),
        "stage_seconds_best": {k: round(v, 4) for k, v in best.items()},
        "total_seconds_best": round(min(totals), 4), "total_seconds_all": [round(t, 4) for t in totals],
        "seconds_per_output": round(min(totals) / args.n, 4),
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
