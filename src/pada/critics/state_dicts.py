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


class LoadableFromFile:
    """Mixin for the full-scale networks users bring as PyTorch weight files (DEX, IR-SE50).

    The network is built on the meta device, the file's keys and shapes are checked strictly (one-line
    :class:`CheckpointError` otherwise; ``num_batches_tracked`` may be absent, as in PyTorch 0.4-era files),
    then the weights are loaded in float32.
    """

    @classmethod
    def empty(cls):
        """The module with uninitialised storage (fast to build; fill it with ``load_state_dict``)."""
        with torch.device("meta"):
            net = cls()
        return net.to_empty(device="cpu")

    @classmethod
    def from_file(cls, path: str | Path, trust_pickle: bool = False):
        """Load a flat state_dict or a ``{"state_dict": ...}`` file (``-`` in keys, ``module.`` handled)."""
        sd = extract_state_dict(load_torch_file(path, trust_pickle), path)
        with torch.device("meta"):
            meta = cls()
        own = meta.state_dict()
        optional = [k for k in own if k.endswith("num_batches_tracked")]
        match_keys(sd, {k: v.shape for k, v in own.items()}, path, optional=optional)
        net = meta.to_empty(device="cpu")
        full = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
        for k in optional:
            full.setdefault(k, torch.tensor(0, dtype=torch.long))
        net.load_state_dict(full, strict=True)
        return net
