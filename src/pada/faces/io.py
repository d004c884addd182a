"""Robust image loading and saving, and the uint8 <-> tensor conversions.

Everything a user hands to pada goes through :func:`load_image`, which turns any readable photo into one
convention -- a ``uint8`` numpy array ``(H, W, 3)`` in RGB -- or raises a one-line
:class:`~pada.errors.BadImageError` that names the file and the problem. It never lets a decoder traceback
through.

Tensors follow the project convention (docs/ARCHITECTURE.md): ``float32`` ``(B, 3, H, W)``, RGB, in
``[-1, 1]``; :func:`to_tensor` and :func:`to_uint8` convert between the two and round-trip exactly.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pada.errors import BadImageError, PadaError
from pada.outputs import atomic_open

if TYPE_CHECKING:  # torch is imported lazily: `pada align` does not need it
    import torch

#: Image files that folder scans pick up (any other file given explicitly is still tried).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

#: Default cap on the pixel count of an input image (decompression-bomb guard), 100 megapixels.
MAX_PIXELS = 100_000_000

#: Default smallest accepted side length in pixels.
MIN_SIDE = 32

_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                 ".tif": "TIFF", ".tiff": "TIFF"}
#: Extensions :func:`save_image` can write.
IMAGE_SAVE_EXTENSIONS = tuple(_SAVE_FORMATS)

# Pillow's own bomb guard reads a module global; we lift it while opening a file and apply our own cap
# instead, so the limit is a per-call argument. The lock keeps concurrent loads (web app) consistent.
_PIL_LIMIT_LOCK = threading.Lock()


def _name(path: str | os.PathLike) -> str:
    return os.fspath(path)


def load_image(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = MAX_PIXELS,
    min_side: int = MIN_SIDE,
) -> np.ndarray:
    """Read an image file as a ``uint8`` array ``(H, W, 3)`` in RGB.

    Handles every format Pillow reads (JPEG, PNG, WebP, BMP, TIFF, GIF, ...); for multi-frame files the
    first frame is used. Conversions applied:

    * EXIF orientation is applied (a phone photo stored sideways comes out upright);
    * greyscale (``1``, ``L``, ``I``, ``I;16``, ``F``) is repeated to three channels;
    * **images with transparency (RGBA, LA, palette with a transparent colour) are composited on a white
      background** -- transparent pixels become white;
    * CMYK, YCbCr and other colour modes are converted to RGB by Pillow;
    * 16-bit images are reduced to 8 bits (``value >> 8``).

    Args:
        path: image file.
        max_pixels: reject images with more than this many pixels (decompression-bomb guard; the default
            is 100 MP). ``None`` allows any size. Very large but accepted images are returned at full
            size; the face detector shrinks them for detection itself.
        min_side: reject images whose shorter side is below this many pixels.

    Returns:
        ``np.ndarray`` of shape ``(H, W, 3)``, dtype ``uint8``, RGB.

    Raises:
        BadImageError: one line naming the file and the problem (missing, a directory, empty, not an image,
            corrupt or truncated, too small, too large).
    """
    name = _name(path)
    p = Path(path)
    if p.is_dir():
        raise BadImageError(f"{name}: is a directory, not an image file")
    if not p.exists():
        raise BadImageError(f"{name}: file not found")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise BadImageError(f"{name}: cannot read file ({exc.strerror or exc})") from None
    if size == 0:
        raise BadImageError(f"{name}: empty file (0 bytes)")
    try:
        # Pillow warns (UserWarning) about recoverable oddities such as corrupt EXIF; they must not leak
        # onto the CLI's stderr, whose one-line-per-problem promise they would break.
        with _PIL_LIMIT_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            old_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                im = Image.open(p)
            finally:
                Image.MAX_IMAGE_PIXELS = old_limit
        with im, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise BadImageError(
                    f"{name}: image is {w}x{h} ({w * h / 1e6:.0f} MP), over the limit of "
                    f"{max_pixels / 1e6:.0f} MP (decompression-bomb guard; allow it with max_pixels)"
                )
            if min(w, h) < min_side:
                raise BadImageError(f"{name}: image is only {w}x{h} pixels; at least {min_side} px per side "
                                    "is needed")
            im.load()  # decode now so corrupt / truncated data fails here
            im = _apply_exif(im)
            arr = _to_rgb_uint8(im)
            if not arr.flags.writeable:  # Pillow hands out read-only buffers; callers may edit in place
                arr = arr.copy()
    except PadaError:
        raise
    except UnidentifiedImageError:
        raise BadImageError(f"{name}: not an image file (or a format Pillow cannot read)") from None
    except MemoryError:
        raise BadImageError(f"{name}: not enough memory to decode this image") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError,
            AttributeError, ZeroDivisionError, RuntimeError) as exc:
        # Pillow's decoders signal broken data with many exception types.
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadImageError(f"{name}: corrupt or truncated image ({detail})") from None
    return arr


def _apply_exif(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a malformed EXIF block is ignored rather than fatal."""
    try:
        out = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - broken EXIF must not make a good image unreadable
        return im
    return out if out is not None else im


def _to_rgb_uint8(im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> ``uint8`` ``(H, W, 3)`` RGB (see :func:`load_image` for the rules)."""
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    elif mode == "PA":
        im = im.convert("RGBA")
        mode = "RGBA"
    elif mode in ("L", "1") and "transparency" in im.info:
        im = im.convert("LA")
        mode = "LA"
    elif mode == "RGB" and "transparency" in im.info:
        im = im.convert("RGBA")
        mode = "RGBA"

    if mode in ("RGBA", "RGBa", "LA", "La"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)  # composite on white
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))
    if mode in ("L", "1"):
        g = np.asarray(im.convert("L"), dtype=np.uint8)
        return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=2))
    if mode.startswith("I;16") or mode == "I":
        g = np.asarray(im, dtype=np.int64) if mode == "I" else np.asarray(im).astype(np.int64)
        if mode == "I" and g.max(initial=0) > 65535:  # real 32-bit data: scale by its own range
            g = g * 255 // max(int(g.max()), 1)
        else:
            g = g >> 8
        g = np.clip(g, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=2))
    if mode == "F":
        f = np.asarray(im, dtype=np.float32)
        f = np.nan_to_num(f)
        scale = 255.0 if f.max(initial=0.0) <= 1.0 else 1.0
        g = np.clip(np.rint(f * scale), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=2))
    # CMYK, YCbCr, LAB, HSV, RGBX, ...: Pillow's own conversion.
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def save_image(path: str | os.PathLike, array: np.ndarray, *, quality: int = 95) -> Path:
    """Write a ``uint8`` ``(H, W, 3)`` RGB (or ``(H, W)`` grey) array atomically.

    The file is written to a temporary name in the same folder and renamed into place
    (:func:`pada.outputs.atomic_open`), so an interrupted run never leaves a half-written image; it gets the
    umask's mode; a write error is one :class:`PadaError` line. Parent folders are created. The format
    follows the extension (``.png``, ``.jpg``, ``.webp``, ``.bmp``, ``.tif``).
    """
    p = Path(path)
    fmt = _SAVE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise PadaError(f"{p}: unknown image extension {p.suffix!r}; use one of {', '.join(_SAVE_FORMATS)}")
    arr = np.asarray(array)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"save_image expects uint8 (H, W, 3) or (H, W), got {arr.dtype} {arr.shape}")
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    with atomic_open(p, "wb") as fh:  # temp file + rename, umask mode, one-line OSError
        Image.fromarray(np.ascontiguousarray(arr)).save(fh, format=fmt, **kwargs)
    return p


def to_tensor(images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """``uint8`` RGB image(s) -> ``float32`` tensor ``(B, 3, H, W)`` in ``[-1, 1]`` (``x / 127.5 - 1``).

    Args:
        images: one ``(H, W, 3)`` array, a ``(B, H, W, 3)`` array, or a list of equally sized
            ``(H, W, 3)`` arrays.
    """
    import torch

    if isinstance(images, np.ndarray):
        arr = images[None] if images.ndim == 3 else images
    else:
        arrs = [np.asarray(a) for a in images]
        if not arrs:
            raise ValueError("to_tensor got an empty list")
        shapes = {a.shape for a in arrs}
        if len(shapes) != 1:
            raise ValueError(f"to_tensor needs images of one size, got {sorted(shapes)}")
        arr = np.stack(arrs)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"to_tensor expects uint8 (H, W, 3) images, got {arr.dtype} {arr.shape}")
    if not (arr.flags.writeable and arr.flags.c_contiguous):
        arr = np.array(arr)  # torch.from_numpy warns on read-only arrays
    t = torch.from_numpy(arr).permute(0, 3, 1, 2).float()
    return t / 127.5 - 1.0


def to_uint8(tensor: torch.Tensor) -> np.ndarray | list[np.ndarray]:
    """Tensor in ``[-1, 1]`` -> ``uint8`` RGB ``(H, W, 3)`` array(s); values outside are clipped.

    Args:
        tensor: ``(B, 3, H, W)`` (returns a list of ``B`` arrays) or ``(3, H, W)`` (returns one array).
    """
    import torch

    t = tensor.detach()
    single = t.ndim == 3
    if single:
        t = t[None]
    if t.ndim != 4 or t.shape[1] != 3:
        raise ValueError(f"to_uint8 expects (B, 3, H, W) or (3, H, W), got {tuple(tensor.shape)}")
    u = ((t.float().cpu() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    out = [np.ascontiguousarray(x.permute(1, 2, 0).numpy()) for x in u]
    return out[0] if single else out
