"""Atomic, self-describing training checkpoints.

A training checkpoint is one file ``OUT/checkpoints/step_00001234.pt`` (``torch.save`` of a dict of
tensors and plain Python values, loadable with ``weights_only=True``):

``format`` / ``step`` / ``config`` (the TrainConfig as a dict) / ``task`` (the task's name and its own
config) / ``model`` / ``ema`` / ``optimizer`` / ``scheduler`` / ``rng`` (one entry per process: the task
generator and the torch, numpy and python global states) / ``task_state`` (task extras).

Writes are atomic: the file is written to a temporary name in the same folder, flushed and fsync'ed,
then renamed over the final name with :func:`os.replace`. A crash (or exception) during the write leaves
the previous checkpoints untouched and no half-written ``step_*.pt``; stray ``*.tmp`` files are ignored
by :func:`find_checkpoints` and removed by the next successful save.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pada.errors import CheckpointError

FORMAT = "pada-train-v1"
_NAME_RE = re.compile(r"^step_(\d{8,})\.pt$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}.pt"


def find_checkpoints(ckpt_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``ckpt_dir`` as ``[(step, path), ...]`` sorted by step (oldest first)."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _NAME_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` via a temporary file and :func:`os.replace` (all-or-nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(state: dict[str, Any], ckpt_dir: str | os.PathLike, keep_last: int = 0) -> Path:
    """Write ``state`` (must hold ``step``) atomically; then keep only the newest ``keep_last`` (0 = all)."""
    ckpt_dir = Path(ckpt_dir)
    state = {"format": FORMAT, **state}
    path = atomic_torch_save(state, ckpt_dir / checkpoint_name(int(state["step"])))
    for stray in ckpt_dir.glob(".step_*.tmp"):
        stray.unlink(missing_ok=True)
    if keep_last > 0:
        for _, old in find_checkpoints(ckpt_dir)[:-keep_last]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a training checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file for the user
        raise CheckpointError(f"{path}: not a readable pada training checkpoint "
                              f"({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a pada training checkpoint (expected format {FORMAT!r})")
    return state


def resolve_resume(resume: str | None, ckpt_dir: str | os.PathLike) -> Path | None:
    """Checkpoint to resume from.

    ``resume`` None/"" -> None; "auto"/"latest" -> newest checkpoint in ``ckpt_dir`` (None if there is
    none, so ``--resume`` also starts a fresh run); a folder -> its newest checkpoint; else that file.
    """
    if not resume:
        return None
    if resume in ("auto", "latest"):
        found = find_checkpoints(ckpt_dir)
        return found[-1][1] if found else None
    p = Path(resume)
    if p.is_dir():
        found = find_checkpoints(p / "checkpoints") or find_checkpoints(p)
        if not found:
            raise CheckpointError(f"{p}: no step_*.pt checkpoint in this folder")
        return found[-1][1]
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file not found")
    return p


def load_resume(resume: str | None, ckpt_dir: str | os.PathLike,
                warn=None) -> tuple[Path | None, dict[str, Any] | None]:
    """``(path, state)`` of the checkpoint to resume from, or ``(None, None)`` for a fresh run.

    With ``resume`` "auto"/"latest" or a folder, a newest checkpoint that cannot be read (truncated by a
    full disk, damaged) is skipped for the newest intact one, and ``warn`` (default: print to stderr) is
    told which file was skipped and why. A checkpoint named explicitly must load, else CheckpointError.
    When every checkpoint is unreadable, the error names the newest one.
    """
    if not resume:
        return None, None
    p = Path(resume)
    if resume not in ("auto", "latest") and not p.is_dir():
        path = resolve_resume(resume, ckpt_dir)
        return path, load_checkpoint(path)
    newest = resolve_resume(resume, ckpt_dir)  # raises for a folder without checkpoints
    if newest is None:
        return None, None
    found = [path for _, path in find_checkpoints(newest.parent)]
    skipped: list[str] = []
    first_error: CheckpointError | None = None
    for path in reversed(found):
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            first_error = first_error or exc
            skipped.append(f"{path.name} ({str(exc).split(': ', 1)[-1]})")
            continue
        if skipped:
            msg = (f"warning: skipped unreadable checkpoint(s) {'; '.join(skipped)}; resuming from the "
                   f"newest intact one, {path}")
            if warn is None:
                import sys

                print(msg, file=sys.stderr, flush=True)
            else:
                warn(msg)
        return path, state
    raise first_error or CheckpointError(f"{newest}: no readable checkpoint")


# ----------------------------------------------------------------------------------------------- RNG state
def global_rng_state() -> dict[str, Any]:
    """The torch (CPU and, if used, CUDA), numpy and python global RNG states as weights_only-safe values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": np_state[0], "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4]),
                  "state": torch.from_numpy(np_state[1].astype(np.int64))},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_global_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["key"], n["state"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
