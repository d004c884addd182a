"""Bad-input catalogue, part 5: damaged training checkpoints.

``--resume`` (auto) skips a truncated newest checkpoint, says so in one warning line, and resumes exactly from
the newest intact one; a checkpoint named explicitly must load; when none is readable the error names the
newest.
"""

from __future__ import annotations

import pytest
import torch

from pada.errors import CheckpointError
from pada.training import checkpointing as ckpt
from pada.training.engine import Trainer
from test_training_engine import ToyTask, _cfg, _state


def _truncate(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def test_resume_falls_back_to_newest_intact_checkpoint(tmp_path, capsys):
    straight = Trainer(ToyTask(), _cfg(tmp_path / "a", max_steps=8)).fit()
    Trainer(ToyTask(), _cfg(tmp_path / "b", max_steps=6, ckpt_every=2)).fit()
    steps = [s for s, _ in ckpt.find_checkpoints(tmp_path / "b" / "checkpoints")]
    assert steps == [2, 4, 6]
    newest = tmp_path / "b" / "checkpoints" / ckpt.checkpoint_name(6)
    _truncate(newest)  # e.g. the disk filled up while it was written by an older pada
    capsys.readouterr()
    resumed = Trainer(ToyTask(), _cfg(tmp_path / "b", max_steps=8, resume="auto")).fit()
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    warn = [ln for ln in err if ln.startswith("warning:")]
    assert len(warn) == 1 and "step_00000006.pt" in warn[0] and "step_00000004.pt" in warn[0], err
    assert resumed.step == 8
    a, b = _state(straight), _state(resumed)
    for k in a:  # resuming from step 4 reproduces the uninterrupted run exactly
        assert torch.equal(a[k], b[k]), k


def test_explicit_or_all_damaged_checkpoints_are_one_line_errors(tmp_path):
    Trainer(ToyTask(), _cfg(tmp_path, max_steps=4, ckpt_every=2)).fit()
    d = tmp_path / "checkpoints"
    for _, p in ckpt.find_checkpoints(d):
        _truncate(p, 0.3)
    with pytest.raises(CheckpointError, match=r"step_00000004\.pt: not a readable pada training checkpoint"):
        ckpt.load_resume("auto", d)
    explicit = d / ckpt.checkpoint_name(2)
    with pytest.raises(CheckpointError, match=r"step_00000002\.pt: not a readable") as info:
        Trainer(ToyTask(), _cfg(tmp_path, max_steps=6, resume=str(explicit))).fit()
    assert "\n" not in str(info.value)
    assert ckpt.load_resume("", d) == (None, None)
