"""Detail transfer: carry an edit made at the model's size onto a sharper crop of the same face.

The shipped model works on 64 x 64 faces; upscaled, its outputs are blurred, and pasted into a photo they
read as a smudge. The edit itself (hair turning grey, a longer face, folds, softer skin) lives mostly at the
scales the model sees. :func:`transfer_edit` therefore writes each result at the size of a sharper crop of
the same face (e.g. the photo's 256 px crop):

    out = up(x + (y - r)) + g · q · D

where ``x`` is the model's input (the sharp crop, area-downsampled), ``y`` a result and ``r`` the DiffAE's
own rendering of the input from the same start noise (so that ``y - r`` is the edit, not the decoder's
reconstruction error), ``up`` bicubic upsampling, and ``D = X - up(down(X))`` the sharp crop's detail finer
than the model's pixels. ``g`` (in [0, 1], per pixel) is how much of its fine detail the result kept:
the square root of the ratio of the result's to the reconstruction's local high-frequency energy at the
model's size. ``q`` (per pixel and channel) is the edit's local brightness ratio, ``(y + c) / (r + c)`` on
the [0, 1] scale (``c`` = :data:`RATIO_OFFSET`, bounded to :data:`RATIO_LIMITS`, upsampled): the eye reads
detail by its contrast relative to the brightness around it, so where the edit lightens dark hair (or a dark
hat) threefold, the strands' detail is made three times as strong and the hair turns grey strand by strand;
added at its own amplitude (``relative_detail=False``, before session 39), the same detail under a lifted
tone reads as a pale haze over the photo. Where the edit smooths the skin (young targets), the photo's pores
and lines fade with it; where it adds lines, they come from ``y - r``. A result equal to the reconstruction
gives back the sharp crop itself. With a ``region`` (:func:`head_region`: the face and hair of the aligned
crop, soft-edged), the edit ``y - r`` is weighted by it, so the photo's background, shoulders and clothes
stay as they were: the model's changes there (a whitened or darkened backdrop at old targets) are not aging.

What it cannot do: detail the model never drew stays at the model's resolution (wrinkles it adds are soft
at 256 px), and a result whose layout moved away from the input's (``low_diversity`` from fresh start
noise alone, ``low_noise`` 1) has no pixel-wise counterpart in the crop;
:meth:`pada.aging.pipeline.AgingPipeline.age` then upsamples instead. Measured effect:
docs/pada_method.md ("Detail transfer").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pada.errors import PadaError
from pada.evaluation.scores import gaussian_blur

#: Gaussian widths (in the model's pixels) of the detail gain: the high-pass that defines "fine detail"
#: and the window its local energy is averaged over.
DETAIL_SIGMA = 1.0
ENERGY_SIGMA = 2.0
#: offset (on the [0, 1] scale) of the brightness ratio that scales the crop's fine detail, and the ratio's
#: bounds: near black the ratio of two small values is mostly noise, so it is damped there and capped
RATIO_OFFSET = 0.05
RATIO_LIMITS = (0.25, 4.0)
#: results blended at once (bounds the S px temporaries whatever N is)
CHUNK = 8


def upsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, h, h) -> (N, 3, size, size), bicubic, clamped to [-1, 1]."""
    if images.shape[-1] == size:
        return images.clone()
    return F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False).clamp(-1.0, 1.0)


def downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, H, H) -> (N, 3, size, size) by area averaging (as crops are shrunk to the model's size)."""
    if images.shape[-1] == size:
        return images.clone()
    return F.interpolate(images, size=(size, size), mode="area")


def detail_gain(outputs: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """(N, 1, h, w) in [0, 1]: the share of the input's fine detail each result kept (module docstring)."""
    def energy(x):
        return gaussian_blur((x - gaussian_blur(x, DETAIL_SIGMA)).pow(2).mean(1, keepdim=True), ENERGY_SIGMA)

    return (energy(outputs) / energy(reconstruction).clamp_min(1e-6)).sqrt().clamp(0.0, 1.0)


def brightness_ratio(outputs: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """(N, 3, h, w): each result's brightness over the reconstruction's, per pixel and channel, on the [0, 1]
    scale with :data:`RATIO_OFFSET` added to both and bounded to :data:`RATIO_LIMITS` (module docstring)."""
    q = (outputs + 1.0 + 2 * RATIO_OFFSET) / (reconstruction + 1.0 + 2 * RATIO_OFFSET)
    return q.clamp(*RATIO_LIMITS)


def head_region(size: int) -> torch.Tensor:
    """(1, 1, size, size) soft mask of the head (face and hair) of an FFHQ-aligned crop
    (:data:`pada.faces.align.HEAD_ELLIPSE`), for ``transfer_edit(region=)``."""
    from pada.faces.align import feather_mask

    return torch.from_numpy(feather_mask(int(size), 0.12, "head"))[None, None]


def _check(name: str, t: torch.Tensor, batch: int | None = None) -> None:
    if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.shape[1] != 3 or t.shape[-1] != t.shape[-2]:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise PadaError(f"detail transfer: {name} must be square images (N, 3, S, S), got {shape}")
    if batch is not None and t.shape[0] != batch:
        raise PadaError(f"detail transfer: {name} must hold {batch} image(s), got {t.shape[0]}")
    if not bool(torch.isfinite(t).all()):
        raise PadaError(f"detail transfer: {name} has NaN or infinite values")


@torch.no_grad()
def transfer_edit(outputs: torch.Tensor, reconstruction: torch.Tensor, image_hr: torch.Tensor,
                  image: torch.Tensor | None = None, keep_detail: bool = True,
                  region: torch.Tensor | None = None, relative_detail: bool = True) -> torch.Tensor:
    """The results ``outputs`` (N, 3, h, h) carried onto ``image_hr`` (1, 3, S, S), S >= h: (N, 3, S, S)
    in [-1, 1] (formula in the module docstring).

    ``reconstruction`` (1, 3, h, h): the DiffAE's rendering of the input from the results' start noise
    (:meth:`pada.aging.pipeline.AgingPipeline.age` with ``image_hr``). ``image`` (1, 3, h, h): the model's
    input; default: ``image_hr`` area-downsampled, which is what it is when the crop was shrunk that way.
    ``keep_detail=False``: no gain ``g`` on the crop's fine detail (every result keeps all of it, still
    scaled by ``q`` unless ``relative_detail=False``). ``region``
    (h, h) or (1, 1, h, h) in [0, 1]: where the edit applies (e.g. :func:`head_region`); None: everywhere.
    ``relative_detail=False``: the crop's fine detail keeps its amplitude wherever the edit changed the
    brightness (no ``q``), as before session 39.
    """
    _check("outputs", outputs)
    n, h = outputs.shape[0], outputs.shape[-1]
    _check("the reconstruction", reconstruction, 1)
    _check("the sharp crop", image_hr, 1)
    size = image_hr.shape[-1]
    if reconstruction.shape[-1] != h:
        raise PadaError(f"detail transfer: the reconstruction is {reconstruction.shape[-1]} px, "
                        f"the results {h} px")
    if size < h:
        raise PadaError(f"detail transfer: the sharp crop ({size} px) is smaller than the results ({h} px)")
    hr = image_hr.float().cpu()
    x = downsample(hr, h) if image is None else image.float().cpu()
    _check("the input", x, 1)
    if x.shape[-1] != h:
        raise PadaError(f"detail transfer: the input is {x.shape[-1]} px, the results {h} px")
    y, r = outputs.float().cpu(), reconstruction.float().cpu()
    if region is not None:
        w = region.float().cpu()
        if tuple(w.shape[-2:]) != (h, h) or w.numel() != h * h or not bool(((w >= 0) & (w <= 1)).all()):
            raise PadaError(f"detail transfer: the region must be a ({h}, {h}) mask in [0, 1], "
                            f"got {tuple(region.shape)}")
        y = r + w.reshape(1, 1, h, h) * (y - r)
    fine = hr - F.interpolate(downsample(hr, h), size=(size, size), mode="bicubic", align_corners=False)
    out = torch.empty(n, 3, size, size)
    for k in range(0, n, CHUNK):  # a few results at a time: the S px temporaries stay small for any N
        yk = y[k:k + CHUNK]
        base = F.interpolate(x + (yk - r), size=(size, size), mode="bicubic", align_corners=False)
        gain = torch.ones(1, 1, 1, 1)
        if keep_detail:
            gain = F.interpolate(detail_gain(yk, r.expand(yk.shape[0], -1, -1, -1)), size=(size, size),
                                 mode="bilinear", align_corners=False)
        if relative_detail:
            gain = gain * F.interpolate(brightness_ratio(yk, r), size=(size, size), mode="bilinear",
                                        align_corners=False)
        base += fine * gain
        out[k:k + CHUNK] = base.clamp_(-1.0, 1.0)
    return out


__all__ = ["CHUNK", "DETAIL_SIGMA", "ENERGY_SIGMA", "RATIO_LIMITS", "RATIO_OFFSET", "brightness_ratio",
           "detail_gain", "downsample", "head_region",
           "transfer_edit", "upsample"]
