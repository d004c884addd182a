"""Training throughput of the DiffAE task, printed as JSON.

``python -m pada.diffae.benchmark --preset pada64 --batch-size 16 --steps 30 --precision no,bf16``

Runs the real trainer (:class:`~pada.training.engine.Trainer` + :class:`~pada.diffae.train.DiffAETask`)
on synthetic blob images for each precision and reports images per second over the steps after ``--warmup``
(median of the per-step rates, and the mean over the whole timed span). No checkpoints, grids or exports
are written during the timed steps (one final checkpoint per run goes to a temporary folder). The 1-minute
load average is reported because a shared CPU makes numbers noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

from pada.diffae.train import DiffAETask, DiffAETaskConfig
from pada.training.engine import TrainConfig, Trainer


def measure(preset: str, batch_size: int, steps: int, warmup: int, precision: str, cpu: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = f"synthetic:blobs:{batch_size * 4}"
        task = DiffAETask(DiffAETaskConfig(data=data, preset=preset, holdout=1))
        cfg = TrainConfig(out_dir=tmp, batch_size=batch_size, max_steps=warmup + steps, log_every=1,
                          ckpt_every=0, sample_every=-1, mixed_precision=precision, progress=False,
                          tensorboard=False, export=False, cpu=cpu)
        t0 = time.perf_counter()
        result = Trainer(task, cfg).fit()
        wall = time.perf_counter() - t0
    rates = [row["img_per_s"] for row in result.history[warmup:]]
    timed = sum(batch_size / r for r in rates)
    return {"precision": precision, "img_per_s_median": statistics.median(rates),
            "img_per_s_mean": batch_size * len(rates) / timed, "timed_steps": len(rates),
            "final_loss": result.history[-1]["loss/total"], "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="pada64")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=30, help="timed steps per precision")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    p.add_argument("--precision", default="no,bf16", help="comma list of no, bf16, fp16")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = leave as is)")
    p.add_argument("--cpu", action="store_true")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    runs = [measure(a.preset, a.batch_size, a.steps, a.warmup, prec, a.cpu)
            for prec in a.precision.split(",")]
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() and not a.cpu else "cpu"
    report = {"benchmark": "diffae_train_throughput", "preset": a.preset, "batch_size": a.batch_size,
              "device": dev, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "load_avg_1min": os.getloadavg()[0], "runs": runs}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
