"""Safe loading and key normalisation of user-supplied ``.pth``/``.pt`` weight files (DEX, ArcFace)."""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable
from pathlib import Path

import torch

from pada.errors import CheckpointError
from pada.state_dict_check import describe_mismatch


def load_torch_file(path: str | Path, trust_pickle: bool = False) -> object:
    """``torch.load`` on CPU with ``weights_only=True`` unless ``trust_pickle``.

    A file that needs arbitrary pickled objects is refused with one line (:class:`CheckpointError`);
    pass ``trust_pickle=True`` only for files from a source you trust.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:  # not a pickle of globals at all: a corrupt or foreign file
            raise CheckpointError(
                f"{path}: not a readable torch weight file (corrupt or not saved by torch)"
            ) from None
        raise CheckpointError(
            f"{path}: refusing to unpickle {found.group(1)} (the file holds objects beyond plain tensors); "
            "re-save it as a plain state_dict or pass trust_pickle=True if you trust its source"
        ) from None
    except Exception as exc:  # noqa: BLE001 - corrupt / truncated / not a torch file
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise CheckpointError(
            f"{path}: not a readable torch weight file ({type(exc).__name__}: {msg})"
        ) from None


def extract_state_dict(obj: object, path: str | Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside ``obj``: ``obj["state_dict"]`` when present, else ``obj`` itself.

    Keys get ``-`` replaced by ``_`` (Caffe names such as ``fc8-101``) and a leading ``module.`` removed.
    """
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path}: expected a dict of tensors (or a dict with 'state_dict'), got {type(obj).__name__}"
        )
    out: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        if not torch.is_tensor(v):
            continue
        key = str(k).replace("-", "_")
        if key.startswith("module."):
            key = key[len("module.") :]
        out[key] = v
    return out


def match_keys(
    sd: dict[str, torch.Tensor],
    expected: dict[str, torch.Size],
    path: str | Path,
    optional: Iterable[str] = (),
) -> None:
    """Raise one :class:`CheckpointError` line unless ``sd`` has exactly the ``expected`` keys and shapes.

    Keys in ``optional`` may be absent (e.g. ``num_batches_tracked`` of PyTorch 0.4-era files).
    """
    problems = describe_mismatch(sd, expected, optional)
    if problems:
        raise CheckpointError(f"{path}: not the expected weights: {problems}")
