"""One generic training loop on Hugging Face Accelerate, shared by every pada trainer.

A trainer is a :class:`TrainTask` (what to train: modules, data, loss, sample grids, export) plus a
:class:`TrainConfig` (how: batch, optimizer, EMA, precision, schedule of logs/samples/checkpoints).
:class:`Trainer` drives any task::

    result = Trainer(MyTask(...), TrainConfig(out_dir="runs/x", max_steps=1000)).fit()

What the engine guarantees
--------------------------
* **Same code on 1 CPU, 1 GPU, N GPUs, N nodes**: Accelerate wraps the trainable modules (DDP when
  several processes), runs autocast for ``mixed_precision`` ``bf16``/``fp16`` and scales fp16 losses.
  ``batch_size`` is the *global* batch: each of the ``W`` processes gets ``batch_size / (W * grad_accum)``
  samples per micro-step.
* **Data order depends only on (seed, step)**: epoch ``e`` visits the dataset in the permutation drawn
  from ``seed`` and ``e`` (``drop_last``); optimizer step ``s`` uses global batch ``s mod steps_per_epoch``
  of epoch ``s // steps_per_epoch``; process ``r`` takes its contiguous slice. Resuming at step ``s``
  starts exactly at that batch, mid-epoch included, without iterating the skipped batches.
* **Exact resume**: a checkpoint holds the trainable weights, the EMA, the optimizer state, the step,
  the config and, per process, the task generator and the torch/numpy/python global RNG states. Training
  ``N`` steps straight and ``N/2 + resume + N/2`` gives bitwise identical weights on the same hardware
  and world size (tested on CPU).
* **Atomic checkpoints**: written to a temporary file and renamed (:mod:`pada.training.checkpointing`).
* **EMA** updated only after real optimizer steps (not on accumulation micro-steps or fp16-skipped steps);
  gradient clipping by global norm before each optimizer step.
* **Logs**: every ``log_every`` steps each loss term of the task's loss dict (averaged over the window
  and over processes), the learning rate, the gradient norm and the throughput go to TensorBoard
  (``OUT/tb``), to ``OUT/metrics.jsonl`` and to the tqdm bar.

Randomness inside the loss (noise, timesteps, flips) must come from the ``generator`` argument of
:meth:`TrainTask.loss`: one ``torch.Generator`` per process on the training device, seeded from
``(seed, process index)`` and saved in checkpoints.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from pada import validation
from pada.errors import CheckpointError, PadaError
from pada.frozen import freeze
from pada.training import checkpointing as ckpt
from pada.training.ema import EMA, ema_decay_at
from pada.validation import LIMITS, check_number, split_key_value

MIXED_PRECISION = ("no", "bf16", "fp16")


# ------------------------------------------------------------------------------------------------ config
_RANGES: dict[str, dict[str, Any]] = {
    "batch_size": {"lo": 1, "hi": 1 << 20, "integer": True},
    "grad_accum": {"lo": 1, "hi": 4096, "integer": True},
    "lr": {"lo": 0.0, "hi": 10.0}, "adam_eps": {"lo": 0.0, "hi": 1.0, "lo_open": True},
    "weight_decay": {"lo": 0.0, "hi": 10.0},
    "warmup_steps": {"lo": 0, "hi": LIMITS["train_steps"], "integer": True},
    "grad_clip": {"lo": 0.0, "hi": 1e6}, "ema_decay": {"lo": 0.0, "hi": 1.0},
    "max_steps": {"lo": 0, "hi": LIMITS["train_steps"], "integer": True},
    "epochs": {"lo": 0, "hi": LIMITS["train_steps"], "integer": True},
    "seed": {"lo": 0, "hi": LIMITS["seed"], "integer": True},
    "num_workers": {"lo": 0, "hi": LIMITS["workers"], "integer": True},
    "log_every": {"lo": 0, "hi": LIMITS["train_steps"], "integer": True},
    "sample_every": {"lo": -1, "hi": LIMITS["train_steps"], "integer": True},
    "ckpt_every": {"lo": 0, "hi": LIMITS["train_steps"], "integer": True},
    "keep_last": {"lo": 0, "hi": 1_000_000, "integer": True},
}


@dataclass
class TrainConfig:
    """How to train (the task decides what). Every field can be set with ``--set key=value``."""

    out_dir: str = "runs/train"
    batch_size: int = 64                  # global batch (all processes and accumulation steps together)
    grad_accum: int = 1                   # micro-steps per optimizer step
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0             # AdamW; 0 = plain Adam (official DiffAE)
    warmup_steps: int = 0                 # linear LR warm-up from 0, then constant
    grad_clip: float = 1.0                # max global grad norm; 0 = no clipping
    ema_decay: float = 0.9999
    ema_warmup: bool = False              # decay = min(ema_decay, (1+s)/(10+s)); off in official DiffAE
    max_steps: int = 0                    # optimizer steps; 0 = use ``epochs``
    epochs: int = 0
    mixed_precision: str = "no"           # "no" | "bf16" | "fp16"
    seed: int = 0
    num_workers: int = 0
    log_every: int = 50
    sample_every: int = 0                 # 0 = only at the end, -1 = never
    ckpt_every: int = 1000                # 0 = only at the end
    keep_last: int = 3                    # checkpoints kept (0 = all)
    resume: str = ""                      # "" | "auto" (newest in out_dir, if any) | path to a step_*.pt
    cpu: bool = False                     # force CPU even when a GPU is present
    progress: bool = True                 # tqdm bar on the main process
    tensorboard: bool = True
    find_unused_parameters: bool = False  # DDP option for tasks whose loss skips some trainable params
    export: bool = True                   # call task.export(...) at the end

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if self.mixed_precision not in MIXED_PRECISION:
            raise PadaError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        for name in ("batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise PadaError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay <= 1.0:
            raise PadaError(f"ema_decay must be in [0, 1], got {self.ema_decay}")
        for name, rng in _RANGES.items():  # finiteness and sizes (docs/reliability.md)
            check_number(name, getattr(self, name), **rng)
        if len(self.betas) != 2:
            raise PadaError(f"betas: expected two numbers, got {len(self.betas)}")
        for b in self.betas:
            check_number("betas", b, lo=0.0, hi=1.0, hi_open=True)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise PadaError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**d)


def _parse_value(text: str, current: Any, key: str) -> Any:
    t = text.strip()
    try:
        if isinstance(current, bool):
            if t.lower() in ("1", "true", "yes", "on"):
                return True
            if t.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(t)
        if isinstance(current, int):
            return int(t)
        if isinstance(current, float):
            return float(t)
        if isinstance(current, tuple):
            return tuple(float(v) for v in t.strip("()[]").split(","))
        return t
    except ValueError:
        raise PadaError(f"--set {key}={text}: expected a value of type {type(current).__name__}") from None


def apply_overrides(config: Any, items: Sequence[str]) -> Any:
    """Apply ``["key=value", ...]`` to a config dataclass (returns a new one; unknown keys are errors)."""
    names = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for item in items:
        key, value = split_key_value(item, "--set")
        key = key.replace("-", "_")
        if key not in names:
            raise PadaError(f"--set {key}: unknown option; known: {', '.join(sorted(names))}")
        changes[key] = _parse_value(value, getattr(config, key), key)
    return dataclasses.replace(config, **changes)


def add_train_args(parser: argparse.ArgumentParser, defaults: TrainConfig | None = None) -> None:
    """Add the common trainer flags (``--out --steps --batch-size --bf16 --resume --set ...``) to a parser."""
    d = defaults or TrainConfig()
    g = parser.add_argument_group("training (shared by every pada trainer)")
    g.add_argument("--out", default=d.out_dir, help="output folder (checkpoints, tb/, samples/, export)")
    g.add_argument("--steps", type=validation.int_option(1, LIMITS["train_steps"]), default=None,
                   help=f"optimizer steps (default {d.max_steps or 'from --epochs'})")
    g.add_argument("--epochs", type=validation.int_option(1, LIMITS["train_steps"]), default=None,
                   help="epochs, used when --steps is not given")
    g.add_argument("--batch-size", type=validation.int_option(1, 1 << 20), default=None,
                   help=f"global batch size (default {d.batch_size})")
    g.add_argument("--grad-accum", type=validation.int_option(1, 4096), default=None,
                   help="gradient accumulation micro-steps")
    g.add_argument("--lr", type=validation.float_option(0.0, 10.0), default=None,
                   help=f"learning rate (default {d.lr})")
    g.add_argument("--ema-decay", type=validation.float_option(0.0, 1.0), default=None,
                   help=f"EMA decay (default {d.ema_decay})")
    g.add_argument("--seed", type=validation.int_option(0, LIMITS["seed"]), default=None,
                   help=f"seed of data order, init and noise (default {d.seed})")
    prec = g.add_mutually_exclusive_group()
    prec.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    prec.add_argument("--fp16", action="store_true", help="float16 autocast with loss scaling (GPU only)")
    g.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="resume from the newest checkpoint in --out (no value) or from a given step_*.pt")
    g.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    g.add_argument("--num-workers", type=validation.int_option(0, LIMITS["workers"]), default=None,
                   help="data-loader worker processes")
    g.add_argument("--log-every", type=validation.int_option(1, LIMITS["train_steps"]), default=None)
    g.add_argument("--sample-every", type=validation.int_option(-1, LIMITS["train_steps"]), default=None,
                   help="steps between sample grids (0 = at the end, -1 = never)")
    g.add_argument("--ckpt-every", type=validation.int_option(0, LIMITS["train_steps"]), default=None,
                   help="steps between checkpoints (0 = at the end)")
    g.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="set any TrainConfig field, e.g. --set warmup_steps=500 (repeatable)")


def config_from_args(args: argparse.Namespace, defaults: TrainConfig | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from :func:`add_train_args` flags (flags override ``--set``)."""
    cfg = apply_overrides(defaults or TrainConfig(), args.overrides)
    flag_map = {"steps": "max_steps", "epochs": "epochs", "batch_size": "batch_size",
                "grad_accum": "grad_accum",
                "lr": "lr", "ema_decay": "ema_decay", "seed": "seed", "num_workers": "num_workers",
                "log_every": "log_every", "sample_every": "sample_every", "ckpt_every": "ckpt_every",
                "resume": "resume"}
    changes: dict[str, Any] = {"out_dir": args.out}
    for flag, name in flag_map.items():
        v = getattr(args, flag, None)
        if v is not None:
            changes[name] = v
    if args.bf16:
        changes["mixed_precision"] = "bf16"
    if args.fp16:
        changes["mixed_precision"] = "fp16"
    if args.cpu:
        changes["cpu"] = True
    if args.no_progress:
        changes["progress"] = False
    return dataclasses.replace(cfg, **changes)


# -------------------------------------------------------------------------------------------------- task
class TrainTask:
    """What to train. Subclass and implement :meth:`build`, :meth:`trainable_modules`, :meth:`dataset`,
    :meth:`loss`; the rest is optional.

    Call order: ``build()`` (the engine has seeded the global torch RNG with ``config.seed`` on every
    process, so default ``nn.Module`` initialisation is identical across processes), then
    ``dataset()``, then the modules are moved to the device and wrapped; then ``loss`` is called once
    per micro-batch inside autocast. ``loss`` must reach the trainable modules through the same module
    objects returned by ``trainable_modules()`` (the engine wraps those objects; it does not copy them).
    """

    #: short name stored in checkpoints; resuming a checkpoint of another task is refused
    name: str = "task"

    def build(self) -> None:
        """Create the modules (and load any frozen weights)."""

    def trainable_modules(self) -> dict[str, nn.Module]:
        """``{name: module}`` optimised with AdamW and tracked by the EMA."""
        raise NotImplementedError

    def param_groups(self) -> list[dict[str, Any]] | None:
        """Optional AdamW parameter groups (torch format). A group may carry ``lr_scale`` (the group's
        learning rate is ``lr_scale * lr`` at every step) or its own ``weight_decay``. None = one group."""
        return None

    def frozen_modules(self) -> dict[str, nn.Module]:
        """``{name: module}`` used by the loss but not trained (moved to the device, eval, no grad)."""
        return {}

    def dataset(self) -> Dataset:
        """Map-style dataset; items are collated with the default collate function."""
        raise NotImplementedError

    def loss(self, batch: Any, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Loss terms of one micro-batch on the device: ``{"total": scalar, "<term>": scalar, ...}``.

        ``"total"`` is back-propagated; every entry is logged as ``loss/<key>``.
        """
        raise NotImplementedError

    def sample_grids(self, step: int, out_dir: Path, modules: nn.ModuleDict) -> list[Path]:
        """Write PNG grids for ``step`` under ``out_dir`` using ``modules`` (the EMA copies). Main process."""
        return []

    def config_dict(self) -> dict[str, Any]:
        """The task's own configuration, stored in checkpoints (must match on resume)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Extra task state to checkpoint (weights_only-loadable values)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def export(self, modules: nn.ModuleDict, out_dir: Path, info: dict[str, Any]) -> list[Path]:
        """Write the final inference weights from ``modules`` (EMA copies). Main process.

        ``info`` holds ``steps``, ``images_seen``, ``final_losses`` and ``train_config``.
        """
        return []


class _TaskModule(nn.Module):
    """The trainable modules in one ``nn.Module`` whose ``forward`` is the task's loss.

    Going through ``forward`` lets DDP hook gradient synchronisation and Accelerate apply autocast.
    """

    def __init__(self, task: TrainTask, modules: dict[str, nn.Module]):
        super().__init__()
        self.trainable = nn.ModuleDict(modules)
        self._task = [task]  # a list so that nn.Module does not register the task as an attribute

    def forward(self, batch: Any, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self._task[0].loss(batch, generator)


# -------------------------------------------------------------------------------------------------- data
def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The dataset order of ``epoch``: a permutation of ``range(n)`` drawn from ``(seed, epoch)``."""
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63))
    return torch.randperm(n, generator=g)


class StepBatchSampler:
    """Batch sampler over optimizer steps ``[start_step, total_steps)`` for one process.

    Yields ``grad_accum`` micro-batches (lists of dataset indices) per step. Step ``s`` covers global
    batch ``j = s mod S`` (``S = n // global_batch``) of epoch ``e = s // S``; micro-batch ``m`` of
    process ``r`` is shard ``k = m * world + r`` of that global batch. Nothing is iterated to skip.
    """

    def __init__(self, n: int, global_batch: int, world: int, rank: int, grad_accum: int, seed: int,
                 start_step: int, total_steps: int):
        shards = world * grad_accum
        if global_batch % shards:
            raise PadaError(f"batch_size {global_batch} is not divisible by "
                            f"processes x grad_accum = {shards}")
        if n < global_batch:
            raise PadaError(f"dataset has {n} items, fewer than one global batch of {global_batch}")
        self.n, self.global_batch, self.world, self.rank = n, global_batch, world, rank
        self.grad_accum, self.seed = grad_accum, seed
        self.micro = global_batch // shards
        self.steps_per_epoch = n // global_batch
        self.start_step, self.total_steps = start_step, total_steps

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step) * self.grad_accum

    def __iter__(self) -> Iterator[list[int]]:
        perm, perm_epoch = None, -1
        for step in range(self.start_step, self.total_steps):
            epoch, j = divmod(step, self.steps_per_epoch)
            if epoch != perm_epoch:
                perm, perm_epoch = epoch_permutation(self.n, self.seed, epoch), epoch
            batch = perm[j * self.global_batch:(j + 1) * self.global_batch]
            for m in range(self.grad_accum):
                k = m * self.world + self.rank
                yield [(epoch, i) for i in batch[k * self.micro:(k + 1) * self.micro].tolist()]


class EpochIndexed(Dataset):
    """Dataset view indexed by ``(epoch, index)`` pairs, as :class:`StepBatchSampler` yields them.

    Datasets whose per-item randomness depends on the epoch (``set_epoch(e)``, e.g. the PADA pairing)
    get the right epoch for every item, also inside loader worker processes, which hold their own copy
    of the dataset and never see a ``set_epoch`` call made in the main process.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self._set_epoch = getattr(dataset, "set_epoch", None)
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if self._set_epoch is not None and epoch != self._epoch:
            self._set_epoch(epoch)
            self._epoch = epoch
        return self.dataset[index]


# ------------------------------------------------------------------------------------------------ engine
@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns (on every process)."""

    step: int
    modules: nn.ModuleDict                 # trainable modules (unwrapped, on the training device)
    ema: nn.ModuleDict                     # EMA copies
    history: list[dict[str, float]] = field(default_factory=list)  # logged rows (main process)
    exported: list[Path] = field(default_factory=list)
    last_checkpoint: Path | None = None


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows with ``step`` beyond ``step`` (a run that went on after its last checkpoint, then died)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue  # a line cut by the crash
    path.write_text("".join(k + "\n" for k in keep))


def _use_cpu(cfg: TrainConfig) -> bool:
    """CPU when asked, or when launched as several processes without CUDA (Accelerate only sets up
    multi-process CPU training, gloo, when told ``cpu=True``)."""
    multi = int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(os.environ.get("LOCAL_RANK", "-1")) != -1
    return cfg.cpu or (multi and not torch.cuda.is_available())


def _reset_accelerate_state() -> None:
    """Let several ``fit`` calls in one process use different precisions (tests, notebooks).

    Accelerate keeps ``mixed_precision`` in a process-wide singleton and refuses to change it; the
    distributed set-up (``PartialState``) is kept, only the per-run state is cleared.
    """
    from accelerate.state import AcceleratorState, GradientState

    try:  # private API of accelerate 1.x; without it only a change of precision in one process fails
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
    except AttributeError:
        pass


def _generator_seed(seed: int, rank: int) -> int:
    return (int(seed) * 7919 + 104_729 * (int(rank) + 1)) % (2**63)


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr


@dataclass
class _Run:
    """What one :meth:`Trainer.fit` call holds while it runs; its steps read and update it."""

    acc: Any  # the accelerate.Accelerator
    cfg: TrainConfig
    out_dir: Path
    world: int
    rank: int
    device: torch.device
    main: bool
    trainable: dict[str, nn.Module] = field(default_factory=dict)
    n: int = 0  # dataset size
    total_steps: int = 0
    step: int = 0
    module: Any = None  # _TaskModule before accelerate.prepare
    model: Any = None  # the prepared (possibly DDP-wrapped) module
    unwrapped: Any = None  # the prepared module unwrapped
    ema: Any = None
    optimizer: Any = None
    params: list[nn.Parameter] = field(default_factory=list)
    generator: Any = None  # the task's torch.Generator on the training device
    grad_norm: Any = None
    writer: Any = None
    bar: Any = None
    history: list[dict[str, float]] = field(default_factory=list)
    window: dict[str, Any] = field(default_factory=dict)  # loss sums since the last log
    window_steps: int = 0
    t_window: float = field(default_factory=time.perf_counter)
    last_losses: dict[str, float] = field(default_factory=dict)
    last_ckpt: Path | None = None

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "checkpoints"


class Trainer:
    """Runs a :class:`TrainTask` under a :class:`TrainConfig` (see the module docstring)."""

    def __init__(self, task: TrainTask, config: TrainConfig):
        self.task = task
        self.config = config

    # -- checkpoint helpers ------------------------------------------------------------------------
    def _task_meta(self) -> dict[str, Any]:
        # JSON round trip: tuples become lists, so a saved config compares equal to a fresh one
        return {"name": self.task.name, "config": json.loads(json.dumps(self.task.config_dict()))}

    def _check_resume(self, state: dict[str, Any], path: Path) -> None:
        meta = state.get("task", {})
        if meta.get("name") != self.task.name:
            raise CheckpointError(f"{path}: checkpoint of task {meta.get('name')!r}, not {self.task.name!r}")
        now = self._task_meta()["config"]
        if meta.get("config") != now:
            diff = sorted(k for k in set(now) | set(meta.get("config", {}))
                          if now.get(k) != meta.get("config", {}).get(k))
            raise CheckpointError(f"{path}: the checkpoint's task config differs from this run's "
                                  f"in {', '.join(diff)}")
        old = state.get("config", {})
        for key in ("batch_size", "seed", "grad_accum"):
            if key in old and old[key] != getattr(self.config, key):
                warnings.warn(f"{path}: {key} changed from {old[key]} to {getattr(self.config, key)}; "
                              "the resumed run will not reproduce an uninterrupted one", stacklevel=2)

    # -- main loop -----------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train the task to its last step and return the result; the steps below, in this order."""
        run = self._set_up()  # Accelerator, processes, precision
        dataset = self._build_task(run)  # modules, data, length of training, per-process RNG streams
        self._build_optimizer(run)  # frozen modules, EMA, AdamW, the loss generator
        path, state = self._load_resume(run)  # weights, EMA and step of the newest intact checkpoint
        run.model, run.optimizer = run.acc.prepare(run.module, run.optimizer)
        run.unwrapped = run.acc.unwrap_model(run.model)
        if state is not None:
            self._restore_optimizer_and_rng(run, state, path)
            del state
        batches = iter(self._data_loader(run, dataset))
        self._open_logs(run)
        run.model.train()
        run.t_window = time.perf_counter()
        while run.step < run.total_steps:
            lr = self._optimizer_step(run, batches)
            if run.step % max(1, run.cfg.log_every) == 0 or run.step == run.total_steps:
                self._log_window(run, lr)
            if self._due(run.cfg.sample_every, run):
                self._write_samples(run)
            if self._due(run.cfg.ckpt_every, run):
                run.last_ckpt = self._save(run)
        return self._finish(run)

    def _set_up(self) -> _Run:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        cfg = self.config
        kwargs = [DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)]
        _reset_accelerate_state()
        try:
            acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=_use_cpu(cfg), kwargs_handlers=kwargs)
        except ValueError as exc:
            raise PadaError(f"cannot set up training with mixed_precision={cfg.mixed_precision}: "
                            f"{exc}") from None
        if cfg.mixed_precision == "fp16" and acc.device.type == "cpu":
            raise PadaError("fp16 training needs a GPU; use --bf16 on the CPU")
        return _Run(acc=acc, cfg=cfg, out_dir=Path(cfg.out_dir), world=acc.num_processes,
                    rank=acc.process_index, device=acc.device, main=acc.is_main_process)

    def _build_task(self, run: _Run) -> Dataset:
        """Identical module initialisation on every process, then per-process global RNG streams."""
        cfg = run.cfg
        torch.manual_seed(cfg.seed)
        self.task.build()
        run.trainable = self.task.trainable_modules()
        if not run.trainable:
            raise PadaError(f"task {self.task.name!r} has no trainable modules")
        dataset = self.task.dataset()
        run.n = len(dataset)  # type: ignore[arg-type]
        steps_per_epoch = run.n // cfg.batch_size if run.n >= cfg.batch_size else 0
        if cfg.max_steps > 0:
            run.total_steps = cfg.max_steps
        elif cfg.epochs > 0:
            run.total_steps = cfg.epochs * steps_per_epoch
        else:
            raise PadaError("give the length of training: --steps N (max_steps) or --epochs N")
        torch.manual_seed(cfg.seed + 1 + run.rank)
        np.random.seed((cfg.seed + 1 + run.rank) % 2**32)
        random.seed(cfg.seed + 1 + run.rank)
        return dataset

    def _build_optimizer(self, run: _Run) -> None:
        cfg = run.cfg
        for m in self.task.frozen_modules().values():
            freeze(m.to(run.device))
        run.module = _TaskModule(self.task, run.trainable).to(run.device)
        run.ema = EMA(dict(run.module.trainable.items())).to(run.device)
        run.params = [p for p in run.module.parameters() if p.requires_grad]
        groups = self.task.param_groups() or [{"params": run.params}]
        run.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps,
                                          weight_decay=cfg.weight_decay)
        run.generator = torch.Generator(device=run.device).manual_seed(_generator_seed(cfg.seed, run.rank))
        run.grad_norm = torch.zeros((), device=run.device)

    def _load_resume(self, run: _Run) -> tuple[Path | None, dict[str, Any] | None]:
        """The newest intact checkpoint (a truncated newest one is skipped with a warning), loaded into the
        trainable modules, the EMA and the task; ``(None, None)`` for a fresh run."""
        path, state = ckpt.load_resume(run.cfg.resume, run.ckpt_dir)
        if path is None:
            return None, None
        self._check_resume(state, path)
        try:
            run.module.trainable.load_state_dict(state["model"], strict=True)
            run.ema.load_state_dict(state["ema"])
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit this model ({str(exc).splitlines()[0]})") \
                from None
        run.step = int(state["step"])
        self.task.load_state_dict(state.get("task_state", {}))
        return path, state

    def _restore_optimizer_and_rng(self, run: _Run, state: dict[str, Any], path: Path | None) -> None:
        """After ``accelerate.prepare``: the optimizer state and each process's random streams."""
        run.optimizer.load_state_dict(state["optimizer"])
        rngs = state.get("rng", [])
        if len(rngs) == run.world:
            run.generator.set_state(rngs[run.rank]["generator"])
            ckpt.set_global_rng_state(rngs[run.rank]["global"])
        else:
            warnings.warn(f"{path}: saved with {len(rngs)} process(es), now {run.world}; random streams are "
                          "reseeded, the run will not reproduce an uninterrupted one", stacklevel=3)
            run.generator.manual_seed(_generator_seed(run.cfg.seed + run.step, run.rank))

    def _data_loader(self, run: _Run, dataset: Dataset) -> DataLoader:
        """Batches of this process from ``run.step`` on (:class:`StepBatchSampler`).

        The loader's own generator: without it, ``iter(loader)`` draws a worker seed from the global torch
        RNG, which would shift the dropout masks of a resumed run against an uninterrupted one. Workers are
        spawned, not forked: a fork of a process that has run OpenCV / OpenMP thread pools can deadlock
        (see pada.data).
        """
        cfg = run.cfg
        sampler = StepBatchSampler(run.n, cfg.batch_size, run.world, run.rank, cfg.grad_accum, cfg.seed,
                                   run.step, run.total_steps)
        order = torch.Generator().manual_seed(_generator_seed(cfg.seed + run.step, run.rank))
        return DataLoader(EpochIndexed(dataset), batch_sampler=sampler, num_workers=cfg.num_workers,
                          multiprocessing_context="spawn" if cfg.num_workers > 0 else None,
                          pin_memory=run.device.type == "cuda", persistent_workers=False, generator=order)

    def _open_logs(self, run: _Run) -> None:
        """Main process: ``train_config.json``, ``metrics.jsonl`` cut back to the resumed step, TensorBoard,
        the progress bar."""
        if not run.main:
            return
        cfg, out_dir = run.cfg, run.out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        _truncate_metrics(out_dir / "metrics.jsonl", run.step)  # rows logged after the resumed checkpoint
        (out_dir / "train_config.json").write_text(json.dumps(
            {"train": cfg.to_dict(), "task": self._task_meta(), "world_size": run.world}, indent=2) + "\n")
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            run.writer = SummaryWriter(log_dir=str(out_dir / "tb"), purge_step=run.step if run.step else None)
        if cfg.progress:
            from tqdm.auto import tqdm
            run.bar = tqdm(total=run.total_steps, initial=run.step, desc=f"train {self.task.name}",
                           dynamic_ncols=True)

    def _optimizer_step(self, run: _Run, batches: Iterator[Any]) -> float:
        """One optimizer step over ``grad_accum`` micro-batches (losses summed into the log window), the
        gradient clip and the EMA update. Returns the step's learning rate."""
        from accelerate.utils import send_to_device

        cfg, acc = run.cfg, run.acc
        lr = _lr_at(run.step, cfg)
        for group in run.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        for micro in range(cfg.grad_accum):
            batch = send_to_device(next(batches), run.device)
            sync = micro == cfg.grad_accum - 1
            ctx = contextlib.nullcontext() if sync else acc.no_sync(run.model)
            with ctx:
                losses = run.model(batch, run.generator)
                if "total" not in losses:
                    raise PadaError(f"task {self.task.name!r}: loss() must return a dict with key 'total'")
                acc.backward(losses["total"] / cfg.grad_accum)
            for k, v in losses.items():  # summed on the device: no host sync per step
                run.window[k] = run.window.get(k, 0.0) + v.detach().double() / cfg.grad_accum
        if cfg.grad_clip > 0:
            run.grad_norm = acc.clip_grad_norm_(run.params, cfg.grad_clip)
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        if not acc.optimizer_step_was_skipped:
            run.ema.update(run.unwrapped.trainable, ema_decay_at(run.step, cfg.ema_decay, cfg.ema_warmup))
        run.step += 1
        run.window_steps += 1
        if run.bar is not None:
            run.bar.update(1)
        return lr

    def _log_window(self, run: _Run, lr: float) -> None:
        """Losses averaged over the steps since the last log and over processes -> history,
        ``metrics.jsonl``, TensorBoard, the bar; a non-finite loss stops training with one line."""
        keys = sorted(run.window)
        vals = torch.stack([run.window[k] / run.window_steps for k in keys]).to(run.device)
        vals = run.acc.reduce(vals, reduction="mean") if run.world > 1 else vals
        dt = time.perf_counter() - run.t_window
        row = {f"loss/{k}": float(v) for k, v in zip(keys, vals.tolist())}
        row.update({"lr": lr, "grad_norm": float(run.grad_norm),
                    "img_per_s": run.cfg.batch_size * run.window_steps / dt})
        run.last_losses = {k: row[f"loss/{k}"] for k in keys}
        if run.main:
            run.history.append({"step": run.step, **row})
            with open(run.out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": run.step, **row}) + "\n")
            if run.writer is not None:
                for k, v in row.items():
                    run.writer.add_scalar(k, v, run.step)
            if run.bar is not None:
                run.bar.set_postfix(loss=f"{row['loss/total']:.4f}", refresh=False)
        run.window, run.window_steps, run.t_window = {}, 0, time.perf_counter()
        if not all(math.isfinite(v) for v in run.last_losses.values()):
            raise PadaError(f"training diverged at step {run.step}: losses {run.last_losses}; "
                            f"last checkpoint: {run.last_ckpt or 'none'}")

    @staticmethod
    def _due(every: int, run: _Run) -> bool:
        """A periodic grid or checkpoint is due (the last step writes its own, in :meth:`_finish`)."""
        return every > 0 and run.step % every == 0 and run.step != run.total_steps

    def _save(self, run: _Run) -> Path | None:
        """A checkpoint at ``run.step`` with every process's random streams (written by the main process)."""
        from accelerate.utils import gather_object

        mine = {"generator": run.generator.get_state(), "global": ckpt.global_rng_state()}
        rng_all = gather_object([mine])
        saved = None
        if run.main:
            saved = ckpt.save_checkpoint({
                "step": run.step, "world_size": run.world, "config": run.cfg.to_dict(),
                "task": self._task_meta(),
                "model": {k: v.detach().cpu() for k, v in run.unwrapped.trainable.state_dict().items()},
                "ema": {k: v.cpu() for k, v in run.ema.state_dict().items()},
                "optimizer": run.optimizer.state_dict(), "rng": rng_all,
                "task_state": self.task.state_dict(),
            }, run.ckpt_dir, keep_last=run.cfg.keep_last)
        run.acc.wait_for_everyone()
        return saved

    def _write_samples(self, run: _Run) -> None:
        if run.main:
            self.task.sample_grids(run.step, run.out_dir / "samples", run.ema.modules)
        run.acc.wait_for_everyone()

    def _finish(self, run: _Run) -> TrainResult:
        """The final checkpoint, grids and export."""
        cfg = run.cfg
        if run.bar is not None:
            run.bar.close()
        run.last_ckpt = self._save(run)
        if cfg.sample_every >= 0:
            self._write_samples(run)
        exported: list[Path] = []
        if run.main and cfg.export:
            info = {"steps": run.step, "images_seen": run.step * cfg.batch_size,
                    "final_losses": run.last_losses, "train_config": cfg.to_dict(), "world_size": run.world}
            exported = list(self.task.export(run.ema.modules, run.out_dir, info) or [])
        run.acc.wait_for_everyone()
        if run.writer is not None:
            run.writer.close()
        return TrainResult(step=run.step, modules=run.unwrapped.trainable, ema=run.ema.modules,
                           history=run.history, exported=exported, last_checkpoint=run.last_ckpt)
