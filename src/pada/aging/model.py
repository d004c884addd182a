"""``PadaModel``: the trainable part of PADA in one bundle, with safetensors save / load.

It holds the CLIP-guided age encoder ``E_age`` (§3.2.1) and the adaptive modulation (§3.2.2, with its
data-set statistics buffers) plus a :class:`~pada.aging.config.PadaConfig` naming the frozen DiffAE and
vision-language model it was trained with. A file is self-describing: the config travels as JSON in the
safetensors metadata (key ``pada_config``), and loading is strict.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from pada.aging.config import PadaConfig
from pada.aging.modulation import AdaptiveModulation
from pada.aging.pae import AgeEncoder
from pada.errors import CheckpointError

FORMAT = "pada-aging/1"


class PadaModel(nn.Module):
    """E_age + adaptive modulation. ``forward(z_src (B,S), e_age (B,D)) -> z_age (B,S)`` (Eq. 6)."""

    def __init__(self, cfg: PadaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.age_encoder = AgeEncoder(cfg)
        self.modulation = AdaptiveModulation(cfg)

    def forward(self, z_src: torch.Tensor, e_age: torch.Tensor) -> torch.Tensor:
        return self.modulation(z_src, e_age)

    # ---------------------------------------------------------------- files
    def save(self, path: str | Path, extra_metadata: dict[str, str] | None = None) -> Path:
        """Write weights (float32) + config metadata to ``path`` (.safetensors), atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().float().contiguous().cpu() if v.is_floating_point() else v.detach().cpu()
                 for k, v in self.state_dict().items()}
        meta = {"format": FORMAT, "pada_config": self.cfg.to_json()}
        meta.update(extra_metadata or {})
        tmp = path.with_name(path.name + ".tmp")
        save_file(state, str(tmp), metadata=meta)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> PadaModel:
        """Rebuild a model from a file written by :meth:`save` (strict keys and shapes)."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such PADA model file")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            state = load_file(str(path), device=str(map_location))
        except Exception as exc:  # safetensors raises several types for a corrupt file
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
        if meta.get("format") != FORMAT or "pada_config" not in meta:
            raise CheckpointError(f"{path}: not a PADA aging model (metadata format {meta.get('format')!r})")
        cfg = PadaConfig.from_dict(json.loads(meta["pada_config"]))
        model = cls(cfg)
        missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
        if missing or unexpected:
            raise CheckpointError(f"{path}: key mismatch (missing {sorted(missing)[:5]}, "
                                  f"unexpected {sorted(unexpected)[:5]})")
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise CheckpointError(f"{path}: shapes do not match its config ({first})") from None
        return model.to(map_location).eval()

    @staticmethod
    def read_config(path: str | Path) -> PadaConfig:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "pada_config" not in meta:
            raise CheckpointError(f"{path}: not a PADA aging model")
        return PadaConfig.from_dict(json.loads(meta["pada_config"]))
