"""Exponential moving average (EMA) of model weights.

DiffAE (and most diffusion models) sample from an EMA of the training weights:
``ema <- decay * ema + (1 - decay) * online`` after every optimizer step (official DiffAE: decay 0.9999).
The engine calls :meth:`EMA.update` only on steps where gradients were synchronised (i.e. an optimizer
step happened), so gradient accumulation does not change the EMA's time constant.

The shadow copy is a full module (``EMA.modules``, an ``nn.ModuleDict`` with the same keys as the
trainable modules), so samplers and exporters use it directly without swapping weights in and out.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pada.frozen import freeze


def ema_decay_at(step: int, decay: float, warmup: bool) -> float:
    """Decay used for the update after optimizer step ``step`` (0-based).

    With ``warmup`` the decay ramps as ``min(decay, (1 + step) / (10 + step))`` so that a short run's EMA
    is not stuck at the initial weights; without it (official DiffAE) the decay is constant.
    """
    if not warmup:
        return float(decay)
    return float(min(decay, (1.0 + step) / (10.0 + step)))


class EMA:
    """EMA shadow of a dict of modules.

    Args:
        modules: the online (trained) modules, ``{name: module}``. They are deep-copied once; the copy
            is put in eval mode with ``requires_grad=False``. Parameters are kept in float32 even when
            training uses autocast (autocast never changes parameter dtypes).
    """

    def __init__(self, modules: dict[str, nn.Module]):
        self.modules = nn.ModuleDict({k: copy.deepcopy(m) for k, m in modules.items()})
        freeze(self.modules)

    @torch.no_grad()
    def update(self, online: dict[str, nn.Module] | nn.ModuleDict, decay: float) -> None:
        """``ema = decay * ema + (1 - decay) * online`` for parameters; buffers are copied.

        ``decay = 0`` makes the EMA an exact copy of the online weights.
        """
        for name, shadow in self.modules.items():
            src = online[name]
            s_params = list(shadow.parameters())
            o_params = [p.detach() for p in src.parameters()]
            if len(s_params) != len(o_params):
                raise RuntimeError(f"EMA: module {name!r} changed its parameter count")
            if decay == 0.0:
                torch._foreach_copy_(s_params, o_params)
            else:
                # lerp(ema, online, 1 - decay) = ema + (1 - decay) * (online - ema)
                torch._foreach_lerp_(s_params, o_params, 1.0 - decay)
            for sb, ob in zip(shadow.buffers(), src.buffers()):
                sb.copy_(ob)

    def to(self, device: torch.device | str) -> EMA:
        self.modules.to(device)
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.modules.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.modules.load_state_dict(state, strict=True)
