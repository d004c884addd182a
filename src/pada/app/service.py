"""The work behind the web app, independent of the web framework.

:class:`AgingService` takes an uploaded photo (bytes), validates it with :func:`pada.faces.io.load_image`,
detects and aligns the face (or takes an already aligned crop), asks the aging pipeline for ``N`` outputs
and returns a PNG grid and an animated GIF.

The pipeline is a :class:`pada.aging.pipeline.AgingPipeline` or anything with the same methods:

* ``age(image (1,3,S,S), *, text=None, ref=None, n, seed, high_diversity, low_diversity)`` returning an
  object with ``images (n, 3, S, S)`` in [-1, 1];
* ``infer_gender(image)`` -> ``"female"`` / ``"male"`` (used to turn a target age into text when the
  request's gender is ``auto``);
* ``lifespan(image, *, gender=None)`` returning an object with ``images (F, 3, S, S)`` and ``labels``
  (one string per frame, empty between anchors) — used when "lifespan" is ticked;
* the face size ``S`` is read from ``image_size`` on the pipeline, or from its ``diffae`` (``image_size``
  or ``cfg.image_size``).

Concurrency and memory: requests may arrive on many threads. The service keeps no per-request state on
itself; randomness comes from the request's seed (the pipeline draws each output from its own
``torch.Generator``). A whole job -- decoding, detection, aging, paste-back, encoding -- runs under one
lock, so one model instance is never run by two threads at once and at most one decoded photo is in memory
at a time; at most ``max_queue`` jobs are admitted (running or waiting, :meth:`AgingService.admit`), the
next one gets :class:`ServiceBusy` (HTTP 503 with Retry-After). After each job the memory it used is
handed back to the operating system (:func:`release_memory`).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import os
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from pada.data.groups import GENDERS
from pada.deprecation import renamed
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
    low_level: bool = False
    lifespan: bool = False
    gender: str = "auto"  # lifespan / age descriptions: female, male, or auto (the pipeline infers it)
    ages: tuple[float, ...] = ()  # target ages (each one grid row)
    paste_back: bool = False  # also return the whole photo with the aged face blended in
    aligned: bool = False


@dataclass
class AgingResponse:
    """What the app sends back for one :class:`AgingRequest` (called ``AgingResult`` before; that name still
    works here with a DeprecationWarning; the pipeline's result is :class:`pada.aging.pipeline.AgingResult`).

    ``png``: the labelled grid; ``gif``: the animation; ``labels``: one caption per result;
    ``images``: (PNG bytes, caption) per result face; ``photos``: (PNG bytes, caption) per whole photo
    (paste-back)."""

    png: bytes
    gif: bytes
    labels: list[str]
    n: int
    images: list[tuple[bytes, str]] = field(default_factory=list)
    photos: list[tuple[bytes, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ServiceLimits:
    """Bounds of one app. ``max_pixels``: decoded pixels per uploaded image; ``max_queue``: jobs admitted
    at once (one runs, the others wait); ``max_targets``: target ages per request."""

    max_n: int = 8
    max_text: int = 200
    max_pixels: int = 25_000_000
    max_queue: int = 4
    max_targets: int = 4
    retry_after_s: int = 10


class ServiceBusy(Exception):
    """More jobs than ``max_queue`` are in flight; try again after ``retry_after`` seconds."""

    def __init__(self, max_queue: int, retry_after: int) -> None:
        super().__init__(f"the server is busy ({max_queue} requests in progress); try again in "
                         f"{retry_after} s")
        self.retry_after = retry_after


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``), so the resident
    size returns near its idle level after a job with large images."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


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


_NO_FACE_HINT = "upload a photo with a visible face, or tick 'already aligned' for an FFHQ-aligned crop"


def _face(img: np.ndarray, size: int, aligned: bool, name: str):
    """(face ``(1, 3, size, size)`` in [-1, 1], AlignedFace or None) from a photo (detect + align the largest
    face) or an aligned crop: :func:`pada.faces.align.face_tensors`, as ``pada age`` does."""
    from pada.faces.align import face_tensors

    x, face = face_tensors(img, size, aligned=aligned, name=name, no_face_hint=_NO_FACE_HINT)[0]
    return x[None], face


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

    def __init__(self, pipeline: Any, limits: ServiceLimits | None = None, out_size: int = 256) -> None:
        self.pipeline = pipeline
        self.image_size = image_size_of(pipeline)
        self.out_size = int(out_size)  # side of the faces shown (detail transfer, as `pada age --out-size`)
        self.limits = limits or ServiceLimits()
        self._lock = threading.Lock()  # one job at a time (decode + model + encode)
        self._admit_lock = threading.Lock()
        self.in_flight = 0  # admitted jobs, running or waiting for the lock

    @contextlib.contextmanager
    def admit(self):
        """Hold one of the ``max_queue`` job slots for the block, or raise :class:`ServiceBusy`."""
        with self._admit_lock:
            if self.in_flight >= self.limits.max_queue:
                raise ServiceBusy(self.limits.max_queue, self.limits.retry_after_s)
            self.in_flight += 1
        try:
            yield
        finally:
            with self._admit_lock:
                self.in_flight -= 1

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
        raw_text = str(form.get("target", "") or "")
        if "\n" in raw_text.strip() or "\r" in raw_text.strip():
            raise PadaError("target description must be one line (no line breaks)")
        text = raw_text.strip()
        has_ref = reference is not None and bool(reference[0])
        if len(text) > lim.max_text:
            raise PadaError(f"target description is longer than {lim.max_text} characters")
        ages_raw = str(form.get("age", "") or "").strip()
        ages: tuple[float, ...] = ()
        if ages_raw:
            from pada.aging.photo import parse_ages

            ages = tuple(parse_ages(ages_raw[:200], option="age"))
            if len(ages) > lim.max_targets:
                raise PadaError(f"age: at most {lim.max_targets} target ages per request, got {len(ages)}")
        if not lifespan and not text and not has_ref and not ages:
            raise PadaError("give a target: type a description (e.g. \"man's face in his sixties\"), "
                            "target ages (e.g. 70 or 30,70), upload a reference photo, or tick lifespan")
        gender = str(form.get("gender", "auto") or "auto").strip().lower()
        if gender not in (*GENDERS, "auto"):
            raise PadaError(f"gender must be female, male or auto, got {gender[:20]!r}")
        return AgingRequest(
            image=image[0], image_name=image[1] or "photo", target=text or None,
            reference=reference[0] if has_ref else None,
            reference_name=(reference[1] or "reference") if has_ref else "reference",
            n=n, seed=seed, high_level=_bool("high_level", True), low_level=_bool("low_level", False),
            lifespan=lifespan, gender=gender, aligned=_bool("aligned", False), ages=ages,
            paste_back=_bool("paste_back", False))

    # -------------------------------------------------------------------------------- running
    def run(self, req: AgingRequest) -> AgingResponse:
        """Decode, align, age and render one request (under the job lock). Raises :class:`PadaError` on bad
        input; frees the job's memory afterwards."""
        if req.paste_back and req.aligned:
            raise PadaError("whole photo (paste back) needs the original photo, not an aligned crop")
        try:
            with self._lock:
                return self._run(req)
        finally:
            release_memory()

    def _run(self, req: AgingRequest) -> AgingResponse:
        from pada.aging.photo import FaceResult, age_faces, compose_photo, face_grid, make_targets, sharp_crop
        from pada.faces.io import to_uint8

        lim = self.limits
        size = self.image_size
        photo = _decode_upload(req.image, req.image_name, lim.max_pixels)
        name = os.path.basename(req.image_name)
        face, face_rec = _face(photo, size, req.aligned, name)
        face_hr, rec_hr = (sharp_crop(photo, face_rec, self.out_size, size) if self.out_size > size
                           else (None, None))
        if req.aligned or not req.paste_back:
            photo = None  # the decoded photo is not needed any more
        ref = None
        if req.reference is not None:
            ref_img = _decode_upload(req.reference, req.reference_name, lim.max_pixels)
            ref = _face(ref_img, size, req.aligned, os.path.basename(req.reference_name))[0]
            del ref_img
        if req.lifespan:  # the pipeline's smooth sweep from child to old (PAE mean, inverted x_T)
            kw = {} if face_hr is None else {"image_hr": face_hr[None]}
            res = self.pipeline.lifespan(face, gender=None if req.gender == "auto" else req.gender, **kw)
            sharp = getattr(res, "images_hr", None)
            frames = (res.images if sharp is None else sharp).detach().float().cpu().clamp(-1, 1)
            if sharp is not None:
                face = face_hr[None]
            anchors = [i for i, lab in enumerate(res.labels) if lab] or list(range(frames.shape[0]))
            labels = [res.labels[i] or str(i) for i in anchors] if res.labels else [str(i) for i in anchors]
            from pada.aging.photo import labelled_grid

            tiles = [to_uint8(face[0])] + list(to_uint8(frames[anchors]))
            grid = labelled_grid([("lifespan", tiles, ["input"] + [_short(lab) for lab in labels])])
            images = [(_png(t), _short(lab)) for t, lab in zip(tiles[1:], labels)]
            return AgingResponse(png=_png(grid), gif=_gif(list(to_uint8(frames))), labels=labels,
                                 n=len(labels), images=images)
        targets = make_targets([req.target] if req.target else [], req.ages, ref=ref is not None)
        fr = FaceResult(0, face_rec, face[0], image_hr=face_hr, face_hr=rec_hr)
        gender = None if req.gender == "auto" else req.gender
        age_faces(self.pipeline, [fr], targets, n=req.n, ref=ref, seed=req.seed, gender=gender,
                  high_diversity=req.high_level, low_diversity=req.low_level)
        for out in fr.outputs:
            if out.ndim != 4 or out.shape[0] != req.n or out.shape[1] != 3:
                raise RuntimeError(f"pipeline returned {tuple(out.shape)}, expected ({req.n}, 3, S, S)")
        ref_tile = to_uint8(ref[0]) if ref is not None else None
        grid = face_grid(fr, targets, ref_tile)
        labels, images, gif_frames = [], [], [to_uint8(fr.shown(0)[1])]
        for j, t in enumerate(targets):
            for i, im in enumerate(to_uint8(fr.shown(j)[0].clamp(-1, 1))):
                labels.append(f"{t.label} #{i}")
                images.append((_png(im), labels[-1]))
                gif_frames.append(im)
        photos = []
        if req.paste_back and photo is not None:
            for j, t in enumerate(targets):
                for i in range(req.n):  # one whole photo at a time: encode it, then let it go
                    photos.append((_png(compose_photo(photo, [fr], j, i)), f"{t.label} #{i} (whole photo)"))
        return AgingResponse(png=_png(grid), gif=_gif(gif_frames), labels=labels, n=req.n, images=images,
                           photos=photos)


def _short(label: str) -> str:
    return label.replace("'s face", "").replace("a toddler ", "toddler ")


__getattr__ = renamed(__name__, {"AgingResult": "AgingResponse"})
