"""Two processes (gloo on the CPU) against one process with the same global batch.

This file is also the worker script the tests launch with ``torch.distributed.run``: each process trains
the toy task, then a tiny DiffAE, and saves its replica's weights and logged history to
OUT/{toy,diffae}/rank{R}.pt.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pada.diffae.train import DiffAETask, DiffAETaskConfig  # noqa: E402
from pada.training import checkpointing as ckpt  # noqa: E402
from pada.training.engine import TrainConfig, Trainer  # noqa: E402
from test_training_engine import ToyTask  # noqa: E402

WORKER = Path(__file__).resolve()  # this file is also the worker script (see the end)


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


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> Path:
    """Launch 2 processes once (toy task, then tiny DiffAE); the tests below read their outputs."""
    out = tmp_path_factory.mktemp("two")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(WORKER), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def _replicas(out: Path) -> list[dict]:
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def _one_process(kind: str, out: Path) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = make(kind, str(out)).fit()
    finally:
        torch.set_num_threads(threads)
    return {"modules": r.modules.state_dict(), "ema": r.ema.state_dict(), "history": r.history}


@pytest.mark.slow
def test_two_processes_equal_one_process_exactly_on_deterministic_task(two_process_run, tmp_path):
    """No randomness in the loss: 2 x 4 samples with averaged gradients == 1 x 8 samples."""
    r0, r1 = _replicas(two_process_run / "toy")
    one = _one_process("toy", tmp_path / "one")
    for part in ("modules", "ema"):
        for k in one[part]:
            assert torch.equal(r0[part][k], r1[part][k]), f"replicas differ in {part}.{k}"
            torch.testing.assert_close(r0[part][k], one[part][k], rtol=0, atol=1e-6, msg=f"{part}.{k}")
    assert len(r0["history"]) == 5 and r1["history"] == []  # only the main process logs
    for a, b in zip(r0["history"], one["history"]):
        assert a["loss/total"] == pytest.approx(b["loss/total"], rel=1e-5)
    assert r0["history"][-1]["loss/total"] < r0["history"][0]["loss/total"]


@pytest.mark.slow
def test_two_process_diffae_replicas_identical_and_loss_close(two_process_run, tmp_path):
    two = two_process_run / "diffae"
    r0, r1 = _replicas(two)
    for part in ("modules", "ema"):
        for k in r0[part]:
            assert torch.equal(r0[part][k], r1[part][k]), f"replicas differ in {part}.{k}"
    state = ckpt.load_checkpoint(two / "checkpoints" / "step_00000003.pt")
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["generator"], state["rng"][1]["generator"])  # own noise streams
    assert (two / "diffae_ema.safetensors").is_file()
    one = _one_process("diffae", tmp_path / "one")
    # Same data and global batch; the noise/timestep draws differ (one generator per process), so the
    # ε-MSE agrees only statistically. At initialisation it is ~1 for any draw.
    for a, b in zip(r0["history"], one["history"]):
        assert a["loss/total"] == pytest.approx(b["loss/total"], rel=0.1)


# Worker: python -m torch.distributed.run --standalone --nproc_per_node 2 THIS_FILE OUT
if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    rank = int(os.environ.get("RANK", "0"))
    for kind in ("toy", "diffae"):  # one launch for both runs: process start-up dominates the time
        result = make(kind, str(out / kind)).fit()
        torch.save({"modules": result.modules.state_dict(), "ema": result.ema.state_dict(),
                    "history": result.history, "step": result.step}, out / kind / f"rank{rank}.pt")
