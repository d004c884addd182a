"""The one interface every vision-language backbone implements.

PADA works in a joint image-text space (the paper uses CLIP): ``e_img = E_I(x_ref)`` for the reference face
(§3.2.1, Eq. 5), ``e_txt = E_T(t_ref)`` for the age description (the prior ``N(e_txt, I)``, Eq. 7),
text-driven
sampling ``e_age = e_txt + eps * eta`` and the CLIP directional loss
``1 - cos(E_I(x_tar) - E_I(x_src), E_T(t_tar) - E_T(t_src))`` (§3.3). Everything downstream only needs
:meth:`VisionLanguageModel.encode_image` and :meth:`VisionLanguageModel.encode_text`; both return unit
vectors ("In practice, we normalize the features in CLIP latent space by their L2 norm", §3.3).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pada.errors import BadImageError
from pada.frozen import freeze


class VisionLanguageModel(nn.Module):
    """A frozen joint image-text embedding model.

    Subclasses implement :meth:`_encode_image` (unnormalised features from pada images) and
    :meth:`_encode_text`; this base class checks inputs, L2-normalises and freezes.

    Attributes:
        dim: size ``D`` of the joint space.
        name: the ``load_vl`` name that builds this model (e.g. ``"faceclip"``, ``"openclip:ViT-B-32"``).
    """

    dim: int
    name: str = "vl"

    def freeze(self) -> VisionLanguageModel:
        """Stop gradients to the weights and switch to eval mode (gradients still flow to the input image)."""
        return freeze(self)

    def train(self, mode: bool = True) -> VisionLanguageModel:
        # Frozen backbones stay in eval mode (no dropout / batch-norm updates) even inside a model that
        # is put in train mode, unless a trainer explicitly unfreezes them with ``unfreeze``.
        if getattr(self, "_frozen", True) and mode:
            return super().train(False)
        return super().train(mode)

    def unfreeze(self) -> VisionLanguageModel:
        """Allow training mode again (used only by trainers of the backbone itself)."""
        self._frozen = False
        return self

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    # -- the interface ---------------------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Embed pada images.

        Args:
            images: ``(B, 3, H, W)`` float RGB in ``[-1, 1]`` (pada's aligned faces, any square size);
                resizing and normalisation happen inside the graph, so gradients reach ``images``.
        Returns:
            ``(B, D)`` unit vectors.
        """
        if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise BadImageError(f"encode_image expects a (B, 3, H, W) tensor in [-1, 1], got {shape}")
        if not images.is_floating_point():
            raise BadImageError(f"encode_image expects float images in [-1, 1], got dtype {images.dtype}")
        return F.normalize(self._encode_image(images).float(), dim=-1)

    def encode_text(self, texts: Sequence[str] | str) -> torch.Tensor:
        """Embed texts.

        Args:
            texts: a list of ``B`` strings (a single string is treated as a list of one).
        Returns:
            ``(B, D)`` unit vectors on :attr:`device`.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("encode_text expects a non-empty list of strings")
        return F.normalize(self._encode_text(texts).float(), dim=-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_image(images)

    # -- to implement ----------------------------------------------------------------------------------
    def _encode_image(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _encode_text(self, texts: list[str]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def resize_for_encoder(images: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float],
                       mode: str = "bicubic") -> torch.Tensor:
    """Differentiable pada image -> encoder input.

    ``[-1, 1]`` -> ``[0, 1]``, resize of the shorter side to ``size`` + centre crop (aligned faces are square,
    so this is a plain resize), then ``(x - mean) / std`` per channel.

    Args:
        images: ``(B, 3, H, W)`` in ``[-1, 1]``.
    Returns:
        ``(B, 3, size, size)``.
    """
    x = (images + 1.0) * 0.5
    h, w = x.shape[-2:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode=mode, align_corners=False, antialias=(nh < h or nw < w))
        top, left = (nh - size) // 2, (nw - size) // 2
        x = x[..., top:top + size, left:left + size]
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s
