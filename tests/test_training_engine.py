"""Generic trainer: exact resume, data order, atomic checkpoints, EMA, logs, config overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from pada.errors import CheckpointError, PadaError
from pada.training import checkpointing as ckpt
from pada.training.ema import EMA, ema_decay_at
from pada.training.engine import (
    StepBatchSampler,
    TrainConfig,
    Trainer,
    TrainTask,
    apply_overrides,
    epoch_permutation,
)


# --- a tiny regression task (also used by tests/test_distributed_training.py) ---
class ToyData(Dataset):
    """``n`` fixed (x, y) pairs with y = A x + b, drawn from a seeded generator."""

    def __init__(self, n: int = 20, dim: int = 6, seed: int = 123):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        a = torch.randn(dim, 3, generator=g)
        self.y = self.x @ a + 0.5

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i], "index": torch.tensor(i)}


class ToyTask(TrainTask):
    """MLP regression; with ``noise > 0`` the loss adds input noise from the generator (tests RNG resume)."""

    name = "toy"

    def __init__(self, noise: float = 0.1, n: int = 20):
        self.noise, self.n = noise, n
        self.seen: list[int] = []

    def build(self) -> None:
        self.net = nn.Sequential(nn.Linear(6, 16), nn.SiLU(), nn.Linear(16, 3))

    def trainable_modules(self):
        return {"net": self.net}

    def dataset(self):
        return ToyData(self.n)

    def loss(self, batch, generator):
        x = batch["x"]
        if self.noise > 0:
            x = x + self.noise * torch.randn(x.shape, generator=generator, device=generator.device)
        self.seen.extend(batch["index"].tolist())
        err = (self.net(x) - batch["y"]).pow(2)
        return {"total": err.mean(), "mse0": err[:, 0].mean()}

    def config_dict(self):
        return {"noise": self.noise, "n": self.n}



def _cfg(out: Path, **kw) -> TrainConfig:
    base = dict(out_dir=str(out), batch_size=4, max_steps=6, lr=3e-2, ema_decay=0.9, log_every=1,
                ckpt_every=0, keep_last=0, progress=False, seed=7)
    base.update(kw)
    return TrainConfig(**base)


def _state(result):
    return {**{f"m.{k}": v for k, v in result.modules.state_dict().items()},
            **{f"e.{k}": v for k, v in result.ema.state_dict().items()}}


def test_resume_is_exact(tmp_path):
    # 20 items / batch 4 = 5 steps per epoch: the split at step 7 is mid-epoch 1.
    straight = Trainer(ToyTask(), _cfg(tmp_path / "a", max_steps=12)).fit()
    first = Trainer(ToyTask(), _cfg(tmp_path / "b", max_steps=7)).fit()
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:  # as if it had gone on, then crashed mid-line
        f.write('{"step": 8, "loss/total": 1.0}\n{"step": 9, "los')
    task = ToyTask()
    resumed = Trainer(task, _cfg(tmp_path / "b", max_steps=12, resume="auto")).fit()
    assert resumed.step == straight.step == 12
    a, b = _state(straight), _state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the resumed run saw exactly steps 7..11 of the data order
    perm1 = epoch_permutation(20, 7, 1).tolist()
    perm2 = epoch_permutation(20, 7, 2).tolist()
    assert task.seen == perm1[8:20] + perm2[:8]
    # optimizer states match too
    sa = torch.load(straight.last_checkpoint, weights_only=True)["optimizer"]["state"]
    sb = torch.load(resumed.last_checkpoint, weights_only=True)["optimizer"]["state"]
    for i in sa:
        for key in sa[i]:
            assert torch.equal(sa[i][key], sb[i][key])
    assert first.step == 7
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))  # one row per step, none repeated
    # the loss actually moved: training does something
    hist = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert hist[-1]["loss/total"] < 0.75 * hist[0]["loss/total"]


def test_resume_rejects_other_task_config(tmp_path):
    Trainer(ToyTask(), _cfg(tmp_path, max_steps=2)).fit()
    with pytest.raises(CheckpointError, match="task config differs"):
        Trainer(ToyTask(noise=0.5), _cfg(tmp_path, max_steps=4, resume="auto")).fit()


def test_sampler_order_shards_and_skip():
    n, g = 22, 8  # 2 steps per epoch, 6 items dropped per epoch
    one = list(StepBatchSampler(n, g, world=1, rank=0, grad_accum=1, seed=3, start_step=0, total_steps=5))
    r0 = list(StepBatchSampler(n, g, world=2, rank=0, grad_accum=1, seed=3, start_step=0, total_steps=5))
    r1 = list(StepBatchSampler(n, g, world=2, rank=1, grad_accum=1, seed=3, start_step=0, total_steps=5))
    acc = list(StepBatchSampler(n, g, world=1, rank=0, grad_accum=2, seed=3, start_step=0, total_steps=5))
    for s in range(5):
        assert r0[s] + r1[s] == one[s]
        assert acc[2 * s] + acc[2 * s + 1] == one[s]
    assert len(set(one[0] + one[1])) == 16  # no repeats inside an epoch
    assert one[0] + one[1] != one[2] + one[3]  # a new permutation per epoch
    tail = list(StepBatchSampler(n, g, world=1, rank=0, grad_accum=1, seed=3, start_step=3, total_steps=5))
    assert tail == one[3:]
    with pytest.raises(PadaError, match="not divisible"):
        StepBatchSampler(n, 6, world=4, rank=0, grad_accum=1, seed=0, start_step=0, total_steps=1)
    with pytest.raises(PadaError, match="fewer than one global batch"):
        StepBatchSampler(5, 8, world=1, rank=0, grad_accum=1, seed=0, start_step=0, total_steps=1)


def test_grad_accum_matches_full_batch(tmp_path):
    full = Trainer(ToyTask(noise=0.0), _cfg(tmp_path / "f", max_steps=4)).fit()
    accum = Trainer(ToyTask(noise=0.0), _cfg(tmp_path / "g", max_steps=4, grad_accum=2)).fit()
    for (k, a), b in zip(full.modules.state_dict().items(), accum.modules.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)


def test_atomic_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    d = tmp_path / "checkpoints"
    ckpt.save_checkpoint({"step": 1, "model": {"w": torch.ones(3)}}, d)
    real_save = torch.save

    def crashing_save(obj, f, *a, **k):
        real_save({"partial": torch.zeros(1000)}, f)  # some bytes hit the disk, then the "crash"
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="simulated"):
        ckpt.save_checkpoint({"step": 2, "model": {"w": torch.zeros(3)}}, d)
    monkeypatch.setattr(torch, "save", real_save)
    assert [s for s, _ in ckpt.find_checkpoints(d)] == [1]
    assert not list(d.glob("*.tmp")) and not list(d.glob(".*.tmp"))
    state = ckpt.load_checkpoint(d / "step_00000001.pt")
    assert torch.equal(state["model"]["w"], torch.ones(3))
    assert ckpt.resolve_resume("auto", d) == d / "step_00000001.pt"
    # keep_last prunes older files
    for s in (2, 3, 4):
        ckpt.save_checkpoint({"step": s}, d, keep_last=2)
    assert [s for s, _ in ckpt.find_checkpoints(d)] == [3, 4]


def test_bad_checkpoint_is_one_line_error(tmp_path):
    bad = tmp_path / "step_00000005.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        ckpt.load_checkpoint(bad)
    torch.save({"step": 1}, bad)
    with pytest.raises(CheckpointError, match="not a pada training checkpoint"):
        ckpt.load_checkpoint(bad)


def test_ema_update_rule():
    torch.manual_seed(0)
    online = {"lin": torch.nn.Linear(4, 2)}
    ema = EMA(online)
    before = {k: v.clone() for k, v in ema.modules["lin"].state_dict().items()}
    with torch.no_grad():
        for p in online["lin"].parameters():
            p.add_(1.0)
    ema.update(online, 0.75)
    for k, v in online["lin"].state_dict().items():
        torch.testing.assert_close(ema.modules["lin"].state_dict()[k], 0.75 * before[k] + 0.25 * v)
    ema.update(online, 0.0)
    for k, v in online["lin"].state_dict().items():
        assert torch.equal(ema.modules["lin"].state_dict()[k], v)
    assert not any(p.requires_grad for p in ema.modules.parameters())
    assert ema_decay_at(0, 0.9999, warmup=False) == 0.9999
    assert ema_decay_at(0, 0.9999, warmup=True) == pytest.approx(0.1)
    assert ema_decay_at(10**6, 0.9999, warmup=True) == 0.9999


def test_engine_ema_follows_decay(tmp_path):
    # decay 1.0: the EMA never moves from the initial weights; decay 0: it equals the final weights.
    frozen = Trainer(ToyTask(), _cfg(tmp_path / "a", max_steps=3, ema_decay=1.0)).fit()
    init = ToyTask()
    torch.manual_seed(7)
    init.build()
    for k, v in init.net.state_dict().items():
        assert torch.equal(frozen.ema["net"].state_dict()[k], v)
    copy = Trainer(ToyTask(), _cfg(tmp_path / "b", max_steps=3, ema_decay=0.0)).fit()
    for k, v in copy.modules["net"].state_dict().items():
        assert torch.equal(copy.ema["net"].state_dict()[k], v)


def test_logs_and_outputs(tmp_path):
    Trainer(ToyTask(), _cfg(tmp_path, max_steps=4, log_every=2, ckpt_every=2, keep_last=1)).fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert {"loss/total", "loss/mse0", "lr", "grad_norm", "img_per_s"} <= rows[0].keys()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert [s for s, _ in ckpt.find_checkpoints(tmp_path / "checkpoints")] == [4]
    cfg = json.loads((tmp_path / "train_config.json").read_text())
    assert cfg["train"]["batch_size"] == 4 and cfg["task"]["name"] == "toy"
    state = ckpt.load_checkpoint(tmp_path / "checkpoints" / "step_00000004.pt")
    assert state["config"]["lr"] == pytest.approx(3e-2) and state["task"]["config"] == {"noise": 0.1, "n": 20}


def test_bf16_autocast_runs(tmp_path):
    r = Trainer(ToyTask(), _cfg(tmp_path, max_steps=2, mixed_precision="bf16")).fit()
    assert all(p.dtype == torch.float32 for p in r.modules.parameters())
    assert torch.isfinite(torch.tensor(r.history[-1]["loss/total"]))


def test_overrides_and_errors():
    cfg = apply_overrides(TrainConfig(), ["lr=3e-4", "ema_warmup=true", "betas=0.5,0.9", "grad-clip=0"])
    assert cfg.lr == 3e-4 and cfg.ema_warmup is True and cfg.betas == (0.5, 0.9) and cfg.grad_clip == 0.0
    with pytest.raises(PadaError, match="unknown option"):
        apply_overrides(TrainConfig(), ["learning_rate=1"])
    with pytest.raises(PadaError, match="expected a value of type int"):
        apply_overrides(TrainConfig(), ["batch_size=big"])
    with pytest.raises(PadaError, match="mixed_precision"):
        TrainConfig(mixed_precision="fp8")
    with pytest.raises(PadaError, match="--steps"):
        Trainer(ToyTask(), TrainConfig(progress=False)).fit()


def test_param_groups_lr_scale(tmp_path):
    class TwoSpeed(ToyTask):
        def param_groups(self):
            return [{"params": list(self.net[0].parameters()), "lr_scale": 0.0},
                    {"params": list(self.net[2].parameters())}]

    task = TwoSpeed()
    r = Trainer(task, _cfg(tmp_path, max_steps=3)).fit()
    init = ToyTask()
    torch.manual_seed(7)
    init.build()
    assert torch.equal(r.modules["net"][0].weight, init.net[0].weight)  # lr 0: frozen in place
    assert not torch.equal(r.modules["net"][2].weight, init.net[2].weight)


@pytest.mark.slow
def test_loader_workers_do_not_change_results(tmp_path):
    a = Trainer(ToyTask(), _cfg(tmp_path / "a", max_steps=3)).fit()
    b = Trainer(ToyTask(), _cfg(tmp_path / "b", max_steps=3, num_workers=1)).fit()
    for k, v in a.modules.state_dict().items():
        assert torch.equal(v, b.modules.state_dict()[k]), k


class _EpochRecorder(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n, self.epoch = n, -1

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return (self.epoch, i)


def test_epoch_reaches_datasets_with_set_epoch():
    from pada.training.engine import EpochIndexed

    n, g = 22, 8  # 2 steps per epoch
    steps = list(StepBatchSampler(n, g, world=1, rank=0, grad_accum=1, seed=3, start_step=0, total_steps=5))
    view = EpochIndexed(_EpochRecorder(n))
    seen = [{view[key][0] for key in batch} for batch in steps]
    assert seen == [{0}, {0}, {1}, {1}, {2}]
    resumed = list(StepBatchSampler(n, g, world=1, rank=0, grad_accum=1, seed=3, start_step=3, total_steps=5))
    assert [{EpochIndexed(_EpochRecorder(n))[k][0] for k in b} for b in resumed] == [{1}, {2}]
