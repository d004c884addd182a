"""The six PADA losses (paper §3.3, Eq. 7–12) as per-sample functions.

Every function returns a ``(B,)`` tensor of per-sample values; :class:`pada.aging.objective.PadaObjective`
averages them over the samples each term applies to and forms the total of Eq. 12. Inputs that live in a
CLIP-like space are (re-)normalised here, as the paper does "in practice".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-8


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.float(), b.float(), dim=-1, eps=_EPS)


def tkl_loss(mu: torch.Tensor, sigma: torch.Tensor, e_txt: torch.Tensor, e_img: torch.Tensor | None = None,
             variant: str = "stable", sigma_reduction: str = "sum") -> torch.Tensor:
    """Text-guided KL loss L_tKL (Eq. 7) between N(μ, σ²I) and the text prior N(e_txt, I). (B,).

    ``variant="exact"``: ½ Σ_j [(μ_j − e_txt,j)² − 1 + σ_j² − log σ_j²] (Eq. 7 as written).
    ``variant="stable"`` (paper, "for training stability"): the Euclidean term is replaced by
    −cos(μ, e_txt) + ‖μ − e_img‖₂ (direction toward the text, length/position kept near the reference image's
    own embedding), the σ terms ½ Σ_j (σ_j² − 1 − log σ_j²) stay.
    ``sigma_reduction="mean"`` averages the σ terms over D instead of summing them.
    mu, sigma, e_txt, e_img: (B, D); e_txt and e_img are L2-normalised here.
    """
    mu, sigma = mu.float(), sigma.float()
    e_txt = F.normalize(e_txt.float(), dim=-1)
    s2 = sigma * sigma
    sig = s2 - 1.0 - torch.log(s2)
    sig = 0.5 * (sig.sum(-1) if sigma_reduction == "sum" else sig.mean(-1))
    if variant == "exact":
        sq = (mu - e_txt).pow(2)
        return 0.5 * (sq.sum(-1) if sigma_reduction == "sum" else sq.mean(-1)) + sig
    if variant != "stable":
        raise ValueError(f"variant must be 'stable' or 'exact', got {variant!r}")
    if e_img is None:
        raise ValueError("the stable L_tKL needs e_img")
    e_img = F.normalize(e_img.float(), dim=-1)
    return -_cos(mu, e_txt) + (mu - e_img).norm(dim=-1) + sig


def age_triplet_loss(f_src: torch.Tensor, f_ref: torch.Tensor, f_tar: torch.Tensor,
                     margin: float = 0.15) -> torch.Tensor:
    """Aging triplet loss L_age (Eq. 8): max(⟨f_src, f_tar⟩ − ⟨f_ref, f_tar⟩ + m, 0), ⟨·,·⟩ cosine. (B,).

    f_*: (B, F) age-critic features of x̂0 of source, reference and target. Zero once the target is closer
    (in cosine) to the reference age than to the source age by the margin m.
    """
    return torch.relu(_cos(f_src, f_tar) - _cos(f_ref, f_tar) + margin)


def clip_direction_loss(img_tar: torch.Tensor, img_src: torch.Tensor, txt_tar: torch.Tensor,
                        txt_src: torch.Tensor) -> torch.Tensor:
    """CLIP directional loss L_clip (StyleGAN-NADA):
    1 − cos(E_I(x_tar) − E_I(x_src), E_T(t_tar) − E_T(t_src)).

    All inputs (B, D) unit embeddings. (B,). Undefined (set to 1, no gradient direction) when either
    difference is zero; callers mask rows whose source and target texts are equal.
    """
    return 1.0 - _cos(img_tar - img_src, txt_tar - txt_src)


def identity_loss(r_src: torch.Tensor, r_tar: torch.Tensor) -> torch.Tensor:
    """Identity loss L_id (Eq. 9): −cos(R(x̂0_src), R(x̂0_tar)). r_*: (B, E) identity embeddings. (B,)."""
    return -_cos(r_src, r_tar)


def norm_loss(z_age: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Norm loss L_norm (Eq. 10): ‖z_age‖²₂ (``"sum"``) or ‖z_age‖²₂ / S (``"mean"``). z_age (B, S) → (B,)."""
    sq = z_age.float().pow(2)
    return sq.sum(-1) if reduction == "sum" else sq.mean(-1)


def shift_loss(z_age: torch.Tensor, z_src: torch.Tensor) -> torch.Tensor:
    """L_norm with ``norm_target="shift"``: the relative move ‖z_age − z_src‖² / ‖z_src‖². (B, S) → (B,)."""
    return (z_age - z_src).float().pow(2).sum(-1) / z_src.float().pow(2).sum(-1).clamp_min(1e-8)


def diversity_loss(z_a: torch.Tensor, z_b: torch.Tensor, z_src: torch.Tensor, target: float) -> torch.Tensor:
    """Mode-seeking L_div: relu(target − ‖z_a − z_b‖ / ‖z_src‖) for two PAE draws of one row. (B,)."""
    gap = (z_a - z_b).float().norm(dim=-1) / z_src.float().norm(dim=-1).clamp_min(1e-8)
    return torch.relu(target - gap)


def tone_loss(x_src: torch.Tensor, x_tar: torch.Tensor, margin: float) -> torch.Tensor:
    """L_tone (a pada addition): the skin's smoothed luma must not move by more than ``margin`` (0-1 scale)
    between x̂0_src and x̂0_tar; mean over the skin region of relu(|Δ| − margin)², (B,)
    (:func:`pada.evaluation.scores.tone_shift`, :data:`~pada.evaluation.scores.SKIN_ELLIPSE`)."""
    from pada.evaluation.scores import skin_mask, tone_shift

    d = tone_shift(x_tar.float(), x_src.float())
    m = skin_mask(d.shape[-1], d.device).bool()
    return torch.relu(d[:, m].abs() - margin).square().mean(-1)


def blotch_loss(x_src: torch.Tensor, x_tar: torch.Tensor, margin: float) -> torch.Tensor:
    """L_blotch (a pada addition): how unevenly the skin's brightness changed between x̂0_src and x̂0_tar,
    the standard deviation over the skin region of the change of the luma blurred by
    :data:`~pada.evaluation.scores.PATCH_SIGMA` (:func:`pada.evaluation.scores.luma_spread`, the measure
    of :func:`~pada.evaluation.scores.blotch`), free up to ``margin``, beyond that quadratic:
    relu(std − margin)², (B,). An even lightening or darkening of the face costs nothing; a pale blob on
    the forehead or dark eye sockets do."""
    from pada.evaluation.scores import luma_spread

    return torch.relu(luma_spread(x_tar.float(), x_src.float()) - margin).square()


def rec_loss(x_src: torch.Tensor, x_tar: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Reconstruction loss L_rec (Eq. 11): ‖x̂0_src − x̂0_tar‖²₂ per image, summed or averaged over pixels.

    x_*: (B, 3, H, W) → (B,).
    """
    sq = (x_src.float() - x_tar.float()).pow(2).flatten(1)
    return sq.sum(-1) if reduction == "sum" else sq.mean(-1)
