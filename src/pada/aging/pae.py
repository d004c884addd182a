"""Probabilistic Aging Embedding (PAE), paper §3.2.1, Eq. 5.

The CLIP-guided age encoder ``E_age`` maps the (L2-normalised) CLIP image embedding ``e_img`` of a reference
face to an isotropic Gaussian posterior in the CLIP space,

    p_φ(e_age | e_img) = N(e_age; μ_φ(e_img), σ_φ²(e_img) I)                                  (Eq. 5)

with a shared MLP backbone and two heads (μ and σ). Samples use the reparameterisation trick
``e_age = μ + σ ⊙ η``, η ~ N(0, I). The text prior is N(e_txt, I); the text-driven PAE samples
``e_age = e_txt + ε·η`` with a small sampling intensity ε (paper: 1e-3). Every sample is L2-normalised back to
the unit sphere when ``PadaConfig.normalize_e_age`` is set (the paper normalises CLIP features "in practice").

"Both" (image and text): the image posterior's mean is pulled toward the text embedding,
``μ_both = normalize((1 − w)·μ̂ + w·e_txt)`` with ``μ̂ = μ/‖μ‖`` and text weight w ∈ [0, 1], keeping the
image's σ (its personal spread). w = 0 is the image alone, w = 1 the text direction with the image's σ.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pada.aging.config import PadaConfig


def l2n(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """L2-normalise along the last dimension."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def _mlp(d_in: int, hidden: int, layers: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = d_in
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.LeakyReLU(0.2)]
        d = hidden
    return nn.Sequential(*mods)


def gaussian_noise(shape: tuple[int, ...], generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    """N(0, I) noise drawn on the generator's device, moved to ``device`` (no global RNG when given)."""
    gdev = generator.device if generator is not None else torch.device("cpu")
    out = torch.randn(shape, generator=generator, device=gdev, dtype=torch.float32)
    return out.to(device=device, dtype=dtype)


class AgeEncoder(nn.Module):
    """``E_age``: e_img (B, D) → (μ (B, D), σ (B, D)) of the PAE posterior (Eq. 5).

    σ = softplus(h) + 1e-4 (``sigma_param="softplus"``) or exp(h) (``"exp"``); the σ head's bias is set so
    that σ starts at ``sigma_init``. μ is not normalised (the stable KL variant keeps it near the unit sphere
    through ‖μ − e_img‖₂); samples are.
    """

    SIGMA_FLOOR = 1e-4

    def __init__(self, cfg: PadaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = _mlp(cfg.e_dim, cfg.enc_hidden, cfg.enc_layers)
        self.mu_head = nn.Linear(cfg.enc_hidden, cfg.e_dim)
        self.sigma_head = nn.Linear(cfg.enc_hidden, cfg.e_dim)
        with torch.no_grad():
            self.sigma_head.weight.mul_(0.1)
            if cfg.sigma_param == "softplus":
                s = cfg.sigma_init - self.SIGMA_FLOOR
                self.sigma_head.bias.fill_(s + math.log(-math.expm1(-s)))  # softplus⁻¹(s)
            else:
                self.sigma_head.bias.fill_(math.log(cfg.sigma_init))

    def forward(self, e_img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """e_img (B, D), L2-normalised here → μ (B, D), σ (B, D) > 0."""
        h = self.backbone(l2n(e_img))
        mu = self.mu_head(h)
        raw = self.sigma_head(h)
        sigma = F.softplus(raw) + self.SIGMA_FLOOR if self.cfg.sigma_param == "softplus" else raw.exp()
        return mu, sigma

    def finish(self, e: torch.Tensor) -> torch.Tensor:
        """Project a sampled e_age back to the unit sphere when the config asks for it."""
        return l2n(e) if self.cfg.normalize_e_age else e

    def sample(self, mu: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """Reparameterised sample e_age = μ + σ ⊙ η, η ~ N(0, I) (§3.2.1), then :meth:`finish`. (B, D)."""
        eta = noise if noise is not None else gaussian_noise(tuple(mu.shape), generator, mu.device, mu.dtype)
        return self.finish(mu + sigma * eta)

    def sample_text(self, e_txt: torch.Tensor, generator: torch.Generator | None = None,
                    eps: float | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Text-driven PAE e_age = e_txt + ε·η (§3.2.1), e_txt (B, D) normalised first. (B, D)."""
        eps = self.cfg.eps if eps is None else eps
        e_txt = l2n(e_txt)
        eta = noise if noise is not None else gaussian_noise(tuple(e_txt.shape), generator, e_txt.device,
                                                             e_txt.dtype)
        return self.finish(e_txt + eps * eta)

    def posterior(self, e_img: torch.Tensor | None = None, e_txt: torch.Tensor | None = None,
                  text_weight: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and σ of the PAE for an image, a text, or both (module docstring). Shapes (B, D).

        Text alone: mean e_txt, σ = ε everywhere (the text-driven PAE). Image alone: (μ, σ) of Eq. 5.
        Both: μ pulled toward e_txt with weight ``text_weight``, the image's σ.
        """
        if e_img is None and e_txt is None:
            raise ValueError("posterior needs an image embedding, a text embedding, or both")
        if e_img is None:
            e_txt = l2n(e_txt)
            return e_txt, torch.full_like(e_txt, self.cfg.eps)
        mu, sigma = self(e_img)
        if e_txt is not None:
            if not 0.0 <= text_weight <= 1.0:
                raise ValueError(f"text_weight must be in [0, 1], got {text_weight}")
            mu = l2n((1.0 - text_weight) * l2n(mu) + text_weight * l2n(e_txt)) * mu.norm(dim=-1, keepdim=True)
        return mu, sigma
