"""Grids of face images: the one grid writer (plain, or with a title per row and a caption per tile).

* :func:`make_grid` / :func:`save_grid` -- tensors ``(N, 3, H, W)`` in [-1, 1] tiled ``nrow`` per row with
  white padding (training sample grids, evaluation figures, lifespan strips);
* :func:`labelled_grid` -- uint8 tiles with a title line per row and a caption under each tile (``pada age``,
  the web app).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> torch.Tensor:
    """Tile images (N, 3, H, W) in [-1, 1] into one (3, H', W') image, ``nrow`` per row, white padding."""
    import torch

    n, c, h, w = images.shape
    nrow = max(1, min(nrow or n, n))
    rows = -(-n // nrow)
    grid = torch.ones((c, rows * (h + padding) + padding, nrow * (w + padding) + padding))
    for k in range(n):
        r, col = divmod(k, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top:top + h, left:left + w] = images[k].float().cpu().clamp(-1, 1)
    return grid


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, padding: int = 2) -> Path:
    """Write images (N, 3, H, W) in [-1, 1] as one grid image (``nrow`` per row; default: one row)."""
    from pada.faces.io import save_image, to_uint8

    return save_image(path, to_uint8(make_grid(images, nrow, padding)))


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def labelled_grid(rows: Sequence[tuple[str, Sequence[np.ndarray], Sequence[str]]], tile: int | None = None,
                  pad: int = 6) -> np.ndarray:
    """A figure: per row a title line, then its tiles with a caption under each. ``rows``: (title,
    tiles uint8 (S, S, 3), captions). Tiles are shown at ``tile`` px (default: their size, at least 128;
    smaller faces are enlarged for viewing only). Returns uint8 (H, W, 3), white background."""
    from PIL import Image, ImageDraw

    s = max(im.shape[0] for _, tiles, _ in rows for im in tiles)
    tile = int(tile or max(s, 128))
    fs = max(11, tile // 10)
    font, title_font = _font(fs), _font(fs + 1)
    title_h, cap_h = fs + 8, fs + 6
    ncol = max(len(tiles) for _, tiles, _ in rows)
    width = pad + ncol * (tile + pad)
    row_h = title_h + tile + cap_h + pad
    canvas = Image.new("RGB", (width, pad + len(rows) * row_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (title, tiles, captions) in enumerate(rows):
        top = pad + r * row_h
        draw.text((pad, top + 2), _fit(draw, title, title_font, width - 2 * pad), fill=(0, 0, 0),
                  font=title_font)
        for c, im in enumerate(tiles):
            left = pad + c * (tile + pad)
            pim = Image.fromarray(im)
            if pim.size != (tile, tile):
                pim = pim.resize((tile, tile), Image.Resampling.BICUBIC)
            canvas.paste(pim, (left, top + title_h))
            cap = captions[c] if c < len(captions) else ""
            draw.text((left, top + title_h + tile + 2), _fit(draw, cap, font, tile), fill=(60, 60, 60),
                      font=font)
    return np.asarray(canvas)


__all__ = ["labelled_grid", "make_grid", "save_grid"]
