"""Input adapters: differentiable maps from pada's aligned faces to each network's expected input.

Every adapter takes ``(B, 3, H, W)`` RGB in ``[-1, 1]`` (an FFHQ-aligned face, any size) and returns the
network input. ``crop="ffhq"`` applies the fixed crop of :mod:`pada.critics.geometry`; ``crop="none"``
assumes the image already is the network's own crop (for instance a dlib chip) and only resizes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pada.critics.geometry import affine_crop, arcface_matrix, dlib_chip_matrix

CROPS = ("ffhq", "none")


def _check_crop(crop: str) -> None:
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize to ``size x size``, antialiased when shrinking (no-op when already that size)."""
    if x.shape[-2:] == (size, size):
        return x
    shrink = x.shape[-1] > size or x.shape[-2] > size
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


class AffineCropAdapter(nn.Module):
    """Crop along a fixed affine, then map ``[-1, 1]`` RGB to ``(byte - mean) * scale`` in ``order``.

    ``matrix``: 2x3, output pixel -> normalised FFHQ coordinates (see :mod:`pada.critics.geometry`).
    The result is ``((x + 1) * 127.5 - mean[c]) * scale`` with channels in ``order`` ("RGB" or "BGR").
    """

    def __init__(
        self,
        matrix: np.ndarray | None,
        size: int,
        mean=(0.0, 0.0, 0.0),
        scale: float = 1.0,
        order: str = "RGB",
    ):
        super().__init__()
        if order not in ("RGB", "BGR"):
            raise ValueError(f"order must be 'RGB' or 'BGR', got {order!r}")
        self.size = size
        self.order = order
        self.scale = float(scale)
        self.matrix = None if matrix is None else np.asarray(matrix, dtype=np.float64)
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )

    def crop(self, images: torch.Tensor) -> torch.Tensor:
        """The crop alone, still RGB in ``[-1, 1]``: ``(B, 3, size, size)``."""
        if self.matrix is None:
            return resize(images, self.size)
        return affine_crop(images, self.matrix, self.size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.crop(images)
        if self.order == "BGR":
            x = x.flip(1)
        return ((x + 1.0) * 127.5 - self.mean.to(x.dtype)) * self.scale


def dlib_chip_adapter(size: int, crop: str = "ffhq") -> AffineCropAdapter:
    """dlib face chip (padding 0.2) of an aligned face; RGB ``(byte - dlib means) / 256``."""
    _check_crop(crop)
    matrix = dlib_chip_matrix(size, 0.2) if crop == "ffhq" else None
    return AffineCropAdapter(matrix, size, mean=(122.782, 117.001, 104.298), scale=1 / 256, order="RGB")


def arcface_adapter(size: int = 112, crop: str = "ffhq") -> AffineCropAdapter:
    """ArcFace-template 112x112 crop, RGB bytes ``0..255`` (SFace normalises inside its graph)."""
    _check_crop(crop)
    matrix = arcface_matrix(size) if crop == "ffhq" else None
    return AffineCropAdapter(matrix, size, order="RGB")
