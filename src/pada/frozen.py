"""The one way to freeze a network: no gradients to its weights, eval mode (BatchNorm/Dropout fixed).

Used for every frozen model: the DiffAE and the vision-language model inside PADA, the critics, the EMA
copies and a training task's frozen modules. Gradients still flow through a frozen network to its input.
"""

from __future__ import annotations

from typing import TypeVar

from torch import nn

M = TypeVar("M", bound=nn.Module)


def freeze(module: M) -> M:
    """Set ``requires_grad=False`` on every parameter of ``module``, switch it to eval mode, return it."""
    module.requires_grad_(False)
    return module.eval()


__all__ = ["freeze"]
