"""``PadaModel``: the trainable part of PADA in one bundle, with safetensors save / load.

It holds the CLIP-guided age encoder ``E_age`` (§3.2.1) and the adaptive modulation (§3.2.2, with its
data-set statistics buffers) plus a :class:`~pada.aging.config.PadaConfig` naming the frozen DiffAE and
vision-language model it was trained with. A file is self-describing: the config travels as JSON in the
safetensors metadata (key ``pada_config``), and loading is strict.
"""

from __future__ import annotations

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

    def forward(self, z_src: torch.Tensor, e_age: torch.Tensor,
                eta: torch.Tensor | None = None) -> torch.Tensor:
        return self.modulation(z_src, e_age, eta)

    # ---------------------------------------------------------------- files
    def save(self, path: str | Path, extra_metadata: dict[str, str] | None = None) -> Path:
        """Write weights (float32) + config metadata to ``path`` (.safetensors), atomically."""
        from safetensors.torch import save_file

        from pada.outputs import atomic_path

        path = Path(path)
        state = {k: v.detach().float().contiguous().cpu() if v.is_floating_point() else v.detach().cpu()
                 for k, v in self.state_dict().items()}
        meta = {"format": FORMAT, "pada_config": self.cfg.to_json()}
        meta.update(extra_metadata or {})
        with atomic_path(path) as tmp:  # all or nothing, umask mode (safetensors itself writes 0600)
            save_file(state, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> PadaModel:
        """Rebuild a model from a file written by :meth:`save` (strict keys and shapes).

        The file is untrusted: its config is checked (types, ranges, parameter count on the ``meta``
        device) and the tensor shapes in its header are compared with the config before any weight is
        read or any network allocated; weights with NaN or infinity are refused (docs/reliability.md).
        """
        from safetensors import safe_open
        from safetensors.torch import load_file

        from pada.state_dict_check import describe_mismatch
        from pada.validation import check_finite, check_param_count

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such PADA model file")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                shapes = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
        except Exception as exc:  # safetensors raises several types for a corrupt file
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
        cfg = cls._config_from_metadata(meta, path)
        with torch.device("meta"):
            skeleton = cls(cfg)
        check_param_count(skeleton, str(path))
        expected = {k: v.shape for k, v in skeleton.state_dict().items()}
        problems = describe_mismatch(shapes, expected)
        if problems:
            raise CheckpointError(f"{path}: weights do not fit its PADA config: {problems}")
        try:
            state = load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a corrupt file
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
        check_finite(state, str(path))
        model = cls(cfg)
        model.load_state_dict(state, strict=True)
        return model.to(map_location).eval()

    @staticmethod
    def _config_from_metadata(meta: dict[str, str], path: Path) -> PadaConfig:
        from pada.validation import parse_config_json

        if meta.get("format") != FORMAT or "pada_config" not in meta:
            raise CheckpointError(f"{path}: not a PADA aging model (metadata format {meta.get('format')!r})")
        return parse_config_json(PadaConfig, meta["pada_config"], str(path))

    @staticmethod
    def read_config(path: str | Path) -> PadaConfig:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a corrupt file
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
        if "pada_config" not in meta:
            raise CheckpointError(f"{path}: not a PADA aging model")
        return PadaModel._config_from_metadata({"format": FORMAT, **meta}, Path(path))
