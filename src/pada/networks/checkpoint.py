"""Loading and saving DiffAE weights: official Lightning ``last.ckpt`` and pada safetensors.

* Official checkpoints (``checkpoints/<name>/last.ckpt``) are PyTorch-Lightning saves of the
  official ``LitModel``: ``state_dict`` holds ``model.*`` (raw weights), ``ema_model.*`` (the EMA
  weights every official inference path uses), the ``x_T`` buffer and, for latent models,
  ``conds_mean``/``conds_std``. :func:`load_state_dict_file` takes ``ema_model.*`` and strips the
  prefix; everything else is ignored. The official code has no config in the file, so
  :func:`load_diffae` needs a ``preset`` for it.
* Torch files are read with ``torch.load(weights_only=True)``: a file that needs arbitrary
  unpickling (it could run code) is refused with one line saying how to allow it
  (``trust_pickle=True``, CLI ``--trust-pickle``) for a file you trust.
* pada exports are safetensors whose metadata key ``"pada"`` holds JSON
  ``{"config": DiffAEConfig.to_dict(), "metadata": {...}}`` so the model rebuilds from the file
  alone (one metadata key keeps the file bytes deterministic).
* Loading is strict: any missing, unexpected or mis-shaped key raises
  :class:`pada.errors.CheckpointError` with a one-line summary.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pada.errors import CheckpointError, PadaError
from pada.networks.config import DiffAEConfig, load_preset
from pada.networks.unet import DiffAEUNet
from pada.state_dict_check import describe_mismatch

META_KEY = "pada"
PathLike = str | os.PathLike

_PREFIXES = ("ema_model.", "model.")


def _refusal(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path}: refused to load, the file contains pickled Python objects that could run code; "
        "if you trust it, pass trust_pickle=True (CLI: --trust-pickle)"
    )


def _read_raw(path: Path, trust_pickle: bool) -> Any:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own SafetensorError
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        with warnings.catch_warnings():  # torch's notes on odd pickles must not add lines to a one-line error
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        if not trust_pickle and "weights_only" in str(e):
            raise _refusal(path) from None
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({str(e).splitlines()[0]})") from None
    except Exception as e:  # torch raises many types for corrupt files (IndexError, EOFError, ...)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({first})") from None


def load_state_dict_file(
    path: PathLike, trust_pickle: bool = False, prefix: str | None = None
) -> dict[str, Tensor]:
    """The network state_dict stored in ``path`` (safetensors, torch file or Lightning ``.ckpt``).

    Args:
        path: a ``.safetensors`` file (flat state_dict) or a torch file: either a flat state_dict
            or a dict with ``state_dict`` (Lightning). In a Lightning dict the ``ema_model.*``
            entries are used (prefix stripped); ``model.*``, ``x_T``, ``conds_mean``/``conds_std``
            and anything else are ignored.
        trust_pickle: allow arbitrary unpickling (only for files you trust).
        prefix: take the entries under this prefix instead (e.g. ``"model."`` for the non-EMA
            weights of an official checkpoint). Default: ``ema_model.`` if present, else
            ``model.``, else the dict as it is.
    Returns:
        ``{key: tensor}`` with official model-level key names.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    raw = _read_raw(path, trust_pickle)
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a state_dict (dict of tensors), found {type(raw).__name__}")
    keys = [k for k in raw if isinstance(k, str)]
    if prefix is None:
        prefix = next((p for p in _PREFIXES if any(k.startswith(p) for k in keys)), "")
    if prefix:
        out = {k[len(prefix) :]: v for k, v in raw.items() if isinstance(k, str) and k.startswith(prefix)}
        if not out:
            raise CheckpointError(f"{path}: no entries under prefix {prefix!r}")
    else:
        out = dict(raw)
    bad = [k for k, v in out.items() if not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {', '.join(map(str, bad[:3]))}")
    return out


def read_safetensors_metadata(path: PathLike) -> dict[str, Any] | None:
    """The pada metadata dict ``{"config": ..., "metadata": ...}`` of a safetensors file, or None."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if META_KEY not in meta:
        return None
    try:
        data = json.loads(meta[META_KEY])
    except (json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{path}: corrupt pada metadata (not JSON)") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: corrupt pada metadata (a JSON {type(data).__name__}, not an object)")
    return data


def check_state_dict(model: torch.nn.Module, state: dict[str, Tensor], source: str, what: str) -> None:
    """Raise one-line :class:`CheckpointError` unless ``state`` matches ``model`` key for key."""
    problems = describe_mismatch(state, {k: v.shape for k, v in model.state_dict().items()})
    if problems:
        raise CheckpointError(f"{source}: weights do not fit {what}: {problems}")


def build_from_state(
    config: DiffAEConfig,
    state: dict[str, Tensor],
    source: str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> DiffAEUNet:
    """A :class:`DiffAEUNet` for ``config`` holding ``state`` (strict), in eval mode."""
    from pada.validation import check_finite, check_param_count

    try:
        with torch.device("meta"):  # nothing is allocated before the checks
            model = DiffAEUNet(config)
    except PadaError as e:
        raise CheckpointError(f"{source}: {e}") from None
    check_param_count(model, source)
    check_state_dict(model, state, source, f"DiffAE config {config.name!r}")
    check_finite(state, source)
    state = {
        k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in state.items()
    }
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def load_diffae(
    path: PathLike,
    preset: str | DiffAEConfig | None = None,
    trust_pickle: bool = False,
    device: torch.device | str = "cpu",
    prefix: str | None = None,
) -> DiffAEUNet:
    """Load a DiffAE network from a pada safetensors export or an official checkpoint.

    Args:
        path: ``.safetensors`` (config taken from its metadata) or ``.ckpt``/``.pt``.
        preset: preset name, path to a JSON config, or a DiffAEConfig; required when the file
            carries no config (official checkpoints); overrides the file's config otherwise.
        trust_pickle: allow arbitrary unpickling for torch files you trust.
        device: where the weights go. prefix: see :func:`load_state_dict_file`.
    Returns:
        The network in eval mode, float32.
    """
    path = Path(path).expanduser()
    state = load_state_dict_file(path, trust_pickle=trust_pickle, prefix=prefix)
    if isinstance(preset, DiffAEConfig):
        config = preset
    elif preset is not None:
        try:
            config = load_preset(preset)
        except PadaError as e:
            raise CheckpointError(f"{path}: {e}") from None
    else:
        meta = read_safetensors_metadata(path) if path.suffix == ".safetensors" else None
        if meta is None or "config" not in meta:
            raise CheckpointError(
                f"{path}: the file carries no DiffAE config; pass a preset (e.g. preset='ffhq128_autoenc', "
                "CLI --preset)"
            )
        config = DiffAEConfig.from_dict(meta["config"], source=str(path))  # types and ranges checked
    return build_from_state(config, state, str(path), device=device)


def save_diffae(
    model: DiffAEUNet, path: PathLike, metadata: dict[str, Any] | None = None, fp16: bool = False
) -> Path:
    """Write ``model``'s weights to ``path`` (safetensors) with its config and ``metadata``.

    Args:
        metadata: JSON-serialisable dict stored beside the config (e.g. training recipe, step).
        fp16: store floating tensors as float16 (half the size; loading casts back to float32).
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise PadaError(f"{path}: DiffAE exports are written as .safetensors")
    dtype = torch.float16 if fp16 else None
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v.contiguous().clone()
    try:
        payload = json.dumps({"config": model.config.to_dict(), "metadata": metadata or {}}, sort_keys=True)
    except TypeError as e:
        raise PadaError(f"{path}: metadata is not JSON-serialisable ({e})") from None
    from pada.outputs import atomic_path

    with atomic_path(path) as tmp:  # all or nothing, umask mode (safetensors itself writes 0600)
        save_file(tensors, str(tmp), metadata={META_KEY: payload})
    return path
