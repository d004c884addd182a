"""Tone guard: keep the skin's shading while sampling (a pada addition, applied at inference only).

The age critics reward re-toned skin — darkened eye sockets at young targets, a washed-out or blotched
face at old ones — and a trained modulation learns to ask the decoder for it; a person reads it as a
broken image (:func:`pada.evaluation.scores.tone_change` measures it). :class:`ToneGuard` is an x̂0
projection for :meth:`pada.diffae.DiffAE.render`: at every sampler step the smoothed luma of the
predicted clean image (:func:`~pada.evaluation.scores.smooth_luma`) may differ from the input face's by
at most ``margin`` (0-1 scale) inside the skin region of the aligned crop
(:data:`~pada.evaluation.scores.SKIN_ELLIPSE`, with a soft edge); beyond that the excess is taken out
again, equally in R, G and B. Lines, wrinkles and texture (what the blur removes), colour within the
skin's brightness, the hair and the background are left to the edit. Like the clamp of x̂0 to [-1, 1],
it is a projection of the sampler's estimate, not a change of the trained model, and costs no network
calls. Measured effect: docs/pada_method.md ("Shipped model").
"""

from __future__ import annotations

import math

import torch

from pada.errors import PadaError
from pada.evaluation.scores import skin_mask, smooth_luma


class ToneGuard:
    """x̂0 projection (see module docstring) for one input face ``image`` (1, 3, H, W) in [-1, 1]."""

    def __init__(self, image: torch.Tensor, margin: float) -> None:
        if image.ndim != 4 or image.shape[:2] != (1, 3):
            raise ValueError(f"ToneGuard needs one face (1, 3, H, W), got {tuple(image.shape)}")
        if not 0.0 < margin < 1.0:
            raise ValueError(f"tone guard margin must be in (0, 1), got {margin}")
        self.margin = float(margin)
        self.luma = smooth_luma(image.float())  # (1, 1, H, W), 0-1 scale
        size = image.shape[-1]
        hard = skin_mask(size, image.device)[None, None].expand(1, 3, size, size)
        self.mask = smooth_luma(hard * 2.0 - 1.0)  # the ellipse with a soft edge, (1, 1, H, W) in [0, 1]

    def __call__(self, x0: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        d = smooth_luma(x0) - self.luma.to(x0.device)
        excess = d - d.clamp(-self.margin, self.margin)
        return (x0 - 2.0 * excess * self.mask.to(x0.device)).clamp(-1.0, 1.0)  # luma 0-1 -> pixels [-1, 1]


def tone_margin(value) -> float:
    """A tone-guard margin as a float in [0, 1) (0 = off); :class:`PadaError` naming the problem."""
    try:
        margin = float(value)
    except (TypeError, ValueError):
        raise PadaError(f"tone guard must be a number in [0, 1), got {value!r}") from None
    if not (math.isfinite(margin) and 0.0 <= margin < 1.0):
        raise PadaError(f"tone guard must be in [0, 1), got {margin:g}")
    return margin


def tone_guard(image: torch.Tensor, margin) -> ToneGuard | None:
    """The :class:`ToneGuard` of ``image`` (1, 3, H, W) at ``margin`` (checked by :func:`tone_margin`);
    None when the margin is 0."""
    margin = tone_margin(margin)
    return ToneGuard(image, margin) if margin > 0 else None


__all__ = ["ToneGuard", "tone_guard", "tone_margin"]
