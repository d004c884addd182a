"""The work behind the web app, independent of the web framework.

:class:`AgingService` takes an uploaded photo (bytes), validates it with :func:`pada.faces.io.load_image`,
detects and aligns the face (or takes an already aligned crop), asks the aging pipeline for ``N`` outputs
and returns a PNG grid and an animated GIF.

The pipeline is a :class:`pada.aging.pipeline.AgingPipeline` or anything with the same methods:

* ``age(image (1,3,S,S), *, text=None, ref=None, n, seed, high_diversity, low_diversity)`` returning an
  object with ``images (n, 3, S, S)`` in [-1, 1];
* ``lifespan(image, *, gender=None)`` returning an object with ``images (F, 3, S, S)`` and ``labels``
  (one string per frame, empty between anchors) — used when "lifespan" is ticked;
* the face size ``S`` is read from ``image_size`` on the pipeline, or from its ``diffae`` (``image_size``
  or ``cfg.image_size``).

Concurrency: requests may arrive on many threads. The service keeps no per-request state on itself;
randomness comes from the request's seed (the pipeline draws each output from its own
``torch.Generator``), and a lock serialises calls into the pipeline so one model instance is never run by
two threads at once (CPU torch would only thrash; a GPU runs one stream anyway).
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pada.data.groups import GENDERS
from pada.errors import BadImageError, PadaError


def image_size_of(pipeline: Any) -> int:
    """Side of the aligned faces ``pipeline`` works on."""
    for obj in (pipeline, getattr(pipeline, "diffae", None)):
        if obj is None:
            continue
        if isinstance(getattr(obj, "image_size", None), int):
            return obj.image_size
        cfg = getattr(obj, "cfg", None) or getattr(obj, "config", None)
        if isinstance(getattr(cfg, "image_size", None), int):
            return cfg.image_size
    raise TypeError("cannot tell the pipeline's image size (no image_size on it or on its diffae)")


@dataclass(frozen=True)
class AgingRequest:
    """One validated request. ``target`` is a text or None when ``reference`` (bytes) is given."""

    image: bytes
    image_name: str
    target: str | None = None
    reference: bytes | None = None
    reference_name: str = "reference"
    n: int = 4
    seed: int = 0
    high_level: bool = True
    low_level: bool = True
    lifespan: bool = False
    gender: str = "auto"  # lifespan descriptions: female, male, or auto (the pipeline infers it)
    aligned: bool = False


@dataclass
class AgingResult:
    png: bytes
    gif: bytes
    labels: list[str]  # one per output column of the grid (after the source)
    n: int


@dataclass(frozen=True)
class ServiceLimits:
    max_n: int = 8
    max_text: int = 200
    max_pixels: int = 40_000_000


def _decode_upload(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Bytes of an uploaded file -> uint8 (H, W, 3), via pada.faces.io (errors name the upload)."""
    from pada.faces.io import load_image

    safe = os.path.basename(name or "upload") or "upload"
    if not data:
        raise BadImageError(f"{safe}: empty file (0 bytes)")
    fd, tmp = tempfile.mkstemp(prefix="pada-app-", suffix=os.path.splitext(safe)[1][:8])
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            return load_image(tmp, max_pixels=max_pixels)
        except PadaError as exc:
            raise type(exc)(str(exc).replace(tmp, safe)) from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _to_face_tensor(img: np.ndarray, size: int, aligned: bool, name: str) -> torch.Tensor:
    """Aligned face ``(1, 3, size, size)`` in [-1, 1] from a photo (detect + align) or an aligned crop."""
    from pada.faces.io import to_tensor

    if not aligned:
        from pada.errors import NoFaceError
        from pada.faces.align import align_image

        try:
            crop = align_image(img, size=size)[0].image
        except NoFaceError:
            raise NoFaceError(f"{name}: no face found (upload a photo with a visible face, or tick "
                              "'already aligned' for an FFHQ-aligned crop)") from None
        return to_tensor(np.array(crop))
    x = to_tensor(np.array(img))  # a writable copy (decoded arrays may be read-only views)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return x.clamp(-1, 1)


def _tile(images: torch.Tensor, source: torch.Tensor, pad: int = 4) -> np.ndarray:
    """One-row grid: the source face, then ``images (K, 3, S, S)``; white padding. uint8 (H, W, 3)."""
    from pada.faces.io import to_uint8

    s = source.shape[-1]
    k = images.shape[0]
    canvas = Image.new("RGB", ((k + 1) * (s + pad) + pad, s + 2 * pad), (255, 255, 255))
    for j, im in enumerate([to_uint8(source[0])] + list(to_uint8(images))):
        canvas.paste(Image.fromarray(im), (pad + j * (s + pad), pad))
    return np.asarray(canvas)


def _gif(frames: list[np.ndarray], ms: int = 600) -> bytes:
    ims = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=ms, loop=0)
    return buf.getvalue()


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


class AgingService:
    """Thread-safe request handler around one pipeline (see the module docstring)."""

    def __init__(self, pipeline: Any, limits: ServiceLimits | None = None) -> None:
        self.pipeline = pipeline
        self.image_size = image_size_of(pipeline)
        self.limits = limits or ServiceLimits()
        self._lock = threading.Lock()  # one request at a time inside the pipeline

    # -------------------------------------------------------------------------------- validation
    def parse(self, form: dict[str, Any], image: tuple[bytes, str] | None,
              reference: tuple[bytes, str] | None) -> AgingRequest:
        """Build a request from form fields; bad values raise a one-line :class:`PadaError`."""
        lim = self.limits
        if image is None or not image[0]:
            raise PadaError("no photo uploaded: choose an image file")

        def _int(key: str, default: int, lo: int, hi: int) -> int:
            raw = str(form.get(key, "") or "").strip()
            if not raw:
                return default
            try:
                v = int(raw)
            except ValueError:
                raise PadaError(f"{key} must be a whole number, got {raw[:20]!r}") from None
            if not lo <= v <= hi:
                raise PadaError(f"{key} must be between {lo} and {hi}, got {v}")
            return v

        def _bool(key: str, default: bool) -> bool:
            raw = str(form.get(key, "") or "").strip().lower()
            if not raw:
                return default
            if raw in ("1", "on", "true", "yes"):
                return True
            if raw in ("0", "off", "false", "no"):
                return False
            raise PadaError(f"{key} must be on or off, got {raw[:20]!r}")

        n = _int("n", 4, 1, lim.max_n)
        seed = _int("seed", 0, 0, 2**31 - 1)
        lifespan = _bool("lifespan", False)
        text = str(form.get("target", "") or "").strip()
        has_ref = reference is not None and bool(reference[0])
        if len(text) > lim.max_text:
            raise PadaError(f"target description is longer than {lim.max_text} characters")
        if not lifespan and not text and not has_ref:
            raise PadaError("give a target: type a description (e.g. \"man's face in his sixties\"), "
                            "upload a reference photo, or tick lifespan")
        gender = str(form.get("gender", "auto") or "auto").strip().lower()
        if gender not in (*GENDERS, "auto"):
            raise PadaError(f"gender must be female, male or auto, got {gender[:20]!r}")
        return AgingRequest(
            image=image[0], image_name=image[1] or "photo", target=text or None,
            reference=reference[0] if has_ref else None,
            reference_name=(reference[1] or "reference") if has_ref else "reference",
            n=n, seed=seed, high_level=_bool("high_level", True), low_level=_bool("low_level", True),
            lifespan=lifespan, gender=gender, aligned=_bool("aligned", False))

    # -------------------------------------------------------------------------------- running
    def run(self, req: AgingRequest) -> AgingResult:
        """Decode, align, age and render one request. Raises :class:`PadaError` on bad input."""
        lim = self.limits
        size = self.image_size
        face = _to_face_tensor(_decode_upload(req.image, req.image_name, lim.max_pixels), size,
                               req.aligned, os.path.basename(req.image_name))
        ref = None
        if req.reference is not None:
            ref = _to_face_tensor(_decode_upload(req.reference, req.reference_name, lim.max_pixels), size,
                                  req.aligned, os.path.basename(req.reference_name))
        rows: list[torch.Tensor] = []
        labels: list[str] = []
        with self._lock:
            if req.lifespan:  # the pipeline's smooth sweep from child to old (PAE mean, inverted x_T)
                res = self.pipeline.lifespan(face, gender=None if req.gender == "auto" else req.gender)
                frames = res.images.detach().float().cpu().clamp(-1, 1)
                anchors = [i for i, lab in enumerate(res.labels) if lab] or list(range(frames.shape[0]))
                rows = [frames[anchors]]
                labels = [res.labels[i] or str(i) for i in anchors] if res.labels else []
            else:
                res = self.pipeline.age(face, text=req.target, ref=ref, n=req.n,
                                        seed=req.seed, high_diversity=req.high_level,
                                        low_diversity=req.low_level)
                out = res.images
                if out.ndim != 4 or out.shape[0] != req.n or out.shape[1] != 3:
                    raise RuntimeError(f"pipeline returned {tuple(out.shape)}, expected ({req.n}, 3, S, S)")
                rows = [out.detach().float().cpu().clamp(-1, 1)]
                labels = [f"{req.target or 'reference'} #{i}" for i in range(req.n)]
        grid = _tile(rows[0], face)
        from pada.faces.io import to_uint8

        if req.lifespan:  # every frame of the sweep
            gif_frames = list(to_uint8(frames))
        else:  # the source, then each of the N outputs
            gif_frames = [to_uint8(face[0])] + list(to_uint8(rows[0]))
        return AgingResult(png=_png(grid), gif=_gif(gif_frames), labels=labels, n=req.n)
