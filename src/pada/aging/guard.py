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
calls. Measured effect: docs/pada_history.md ("Shipped model (v7d)").

With a ``background`` margin the same projection holds the crop outside the head (the soft complement of
:func:`pada.aging.detail.head_region`: backdrop, shoulders, clothes) near the input, per colour channel
after the same blur: aging leaves those alone, and a model that whitens or darkens the backdrop at old
targets is rewarded by the age network for it (``bg ok``, docs/evaluation.md). The model's default
(``PadaConfig.background_guard``: 0.05 for the shipped ``pada-demo64`` since v7f, 0 = off) unless asked
otherwise (``AgingPipeline.age(background_guard=)``, ``pada age --background-guard M``).

With a ``saturation`` margin it also holds the colour of the head (face and hair, :func:`head_region`)
from growing more vivid: after the same blur, the strength of each pixel's colour (the length of its
(Cb, Cr) chroma) may exceed the input's by at most ``saturation``; beyond that the chroma is scaled
toward grey at the same brightness. Colour may fade (greying hair, paler lips) and change hue within
the input's strength, not intensify: the shipped v7e/v7f models, asked for old faces, paint the hair
orange and warm the skin (the smoothed chroma strength of hair and skin grows in 81–88 % of v7f's
sixty and eighty outputs), which the age network reads as old and a person as a colour cast. Default:
the model's (``PadaConfig.saturation_guard``: 0.01 for the shipped ``pada-demo64`` since v7g, 0 = off),
``AgingPipeline.age(saturation_guard=)``, ``pada age --saturation-guard M``.
"""

from __future__ import annotations

import math

import torch

from pada.aging.detail import head_region
from pada.errors import PadaError
from pada.evaluation.scores import (
    chroma_strength,
    from_luma_chroma,
    gaussian_blur,
    skin_mask,
    smooth_luma,
    to_luma_chroma,
)

#: the guards' blur, as a fraction of the side (the same as :func:`smooth_luma`'s default)
SIGMA = 2 / 64


class ToneGuard:
    """x̂0 projection (see module docstring) for the input face ``image`` (1, 3, H, W) in [-1, 1]: the skin's
    smoothed luma within ``margin`` of the input's (0 = not held) and, with ``background`` > 0, the
    smoothed colour outside the head within ``background``. ``image`` may also be a batch (B, 3, H, W) of
    references, one per row of the x̂0 it is applied to (training: ``LossConfig.train_guard`` holds each
    edited x̂0 near the same row's unedited one). With ``saturation`` > 0, the head's smoothed chroma
    strength at most ``saturation`` above the input's (module docstring)."""

    def __init__(self, image: torch.Tensor, margin: float, background: float = 0.0,
                 saturation: float = 0.0) -> None:
        if image.ndim != 4 or image.shape[1] != 3 or image.shape[-1] != image.shape[-2]:
            raise ValueError(f"ToneGuard needs square faces (B, 3, H, W), got {tuple(image.shape)}")
        for what, value in (("background", background), ("saturation", saturation)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{what} guard margin must be in [0, 1), got {value}")
        if not (0.0 < margin < 1.0 or (margin == 0.0 and (background > 0 or saturation > 0))):
            raise ValueError(f"tone guard margin must be in (0, 1), got {margin}")
        self.margin, self.background, self.saturation = float(margin), float(background), float(saturation)
        size = image.shape[-1]
        self.outside = 1.0 - head_region(size).to(image.device) if background > 0 else None
        self.colour = gaussian_blur(image.float(), SIGMA * size) if background > 0 else None
        self.head = head_region(size).to(image.device) if saturation > 0 else None
        self.strength = chroma_strength(image.float()) if saturation > 0 else None
        self.luma = smooth_luma(image.float())  # (B, 1, H, W), 0-1 scale
        hard = skin_mask(size, image.device)[None, None].expand(1, 3, size, size)
        self.mask = smooth_luma(hard * 2.0 - 1.0)  # the ellipse with a soft edge, (1, 1, H, W) in [0, 1]

    def __call__(self, x0: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        if self.margin > 0:
            d = smooth_luma(x0) - self.luma.to(x0.device)
            excess = d - d.clamp(-self.margin, self.margin)
            x0 = (x0 - 2.0 * excess * self.mask.to(x0.device)).clamp(-1.0, 1.0)  # luma 0-1 -> pixels [-1, 1]
        if self.background > 0:
            # per channel, on the 0-1 scale
            d = (gaussian_blur(x0, SIGMA * x0.shape[-1]) - self.colour.to(x0.device)) / 2.0
            excess = d - d.clamp(-self.background, self.background)
            x0 = (x0 - 2.0 * excess * self.outside.to(x0.device)).clamp(-1.0, 1.0)
        if self.saturation > 0:
            luma, chroma = to_luma_chroma(x0)
            allowed = self.strength.to(x0.device) + self.saturation
            keep = (allowed / chroma_strength(x0).clamp_min(1e-6)).clamp(max=1.0)
            keep = 1.0 - self.head.to(x0.device) * (1.0 - keep)  # 1 outside the head
            x0 = from_luma_chroma(luma, chroma * keep).clamp(-1.0, 1.0)
        return x0


def tone_margin(value, what: str = "tone guard") -> float:
    """A guard margin as a float in [0, 1) (0 = off); :class:`PadaError` naming ``what`` and the problem."""
    try:
        margin = float(value)
    except (TypeError, ValueError):
        raise PadaError(f"{what} must be a number in [0, 1), got {value!r}") from None
    if not (math.isfinite(margin) and 0.0 <= margin < 1.0):
        raise PadaError(f"{what} must be in [0, 1), got {margin:g}")
    return margin


def tone_guard(image: torch.Tensor, margin, background=0.0, saturation=0.0) -> ToneGuard | None:
    """The :class:`ToneGuard` of ``image`` (1, 3, H, W) at ``margin``, ``background`` and ``saturation``
    (each checked by :func:`tone_margin`); None when all are 0."""
    margin, background = tone_margin(margin), tone_margin(background, "background guard")
    saturation = tone_margin(saturation, "saturation guard")
    if margin > 0 or background > 0 or saturation > 0:
        return ToneGuard(image, margin, background, saturation)
    return None


__all__ = ["ToneGuard", "tone_guard", "tone_margin"]
