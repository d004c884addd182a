"""Small interfaces shared by every critic (age, gender, identity).

A critic takes pada images — FFHQ-aligned faces, ``float32 (B, 3, H, W)``, RGB in ``[-1, 1]``, any size
(usually 256) — and returns predictions. Each critic owns an ``input_adapter``: a differentiable in-graph
module that turns the aligned face into the crop, size, channel order and value range its network was
trained on. Critics are frozen (``requires_grad=False``, eval mode, and ``train()`` keeps them in eval)
but gradients flow to the input image, so they can serve as losses (paper Eqs. 7-9).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pada.frozen import freeze  # re-exported: pada.critics.base.freeze is pada.frozen.freeze


@dataclass
class AgeOutput:
    """What an age critic returns for a batch of ``B`` images.

    ``age``       ``(B,)`` years: expected value of the bin distribution.
    ``probs``     ``(B, K)`` softmax over the ``K`` age bins.
    ``logits``    ``(B, K)`` pre-softmax scores.
    ``features``  ``(B, F)`` the vector used by the age triplet loss (paper Eq. 8): either the logits of
                  the last fully-connected layer (``feature_layer="logits"``, ``F = K``) or the
                  penultimate feature vector feeding it (``feature_layer="penultimate"``).
    """

    age: torch.Tensor
    probs: torch.Tensor
    logits: torch.Tensor
    features: torch.Tensor


FEATURE_LAYERS = ("logits", "penultimate")


class FrozenCritic(nn.Module):
    """Base class: stays in eval mode whatever ``train()`` asks (BatchNorm/Dropout frozen)."""

    input_adapter: nn.Module

    def train(self, mode: bool = True) -> FrozenCritic:  # noqa: ARG002 - always eval
        return super().train(False)

    def freeze(self) -> FrozenCritic:
        freeze(self)
        return self


class AgeCritic(FrozenCritic):
    """``forward(images (B,3,H,W) in [-1,1]) -> AgeOutput``."""

    num_bins: int
    feature_layer: str

    def forward(self, images: torch.Tensor) -> AgeOutput:  # pragma: no cover - interface
        raise NotImplementedError


class GenderCritic(FrozenCritic):
    """``forward(images (B,3,H,W) in [-1,1]) -> probs (B, 2)``, columns ``[female, male]``."""

    labels = ("female", "male")

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class IdentityCritic(FrozenCritic):
    """``forward(images (B,3,H,W) in [-1,1]) -> (B, D)`` L2-normalised identity embedding."""

    dim: int

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity ``(B,)`` between the identities of two image batches."""
        return (self(a) * self(b)).sum(dim=1)


def check_images(images: torch.Tensor, who: str) -> None:
    """Raise ``ValueError`` unless ``images`` is a float ``(B, 3, H, W)`` tensor."""
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"{who}: expected images of shape (B, 3, H, W), got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"{who}: expected float images in [-1, 1], got dtype {images.dtype}")
