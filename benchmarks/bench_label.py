"""Throughput of FFHQ-AT relabeling (``pada label``) on this machine; prints one JSON object.

Three numbers, each as images/s (wall clock) and CPU seconds per image (user+sys of this process and its
DataLoader workers; more stable than wall time on a busy shared machine):

* ``critics``: age + gender critics on a ready batch (no I/O);
* ``load_detect``: decoding, resizing and face detection of the files (one process);
* ``end_to_end``: :func:`pada.data.labels.relabel` into a fresh table (workers, batching, journal).

Usage::

    python benchmarks/bench_label.py                      # the demo set's 256 crops (data/demo)
    python benchmarks/bench_label.py --dir FOLDER --n 500 --workers 2 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def _cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _timed(fn):
    w0, c0 = time.perf_counter(), _cpu()
    out = fn()
    return out, time.perf_counter() - w0, _cpu() - c0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=None, help="folder of aligned faces (default: the demo set's 256 crops)")
    ap.add_argument("--n", type=int, default=256, help="images to use (first N files)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--critic", default="dlib", choices=("dlib", "dex"))
    ap.add_argument("--no-detect", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from pada.data.demo import aligned_dir, default_demo_dir
    from pada.data.labels import (
        FolderImages,
        default_detector_factory,
        list_images,
        load_label_critics,
        relabel,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.dir) if args.dir else aligned_dir(default_demo_dir(), 256)
    if not root.is_dir():
        print(f"error: {root}: no such folder (build the demo set with `pada data demo` or pass --dir)",
              file=sys.stderr)
        return 1
    files = list_images(root)[: args.n]
    age, gender = load_label_critics(args.critic)
    det = None if args.no_detect else default_detector_factory

    # 1. critics alone on one ready batch, repeated
    ds = FolderImages(root, files[: args.batch_size], args.size, None)
    batch = torch.stack([ds[i]["image"] for i in range(len(ds))])
    with torch.inference_mode():
        age(batch), gender(batch)  # warm-up
        reps = max(1, args.n // len(ds))
        _, w_crit, c_crit = _timed(lambda: [(age(batch), gender(batch)) for _ in range(reps)])
    n_crit = reps * len(ds)

    # 2. loading + detection in this process
    ds = FolderImages(root, files, args.size, det)
    _, w_load, c_load = _timed(lambda: [ds[i] for i in range(len(ds))])

    # 3. end to end
    with tempfile.TemporaryDirectory() as tmp:
        res, w_e2e, c_e2e = _timed(lambda: relabel(
            root, Path(tmp) / "labels.csv", age_critic=age, gender_critic=gender, detector_factory=det,
            size=args.size, batch_size=args.batch_size, num_workers=args.workers, files=files,
            progress=False))

    def rate(n, w, c):
        return {"images_per_s": round(n / w, 2), "cpu_s_per_image": round(c / n, 4), "images": n}

    print(json.dumps({
        "dir": str(root), "critic": args.critic, "detect": not args.no_detect, "size": args.size,
        "batch_size": args.batch_size, "workers": args.workers, "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
        "critics": rate(n_crit, w_crit, c_crit),
        "load_detect": rate(len(files), w_load, c_load),
        "end_to_end": rate(res.labelled, w_e2e, c_e2e),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
