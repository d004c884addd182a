"""The work behind the web app, independent of the web framework.

:class:`AgingService` takes an uploaded photo (bytes), validates it with :func:`pada.faces.io.load_image`,
detects and aligns the face (or takes an already aligned crop), asks the aging pipeline for ``N`` outputs
per target and returns a PNG grid and an animated GIF.

The pipeline is any object with

* ``image_size: int`` — side of the aligned face it works on;
* ``age(image, target, *, n, seed, high_level, low_level) -> Tensor (n, 3, S, S)`` — ``image`` is one
  aligned face ``(1, 3, S, S)`` in [-1, 1]; ``target`` a text or a reference face ``(1, 3, S, S)``.

:func:`pada.app.backend.pipeline_backend` adapts :class:`pada.aging.pipeline.AgingPipeline` to it.

Concurrency: requests may arrive on many threads. The service keeps no per-request state on itself;
randomness comes from the request's seed (the pipeline builds its own ``torch.Generator``), and a lock
serialises calls into the pipeline so one model instance is never run by two threads at once (CPU torch
would only thrash; a GPU has one stream anyway).
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from pada.data.groups import AGE_GROUPS, GENDERS, description
from pada.errors import BadImageError, PadaError

GenderFn = Callable[[torch.Tensor], str]


class AgingBackend(Protocol):
    image_size: int

    def age(self, image: torch.Tensor, target: str | torch.Tensor, *, n: int, seed: int,
            high_level: bool, low_level: bool) -> torch.Tensor: ...


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
    gender: str = "auto"  # for the lifespan sweep's descriptions: female, male or auto
    aligned: bool = False


@dataclass
class AgingResult:
    png: bytes
    gif: bytes
    labels: list[str]  # one per row of the grid
    n: int


@dataclass(frozen=True)
class ServiceLimits:
    max_n: int = 8
    max_images: int = 48  # rows x n
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


def _tile(rows: list[torch.Tensor], labels: list[str], source: torch.Tensor) -> np.ndarray:
    """Grid image: one row per target, the source face first, then the outputs. uint8 (H, W, 3)."""
    from pada.faces.io import to_uint8

    s = source.shape[-1]
    label_w = 0 if len(rows) == 1 and not labels[0] else 150
    n = max(r.shape[0] for r in rows)
    pad = 4
    h = len(rows) * (s + pad) + pad
    w = label_w + (n + 1) * (s + pad) + pad
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    src = Image.fromarray(to_uint8(source[0]))
    for i, (row, lab) in enumerate(zip(rows, labels)):
        y = pad + i * (s + pad)
        if label_w:
            draw.text((pad, y + s // 2 - 6), lab[:24], fill=(0, 0, 0))
        canvas.paste(src, (label_w + pad, y))
        for j, im in enumerate(to_uint8(row)):
            canvas.paste(Image.fromarray(im), (label_w + pad + (j + 1) * (s + pad), y))
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

    def __init__(self, pipeline: AgingBackend, limits: ServiceLimits | None = None,
                 gender_fn: GenderFn | None = None) -> None:
        self.pipeline = pipeline
        self.limits = limits or ServiceLimits()
        self._gender_fn = gender_fn
        self._lock = threading.Lock()  # guards the pipeline (and lazy creation of the gender critic)

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
        rows = len(AGE_GROUPS) if lifespan else 1
        if rows * n > lim.max_images:
            raise PadaError(f"{rows} rows x {n} outputs is over the limit of {lim.max_images} images; "
                            "lower N")
        return AgingRequest(
            image=image[0], image_name=image[1] or "photo", target=text or None,
            reference=reference[0] if has_ref else None,
            reference_name=(reference[1] or "reference") if has_ref else "reference",
            n=n, seed=seed, high_level=_bool("high_level", True), low_level=_bool("low_level", True),
            lifespan=lifespan, gender=gender, aligned=_bool("aligned", False))

    # -------------------------------------------------------------------------------- running
    def _gender(self, face: torch.Tensor) -> str:
        if self._gender_fn is None:
            from pada.critics.registry import load_critic

            critic = load_critic("dlib-gender")

            def fn(x: torch.Tensor) -> str:
                with torch.inference_mode():
                    p = critic(x)
                return GENDERS[int(p[0].argmax())]

            self._gender_fn = fn
        return self._gender_fn(face)

    def run(self, req: AgingRequest) -> AgingResult:
        """Decode, align, age and render one request. Raises :class:`PadaError` on bad input."""
        lim = self.limits
        size = int(self.pipeline.image_size)
        face = _to_face_tensor(_decode_upload(req.image, req.image_name, lim.max_pixels), size,
                               req.aligned, os.path.basename(req.image_name))
        ref = None
        if req.reference is not None:
            ref = _to_face_tensor(_decode_upload(req.reference, req.reference_name, lim.max_pixels), size,
                                  req.aligned, os.path.basename(req.reference_name))
        kw = dict(n=req.n, seed=req.seed, high_level=req.high_level, low_level=req.low_level)
        rows: list[torch.Tensor] = []
        labels: list[str] = []
        with self._lock:
            if req.lifespan:
                gender = req.gender if req.gender != "auto" else self._gender(face)
                for g in AGE_GROUPS:
                    rows.append(self._age(face, description(g, gender), **kw))
                    labels.append(g.name)
            else:
                target = ref if ref is not None else req.target
                rows.append(self._age(face, target, **kw))
                labels.append("" if ref is None else "reference")
        grid = _tile(rows, labels, face)
        from pada.faces.io import to_uint8

        if req.lifespan:  # one frame per age group (first output of each)
            frames = [to_uint8(r[0]) for r in rows]
        else:  # the source, then each of the N outputs
            frames = [to_uint8(face[0])] + list(to_uint8(rows[0]))
        return AgingResult(png=_png(grid), gif=_gif(frames), labels=labels, n=req.n)

    def _age(self, face: torch.Tensor, target, **kw) -> torch.Tensor:
        out = self.pipeline.age(face, target, **kw)
        if out.ndim != 4 or out.shape[0] != kw["n"] or out.shape[1] != 3:
            raise RuntimeError(f"pipeline returned {tuple(out.shape)}, expected ({kw['n']}, 3, S, S)")
        return out.detach().float().cpu().clamp(-1, 1)
