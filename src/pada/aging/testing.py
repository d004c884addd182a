"""Tiny random stand-ins for the frozen networks PADA uses, with the real interfaces.

For tests and CPU benchmarks only: they have random weights and know nothing about faces or ages. Each
subclasses the project's real base class, so code written against the interfaces runs unchanged:

* :class:`TinyAgeCritic` — :class:`pada.critics.base.AgeCritic`: ``(B,3,H,W) -> AgeOutput`` (K bins).
* :class:`TinyIdentityCritic` — :class:`pada.critics.base.IdentityCritic`: ``(B,3,H,W) -> (B,E)`` unit.
* :class:`TinyVL` — :class:`pada.vl.base.VisionLanguageModel`: images and texts to ``(B,D)`` unit vectors
  (texts through a hashed bag of words, so equal texts give equal embeddings on every machine).

:func:`randomize_zero_params` re-draws parameters that a network initialises to exactly zero (DiffAE's
zero-initialised output convolutions), so a randomly initialised DiffAE depends on its condition z.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from pada.critics.base import AgeCritic, AgeOutput, IdentityCritic
from pada.vl.base import VisionLanguageModel


def _conv_trunk(width: int, out: int, seed: int | None = None) -> nn.Sequential:
    """A small conv net ``(B,3,32,32) -> (B,out)``; with ``seed``, drawn from that seed (the global RNG
    left as it was)."""
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _conv_trunk(width, out)
    return nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.SiLU(),
                         nn.Conv2d(width, width, 3, stride=2, padding=1), nn.SiLU(),
                         nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(width * 16, out))


class TinyAgeCritic(AgeCritic):
    """Random age critic: K bins over ages 0..K-1, features = logits (``feature_layer="logits"``)."""

    def __init__(self, num_bins: int = 16, width: int = 8, seed: int = 0) -> None:
        super().__init__()
        self.net = _conv_trunk(width, num_bins, seed)
        self.num_bins = num_bins
        self.feature_layer = "logits"
        self.register_buffer("bin_ages", torch.linspace(0, 80, num_bins))
        self.freeze()

    def forward(self, images: torch.Tensor) -> AgeOutput:
        logits = self.net(F.interpolate(images.float(), size=32, mode="bilinear", align_corners=False))
        probs = logits.softmax(-1)
        return AgeOutput(age=probs @ self.bin_ages, probs=probs, logits=logits, features=logits)


class TinyIdentityCritic(IdentityCritic):
    """Random identity critic: ``(B,3,H,W) -> (B, dim)`` unit embeddings."""

    def __init__(self, dim: int = 32, width: int = 8, seed: int = 1) -> None:
        super().__init__()
        self.net = _conv_trunk(width, dim, seed)
        self.dim = dim
        self.freeze()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float(), size=32, mode="bilinear", align_corners=False)
        return F.normalize(self.net(x), dim=-1)


class TinyVL(VisionLanguageModel):
    """Random joint image-text model of dimension ``dim`` (hashed bag-of-words text tower)."""

    def __init__(self, dim: int = 32, width: int = 8, vocab: int = 997, seed: int = 2) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.image_net = _conv_trunk(width, dim)
            self.words = nn.EmbeddingBag(vocab, dim, mode="mean")
        self.dim, self.vocab, self.name = dim, vocab, "tiny"
        self.freeze()

    def _token(self, word: str) -> int:
        return int.from_bytes(hashlib.sha1(word.encode()).digest()[:4], "big") % self.vocab

    def _encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_net(F.interpolate(images.float(), size=32, mode="bilinear", align_corners=False))

    def _encode_text(self, texts: list[str]) -> torch.Tensor:
        ids, offsets = [], []
        for t in texts:
            offsets.append(len(ids))
            ids.extend(self._token(w) for w in (t.lower().replace("'", " ").split() or [""]))
        dev = self.words.weight.device
        return self.words(torch.tensor(ids, device=dev), torch.tensor(offsets, device=dev))


@torch.no_grad()
def randomize_zero_params(module: nn.Module, std: float = 0.02, seed: int = 0) -> nn.Module:
    """Re-draw every parameter that is exactly zero everywhere (weights N(0, std²), biases kept 0)."""
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        if p.dim() > 1 and not bool(p.any()):
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module
