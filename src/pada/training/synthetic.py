"""Synthetic coloured-blob images: a deterministic stand-in for a face folder in tests and smoke runs.

Image ``i`` of ``BlobImages(n, size, seed)`` depends only on ``(seed, i)``: a smooth two-colour
background gradient plus 2-4 soft elliptical blobs of random colour, position, size and orientation.
Smooth, varied and small, so a tiny DiffAE learns them in minutes on a CPU.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch.utils.data import Dataset


def blob_image(index: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Image ``index`` of the blob family ``seed``: float32 ``(3, size, size)`` in ``[-1, 1]``."""
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(index)) % (2**63))
    u = torch.linspace(-1.0, 1.0, size)
    yy, xx = torch.meshgrid(u, u, indexing="ij")  # (S, S)
    # background: linear gradient between two colours along a random direction
    c0, c1 = torch.rand(3, generator=g) * 1.6 - 0.8, torch.rand(3, generator=g) * 1.6 - 0.8
    ang = float(torch.rand((), generator=g)) * 2 * math.pi
    w = ((math.cos(ang) * xx + math.sin(ang) * yy) * 0.5 + 0.5).clamp(0, 1)  # (S, S)
    img = c0[:, None, None] * (1 - w) + c1[:, None, None] * w  # (3, S, S)
    for _ in range(int(torch.randint(2, 5, (), generator=g))):
        cx, cy = (torch.rand(2, generator=g) * 1.4 - 0.7).tolist()
        rx, ry = (torch.rand(2, generator=g) * 0.35 + 0.15).tolist()
        th = float(torch.rand((), generator=g)) * math.pi
        col = torch.rand(3, generator=g) * 2 - 1
        dx, dy = xx - cx, yy - cy
        a = (math.cos(th) * dx + math.sin(th) * dy) / rx
        b = (-math.sin(th) * dx + math.cos(th) * dy) / ry
        alpha = torch.sigmoid((1.0 - (a * a + b * b)) * 6.0)  # soft edge
        img = img * (1 - alpha) + col[:, None, None] * alpha
    return img.clamp(-1, 1).float()


class BlobImages(Dataset):
    """``n`` blob images ``offset .. offset+n-1`` of family ``seed`` as ``{"image": (3,S,S), "index"}``.

    Use a different ``offset`` for held-out images (e.g. ``offset=n`` for the ``n`` after the training set).
    Images are generated once and kept in memory (``n * 3 * S * S * 4`` bytes).
    """

    def __init__(self, n: int = 512, size: int = 32, seed: int = 0, offset: int = 0):
        self.n, self.size, self.seed, self.offset = int(n), int(size), int(seed), int(offset)
        self.images = torch.stack([blob_image(offset + i, size, seed) for i in range(n)]) if n else \
            torch.empty(0, 3, size, size)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "index": torch.tensor(i)}

    def fingerprint(self) -> str:
        """sha256 of the spec (the images are a pure function of it)."""
        spec = f"synthetic:blobs n={self.n} size={self.size} seed={self.seed} offset={self.offset}"
        return hashlib.sha256(spec.encode()).hexdigest()
