"""Peak memory of ``AgingPipeline.age`` per number of futures N (JSON on stdout).

Each N runs in a fresh child process (so every peak is its own): load the pipeline, age one demo face into
N futures, report the peak RSS after loading and after aging (``ru_maxrss``, MiB). The futures are decoded
in chunks (``--batch-size``, default: the device's :func:`pada.aging.pipeline.default_chunk`), so the peak
should grow only by the N output images (N·3·H·W·4 bytes), not by N UNet activations.
``--batch-size 0`` decodes all N in one batch (the behaviour before chunking) for comparison.
Memory does not depend on the number of DDIM steps, so ``--steps`` defaults to 5 to keep this quick.

    python3 benchmarks/bench_pada_memory.py                        # shipped pada-demo64, N = 1, 8, 32, 128
    python3 benchmarks/bench_pada_memory.py --ns 8,128 --batch-size 0
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

TEXT = "man's face in his sixties"


def child(args: argparse.Namespace) -> dict:
    import torch

    from pada.aging.pipeline import AgingPipeline
    from pada.faces.align import face_tensors
    from pada.faces.io import load_image

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = AgingPipeline.from_pretrained(args.model)
    size = int(pipe.diffae.config.image_size)
    face = sorted(Path(args.faces, str(size)).glob("*.png"))[0]
    x = face_tensors(load_image(face), size, aligned=True, name=str(face))[0][0]
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bs = None if args.batch_size < 0 else (args.n_child if args.batch_size == 0 else args.batch_size)
    res = pipe.age(x, text=TEXT, n=args.n_child, steps=args.steps, batch_size=bs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"n": args.n_child, "image_size": size, "peak_rss_after_load_mib": round(loaded, 1),
            "peak_rss_mib": round(peak, 1), "growth_mib": round(peak - loaded, 1),
            "outputs_mib": round(res.images.numel() * 4 / 2**20, 1),
            "decode_batch": bs or "default", "decode_s": round(res.timings["decode"], 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="pada-demo64", help="PADA model (registry name or file)")
    ap.add_argument("--faces", default="data/demo/aligned", help="folder with <size>/*.png aligned faces")
    ap.add_argument("--ns", default="1,8,32,128", help="comma list of N")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=-1,
                    help="decode chunk (-1: the device default, 0: all N at once)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--n-child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.n_child:
        print(json.dumps(child(args)))
        return 0
    rows = []
    for n in [int(v) for v in args.ns.split(",") if v]:
        cmd = [sys.executable, __file__, "--n-child", str(n), "--model", args.model, "--faces", args.faces,
               "--steps", str(args.steps), "--batch-size", str(args.batch_size),
               "--threads", str(args.threads)]
        print(f"[bench_pada_memory] N={n}", file=sys.stderr, flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"N={n}: child failed: {out.stderr.strip().splitlines()[-1]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(json.dumps({"model": args.model, "steps": args.steps, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
