"""Worker for tests/test_distributed_training.py, launched with ``torch.distributed.run``.

Usage: python -m torch.distributed.run --nproc_per_node 2 tests/_dist_worker.py OUT
Each process trains the toy task, then the tiny DiffAE, and saves its replica's weights and the logged
history to OUT/{toy,diffae}/rank{R}.pt.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _train_toy import ToyTask  # noqa: E402
from pada.training.diffae_task import DiffAETask, DiffAETaskConfig  # noqa: E402
from pada.training.engine import TrainConfig, Trainer  # noqa: E402


def make(kind: str, out: str) -> Trainer:
    if kind == "toy":
        cfg = TrainConfig(out_dir=out, batch_size=8, max_steps=5, lr=3e-2, ema_decay=0.5, log_every=1,
                          ckpt_every=0, progress=False, seed=3)
        return Trainer(ToyTask(noise=0.0), cfg)
    task = DiffAETask(DiffAETaskConfig(data="synthetic:blobs:32", preset="tiny32", holdout=2, sample_steps=2,
                                       encode_steps=2))
    cfg = TrainConfig(out_dir=out, batch_size=8, max_steps=3, lr=1e-3, ema_decay=0.9, log_every=1,
                      ckpt_every=2, progress=False, seed=3)
    return Trainer(task, cfg)


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    rank = int(os.environ.get("RANK", "0"))
    for kind in ("toy", "diffae"):  # one launch for both runs: process start-up dominates the time
        result = make(kind, str(out / kind)).fit()
        torch.save({"modules": result.modules.state_dict(), "ema": result.ema.state_dict(),
                    "history": result.history, "step": result.step}, out / kind / f"rank{rank}.pt")
