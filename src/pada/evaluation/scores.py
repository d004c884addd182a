"""Scores that catch broken aging outputs: no face, painted texture, no gradual aging (issue 15).

Age MAE and identity similarity can look fine on outputs a person calls broken: an age network may read
an embossed high-frequency texture as "old", and a blurred mean face keeps some identity. These scores
look at the outputs themselves:

* :class:`FaceFinder` / face-found rate: does an independent detector (YuNet, :mod:`pada.faces.detect`)
  still find a face, roughly where the aligned crop puts it?
* :func:`laplacian_energy` / :func:`hf_energy_ratio`: the output's high-frequency energy relative to its
  input. Aging adds some wrinkles; a ratio of 3-10 is texture painted over the face (the issue's
  finding 1), a ratio far below 1 is blur.
* :func:`tone_change`: the share of the skin region (:data:`SKIN_ELLIPSE`) whose smoothed brightness moved by
  more than :data:`TONE_STEP` against the input. Aging darkens a few lines and lightens the hair; darkened eye
  sockets at young targets, a washed-out or blotched face at old ones re-tone a large part of the skin, and
  an age network may read either as the target age.
* :func:`background_change`: the same measure outside the head (:data:`pada.faces.align.HEAD_ELLIPSE`):
  the backdrop, shoulders and clothes, which aging leaves alone. A model that whitens or darkens the
  backdrop at old targets is not aging the face there, and an age network may read that as age too.
* :func:`patch_change`: how unevenly the skin's colour changed: the spread over the skin region of the
  smoothed chroma change. Aging may tint a face as a whole; a face rendered as a patchwork of pale, red,
  grey or orange regions (what an over-long edit makes the small decoder draw at old targets) changes its
  colour unevenly, and an age network may read the patchwork as old. Luma is left to the tone and texture
  scores: lines and shading are what aging changes.
* :func:`structure_change`: how much of the skin's local structure the output lost: one minus the mean
  SSIM of the luma over the skin region. An old face adds lines to the input's; a face the small decoder
  breaks at a long edit (a pale or grey mask over the skin, smeared eyes and mouth, mottled texture) no
  longer has the input's structure, while the brightness-only scores above let it through.
* :func:`haze`: the share of the head region that the output made much lighter while its fine detail lost
  its contrast relative to the brightness (a pale, blurred haze over dark hair or a dark cap). It is meant
  for results written above the model's size (the detail transfer): at 64 px a lightened band is grey hair,
  at 256 px a person sees whether strands are still there.
* :func:`spearman`: rank correlation, used for lifespan monotonicity (estimated age of a child-to-old
  sweep against the target-group centres).
* :func:`reference_shift`: does reference-guided aging move the estimated age toward the reference's?

All functions take images in the package convention, ``float32 (B, 3, H, W)`` RGB in ``[-1, 1]``.
Thresholds of the issue's "Done when" are module constants so that reports and docs use one source.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: an output passes the texture check when its Laplacian energy is at most this times its input's
HF_RATIO_LIMIT = 1.5
#: outputs with ratio below this are counted as blurred (reported, not an acceptance check)
HF_BLUR_LIMIT = 1 / HF_RATIO_LIMIT
#: high-level diversity counts as "on > off" when PAE sampling adds at least this share to div-ID
DIVERSITY_MARGIN = 0.1
#: "Done when": share of outputs with a detected face, for every target
FACE_FOUND_TARGET = 0.95
#: "Done when": share of outputs with ``hf_ratio <= HF_RATIO_LIMIT``
HF_OK_TARGET = 0.95
#: "Done when": mean lifespan Spearman correlation
SPEARMAN_TARGET = 0.9
#: "Done when": mean SFace cosine similarity of outputs to their input
ID_TARGET = 0.5

#: the skin region of an FFHQ-aligned crop, (centre x, y), (half-axes x, y) as fractions of the side: brows
#: to chin, cheek to cheek; hair, background and neck lie outside
SKIN_ELLIPSE = ((0.5, 0.58), (0.25, 0.30))
#: a skin pixel counts as re-toned when its smoothed luma (0-1 scale) moved by more than this
TONE_STEP = 0.15
#: an output passes the tone check when at most this share of its skin region is re-toned (reported)
TONE_AREA_LIMIT = 0.1
#: an output keeps its background when at most this share of it moved by more than TONE_STEP (reported)
BACKGROUND_AREA_LIMIT = 0.1
#: the blur of the colour-patch score, as a fraction of the side (1.5 px at 64 px): regions, not pores
PATCH_SIGMA = 1.5 / 64
#: an output's skin colour counts as patchy when the spread of its smoothed chroma change (patch_change)
#: exceeds this
#: (0-1 scale; reported). Set by eye on the shipped model's 16 held-out faces (session 23): outputs above it
#: show pale, red or grey patches, those below a face tinted as a whole or not at all
PATCH_LIMIT = 0.025
#: an output's head counts as colour-cast when its colour grew more vivid than this on average
#: (:func:`colour_cast`, 0-1 chroma scale; reported). Set by eye on v7f's 64 eighty outputs of the 16
#: held-out faces (session 24): those above it have orange hair or an orange-red face
CAST_LIMIT = 0.015
#: an output's skin counts as blotched when the spread of its smoothed luma change (:func:`blotch`, 0-1
#: scale) exceeds this (reported; the back-off of :mod:`pada.aging.backoff` holds outputs to it). Set by
#: eye on v7g's 64 toddler and 64 eighty outputs of the 16 held-out faces sorted by the score (session 25):
#: above it, pale blobs on the forehead or cheeks, grey smears around the mouth, darkened eye sockets;
#: below it, a face lightened, darkened or lined as a whole
BLOTCH_LIMIT = 0.06

#: an output's skin counts as broken when it lost more than this of its structure (:func:`structure_change`,
#: 1 - SSIM over the skin; reported). Set by eye on 96 outputs of v7h on the 32 held-out faces (session 29:
#: one sixty and two eighty results per face, each labelled broken or not before scoring): it separates the
#: two with accuracy 0.78 (AUC 0.85; :func:`blotch` 0.57), and 0.77 on 96 others labelled after (the second
#: sixty and two toddler results per face; AUC 0.76, blotch 0.58). It rises with any large change too, so a
#: cleanly aged face far from its input may exceed it; the images decide
STRUCTURE_LIMIT = 0.13
#: haze (:func:`haze`): a pixel counts when the output's smoothed luma (offset :data:`HAZE_OFFSET`) is at
#: least HAZE_LIFT times the input's and its fine detail's contrast relative to the brightness fell below
#: HAZE_KEEP of the input's (where the input had at least HAZE_FLOOR of it); an output is hazy when more
#: than HAZE_LIMIT of its head region counts. Set on the README example (session 39): the two results with
#: a pale smear across the cap's brim score 0.046 and 0.038, the same results with the detail kept in
#: proportion 0.014 and 0.002, clean results 0 (reported, not an acceptance check).
HAZE_LIFT = 1.5
HAZE_KEEP = 0.5
HAZE_FLOOR = 0.02
HAZE_OFFSET = 0.05
HAZE_LIMIT = 0.02
#: share of a target's outputs that must keep their structure (``structure_ok``) in the acceptance
#: verdict (``done_when``'s ``structure_ok_every_target``, worst target). A pada addition to the issue's
#: checks, at the share the issue asks of face found and HF ok: without it v7h passed every check with
#: half its eighty results broken by eye (session 29's labels; structure ok 55 % at eighty)
STRUCTURE_OK_TARGET = 0.95

_LUMA = (0.299, 0.587, 0.114)


# --------------------------------------------------------------------------------------------------
# high-frequency energy
# --------------------------------------------------------------------------------------------------
def laplacian_energy(images: torch.Tensor) -> torch.Tensor:
    """Mean squared 4-neighbour Laplacian of the luma, ``(B,)``.

    Luma ``0.299 R + 0.587 G + 0.114 B`` on the [0, 1] scale; the 3×3 kernel ``[[0,1,0],[1,-4,1],[0,1,0]]``
    is applied without padding (no border artefact) in float64. A flat image gives 0; white noise of
    standard deviation s gives about 20 s².
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if min(images.shape[-2:]) < 3:
        raise ValueError(f"images must be at least 3x3 pixels, got {tuple(images.shape[-2:])}")
    x = (images.detach().double().cpu().clamp(-1, 1) + 1) / 2
    w = torch.tensor(_LUMA, dtype=torch.float64).view(1, 3, 1, 1)
    luma = (x * w).sum(1, keepdim=True)
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    k = k.view(1, 1, 3, 3)
    return F.conv2d(luma, k).pow(2).flatten(1).mean(1)


def hf_energy_ratio(outputs: torch.Tensor, inputs: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """Laplacian energy of each output over that of its input, ``(B,)``.

    ``inputs`` is ``(B, 3, H, W)`` or ``(1, 3, H, W)`` (one input for all outputs) at the outputs' size.
    ``floor`` keeps a flat input from dividing by zero. 1 = as detailed as the input; > 1.5 flags texture
    added by the edit (:data:`HF_RATIO_LIMIT`); well below 1 flags blur.
    """
    if inputs.shape[-2:] != outputs.shape[-2:]:
        raise ValueError(f"input size {tuple(inputs.shape[-2:])} differs from output size "
                         f"{tuple(outputs.shape[-2:])}")
    e_out = laplacian_energy(outputs)
    e_in = laplacian_energy(inputs)
    if e_in.shape[0] not in (1, e_out.shape[0]):
        raise ValueError(f"{e_in.shape[0]} inputs for {e_out.shape[0]} outputs")
    return (e_out / e_in.clamp_min(floor)).float()


# --------------------------------------------------------------------------------------------------
# tone of the skin
# --------------------------------------------------------------------------------------------------
def skin_mask(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(size, size)`` float mask, 1 inside :data:`SKIN_ELLIPSE` (pixel centres), else 0."""
    (cx, cy), (ax, ay) = SKIN_ELLIPSE
    c = (torch.arange(size, dtype=torch.float32, device=device) + 0.5) / size
    return (torch.hypot((c[None, :] - cx) / ax, (c[:, None] - cy) / ay) < 1.0).float()


def smooth_luma(images: torch.Tensor, sigma: float = 2 / 64) -> torch.Tensor:
    """``(B, 1, H, W)`` luma on the [0, 1] scale after a Gaussian blur of ``sigma`` × the side
    (2 px at 64 px): the shading and colour of regions, not lines or pores. Differentiable."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    w = torch.tensor(_LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    luma = ((images.clamp(-1, 1) + 1) / 2 * w).sum(1, keepdim=True)
    return gaussian_blur(luma, max(float(sigma) * images.shape[-1], 1e-3))


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` per channel, ``sigma`` in pixels (kernel radius
    ceil(3 sigma)), replicated borders. Differentiable."""
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-t * t / (2 * sigma * sigma))
    g = g / g.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)


def tone_shift(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` smoothed-luma change of each output against its input (``(B, ...)`` or one
    ``(1, ...)`` for all) on the [0, 1] scale: positive = lighter. Differentiable."""
    if inputs.shape[-2:] != outputs.shape[-2:]:
        raise ValueError(f"input size {tuple(inputs.shape[-2:])} differs from output size "
                         f"{tuple(outputs.shape[-2:])}")
    return (smooth_luma(outputs) - smooth_luma(inputs))[:, 0]


def tone_change(outputs: torch.Tensor, inputs: torch.Tensor, step: float = TONE_STEP) -> torch.Tensor:
    """``(B,)`` share of the skin region (:func:`skin_mask`) whose smoothed luma moved by more than
    ``step`` between input and output (lighter or darker). 0 = the face keeps its shading."""
    with torch.no_grad():
        d = tone_shift(outputs.detach().float().cpu(), inputs.detach().float().cpu())
        m = skin_mask(d.shape[-1]).bool()
        return (d[:, m].abs() > step).float().mean(1)


#: BT.601 chroma scales: Cb = CB * (B - Y), Cr = CR * (R - Y) on the [0, 1] scale
_CB, _CR = 0.564, 0.713


def to_luma_chroma(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 3, H, W)`` images in [-1, 1] -> luma ``(B, 1, H, W)`` in [0, 1] and chroma ``(B, 2, H, W)``
    (BT.601 Cb, Cr, each in [-0.5, 0.5]). Differentiable; :func:`from_luma_chroma` inverts it."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    x = (images.clamp(-1, 1) + 1) / 2
    w = torch.tensor(_LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    y = (x * w).sum(1, keepdim=True)
    return y, torch.cat([_CB * (x[:, 2:3] - y), _CR * (x[:, 0:1] - y)], 1)


def from_luma_chroma(luma: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """The images in [-1, 1] (not clamped) of luma ``(B, 1, H, W)`` and chroma ``(B, 2, H, W)``
    (:func:`to_luma_chroma`)."""
    r = luma + chroma[:, 1:2] / _CR
    b = luma + chroma[:, 0:1] / _CB
    g = (luma - _LUMA[0] * r - _LUMA[2] * b) / _LUMA[1]
    return torch.cat([r, g, b], 1) * 2.0 - 1.0


def smooth_chroma(images: torch.Tensor, sigma: float = PATCH_SIGMA) -> torch.Tensor:
    """``(B, 2, H, W)`` chroma (BT.601 Cb and Cr of the [0, 1] image, each in [-0.5, 0.5]) after a Gaussian
    blur of ``sigma`` × the side. Differentiable."""
    return gaussian_blur(to_luma_chroma(images)[1], max(float(sigma) * images.shape[-1], 1e-3))


def chroma_strength(images: torch.Tensor, sigma: float = 2 / 64) -> torch.Tensor:
    """``(B, 1, H, W)`` how vivid each region's colour is: the length of the smoothed chroma
    (:func:`smooth_chroma`, blur ``sigma`` × the side; 0 = grey). Differentiable."""
    return smooth_chroma(images, sigma).norm(dim=1, keepdim=True)


def colour_cast(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """``(B,)`` how much more vivid each output's head (face and hair, :func:`head_mask`) is than its input
    (``(B, ...)`` or one ``(1, ...)`` for all): the mean over the head of the rise of
    :func:`chroma_strength` (0-1 scale; falls count as 0). 0 when colour only faded (greying hair) or
    kept; above :data:`CAST_LIMIT`, a colour cast (orange hair, warmed skin)."""
    if inputs.shape[-2:] != outputs.shape[-2:]:
        raise ValueError(f"input size {tuple(inputs.shape[-2:])} differs from output size "
                         f"{tuple(outputs.shape[-2:])}")
    with torch.no_grad():
        rise = (chroma_strength(outputs.detach().double().cpu())
                - chroma_strength(inputs.detach().double().cpu())).clamp_min(0)[:, 0]
        return rise[:, head_mask(rise.shape[-1])].mean(1).float()


def patch_change(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """``(B,)`` how unevenly each output's skin colour changed against its input (``(B, ...)`` or one
    ``(1, ...)`` for all): the standard deviation over the skin region (:func:`skin_mask`) of the smoothed
    chroma change (:func:`smooth_chroma`) taken as a vector in the Cb-Cr plane (the root of the two
    channels' summed variances). 0 for an unchanged face or one tinted evenly; above :data:`PATCH_LIMIT`, a
    patchwork of colours."""
    if inputs.shape[-2:] != outputs.shape[-2:]:
        raise ValueError(f"input size {tuple(inputs.shape[-2:])} differs from output size "
                         f"{tuple(outputs.shape[-2:])}")
    with torch.no_grad():
        d = smooth_chroma(outputs.detach().double().cpu()) - smooth_chroma(inputs.detach().double().cpu())
        m = skin_mask(d.shape[-1]).bool()
        return d[:, :, m].var(-1).sum(1).sqrt().float()


def blotch(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """``(B,)`` how unevenly each output's skin brightness changed against its input (``(B, ...)`` or one
    ``(1, ...)`` for all): the standard deviation over the skin region (:func:`skin_mask`) of the change of
    the luma blurred by :data:`PATCH_SIGMA` (0-1 scale). 0 for an unchanged face or one lightened or
    darkened as a whole; above :data:`BLOTCH_LIMIT`, blotches: a pale blob on the forehead, a grey smear
    at the mouth, hollow dark eye sockets (what :func:`patch_change` is for colour, this is for brightness;
    the tone guard bounds each pixel's change, not how unevenly the skin changes within that bound)."""
    with torch.no_grad():
        return luma_spread(outputs.detach().double().cpu(), inputs.detach().double().cpu()).float()


def luma_spread(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """The measure of :func:`blotch` on the tensors as given (their dtype and device), differentiable: the
    training loss :func:`pada.aging.losses.blotch_loss` is built on it."""
    if inputs.shape[-2:] != outputs.shape[-2:]:
        raise ValueError(f"input size {tuple(inputs.shape[-2:])} differs from output size "
                         f"{tuple(outputs.shape[-2:])}")
    d = (smooth_luma(outputs, PATCH_SIGMA) - smooth_luma(inputs, PATCH_SIGMA))[:, 0]
    return d[:, skin_mask(d.shape[-1], d.device).bool()].std(1)


def ssim_map(outputs: torch.Tensor, inputs: torch.Tensor, sigma: float = PATCH_SIGMA) -> torch.Tensor:
    """``(B, H, W)`` local SSIM of the luma (0-1 scale) of each output against its input (``(B, ...)`` or one
    ``(1, ...)`` for all), with a Gaussian window of ``sigma`` × the side (1.5 px at 64 px, the window of
    the SSIM paper at that size): 1 where the two agree in brightness, contrast and structure. Differentiable
    and in the tensors' dtype and device."""
    if inputs.shape[-2:] != outputs.shape[-2:]:
        raise ValueError(f"input size {tuple(inputs.shape[-2:])} differs from output size "
                         f"{tuple(outputs.shape[-2:])}")
    from pada.evaluation.metrics import ssim_index

    s = max(float(sigma) * outputs.shape[-1], 1e-3)
    a, b = to_luma_chroma(outputs)[0], to_luma_chroma(inputs)[0]
    b = b.expand_as(a)
    return ssim_index(*(gaussian_blur(m, s) for m in (a, b, a * a, b * b, a * b)))[:, 0]


def structure_change(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """``(B,)`` how much of its skin's local structure each output lost against its input (``(B, ...)`` or
    one ``(1, ...)`` for all): one minus the mean over the skin region (:func:`skin_mask`) of
    :func:`ssim_map`. 0 for an unchanged face, a few hundredths for an even tint or fine lines, above
    :data:`STRUCTURE_LIMIT` for a face whose features the decoder smeared or covered with a pale mask (and
    for very large changes of any kind: a cleanly aged face far from its input can exceed it too)."""
    with torch.no_grad():
        m = ssim_map(outputs.detach().double().cpu(), inputs.detach().double().cpu())
        return (1.0 - m[:, skin_mask(m.shape[-1]).bool()].mean(1)).float()


def haze(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """``(B,)`` the share of the head region (:func:`head_mask`) where each output is hazy against its input
    (``(B, ...)`` or one ``(1, ...)`` for all): its luma, smoothed over 2/64 of the side, at least
    :data:`HAZE_LIFT` times the input's, and its fine detail (finer than 1/64 of the side; local RMS over the
    same window) over that brightness below :data:`HAZE_KEEP` of the input's (module docstring). 0 for an
    unchanged image and for an even lightening that keeps the detail in proportion."""
    if inputs.shape[-2:] != outputs.shape[-2:]:
        raise ValueError(f"input size {tuple(inputs.shape[-2:])} differs from output size "
                         f"{tuple(outputs.shape[-2:])}")
    side = outputs.shape[-1]
    fine, window = side / 64, 2 * side / 64

    def tone_and_contrast(images):
        luma = to_luma_chroma(images.detach().double().cpu())[0]
        mean = gaussian_blur(luma, window)
        detail = luma - gaussian_blur(luma, fine)
        return mean, gaussian_blur(detail * detail, window).sqrt() / (mean + HAZE_OFFSET)

    m_out, c_out = tone_and_contrast(outputs)
    m_in, c_in = (t.expand_as(m_out) for t in tone_and_contrast(inputs))
    lifted = (m_out + HAZE_OFFSET) >= HAZE_LIFT * (m_in + HAZE_OFFSET)
    flat = (c_out < HAZE_KEEP * c_in) & (c_in > HAZE_FLOOR)
    return (lifted & flat)[:, 0][:, head_mask(side)].double().mean(1).float()


def head_mask(size: int) -> torch.Tensor:
    """``(size, size)`` bool mask, True inside the head ellipse of an FFHQ-aligned crop (face and hair; the
    complement of :func:`background_mask`)."""
    return ~background_mask(size)


def background_mask(size: int) -> torch.Tensor:
    """``(size, size)`` bool mask, True outside the head ellipse of an FFHQ-aligned crop
    (:data:`pada.faces.align.HEAD_ELLIPSE`, pixel centres): background, shoulders, clothes."""
    from pada.faces.align import HEAD_ELLIPSE

    (cx, cy), (ax, ay) = HEAD_ELLIPSE
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    return torch.hypot((c[None, :] - cx) / ax, (c[:, None] - cy) / ay) >= 1.0


def background_change(outputs: torch.Tensor, inputs: torch.Tensor, step: float = TONE_STEP) -> torch.Tensor:
    """``(B,)`` share of the background (:func:`background_mask`) whose smoothed luma moved by more than
    ``step`` between input and output. 0 = the photo around the head is as it was."""
    with torch.no_grad():
        d = tone_shift(outputs.detach().float().cpu(), inputs.detach().float().cpu())
        return (d[:, background_mask(d.shape[-1])].abs() > step).float().mean(1)


# --------------------------------------------------------------------------------------------------
# gender kept
# --------------------------------------------------------------------------------------------------
def gender_kept(critic, outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: does the gender ``critic`` (``images -> probs (B, 2)``, e.g. ``dlib-gender``) read each
    output as the same gender as its input (``(B, ...)`` or one ``(1, ...)`` for all)? Aging should not
    change it; an age direction learned from data where the old are mostly men turns old women into men."""
    with torch.no_grad():
        p_out = critic(outputs.detach().float()).argmax(-1).cpu()
        p_in = critic(inputs.detach().float()).argmax(-1).cpu()
    if p_in.shape[0] not in (1, p_out.shape[0]):
        raise ValueError(f"{p_in.shape[0]} inputs for {p_out.shape[0]} outputs")
    return p_out == p_in


# --------------------------------------------------------------------------------------------------
# face found
# --------------------------------------------------------------------------------------------------
@dataclass
class FaceCheck:
    """Per-image result of :class:`FaceFinder`: ``found (B,)`` bool, ``score (B,)`` best detector
    confidence of a face that passes the position test (0 when none)."""

    found: torch.Tensor
    score: torch.Tensor


class FaceFinder:
    """Is there a face in an aligned output? YuNet on the image resized to ``size`` pixels.

    YuNet's smallest anchors are ~10 px, and faces filling a 64-px crop are detected unreliably at their
    own size, so images are resized (bicubic) to ``size`` (default 256) first. A detection counts only
    when it is where an aligned crop puts the face: its box centre lies in the central ``center_box``
    fraction of the image (default the middle half in each direction) and its width is at least
    ``min_width`` of the image (default 0.2). That keeps a spurious small "face" in a textured corner
    from counting. ``detector``: a :class:`pada.faces.detect.FaceDetector` (default: the shared one,
    score threshold 0.7) or any callable ``uint8 (H, W, 3) -> list of faces with .box and .score``.
    """

    def __init__(self, detector=None, size: int = 256, center_box: float = 0.5,
                 min_width: float = 0.2) -> None:
        if detector is None:
            from pada.faces.detect import default_detector

            detector = default_detector()
        self.detector = detector
        self.size, self.center_box, self.min_width = int(size), float(center_box), float(min_width)

    def _ok(self, face, side: int) -> bool:
        x, y, w, h = (float(v) for v in face.box)
        cx, cy = (x + w / 2) / side, (y + h / 2) / side
        lo, hi = 0.5 - self.center_box / 2, 0.5 + self.center_box / 2
        return lo <= cx <= hi and lo <= cy <= hi and w / side >= self.min_width

    def check(self, images: torch.Tensor) -> FaceCheck:
        from pada.faces.io import to_uint8

        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        x = images.detach().float().cpu().clamp(-1, 1)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False)
            x = x.clamp(-1, 1)
        found, score = [], []
        for arr in to_uint8(x):
            faces = [f for f in self.detector(arr) if self._ok(f, self.size)]
            found.append(bool(faces))
            score.append(max((float(f.score) for f in faces), default=0.0))
        return FaceCheck(torch.tensor(found, dtype=torch.bool), torch.tensor(score))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: a face was found in each image."""
        return self.check(images).found


def face_found_rate(finder, images: torch.Tensor) -> float:
    """Share of ``images`` in which ``finder`` (e.g. :class:`FaceFinder`) finds a face."""
    found = finder(images)
    return float(found.float().mean()) if found.numel() else math.nan


# --------------------------------------------------------------------------------------------------
# lifespan monotonicity
# --------------------------------------------------------------------------------------------------
def rankdata(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of a 1-D tensor, ties given their average rank (float64)."""
    x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(1, x.numel() + 1, dtype=torch.float64)
    for v in torch.unique(x):
        m = x == v
        if int(m.sum()) > 1:
            ranks[m] = ranks[m].mean()
    return ranks


def spearman(x: Sequence[float] | torch.Tensor, y: Sequence[float] | torch.Tensor) -> float:
    """Spearman rank correlation of two equally long sequences (Pearson correlation of their ranks,
    ties averaged). NaN when fewer than 2 values or when either sequence is constant."""
    a, b = rankdata(torch.as_tensor(x)), rankdata(torch.as_tensor(y))
    if a.numel() != b.numel():
        raise ValueError(f"spearman needs equally long sequences, got {a.numel()} and {b.numel()}")
    if a.numel() < 2:
        return math.nan
    a, b = a - a.mean(), b - b.mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else math.nan


# --------------------------------------------------------------------------------------------------
# reference-guided aging
# --------------------------------------------------------------------------------------------------
def reference_shift(age_input: float, age_reference: float, age_outputs: torch.Tensor | Sequence[float],
                    ) -> dict[str, float]:
    """How far reference-guided outputs move the estimated age from the input's toward the reference's.

    ``fraction`` per output is ``(age_out − age_in) / (age_ref − age_in)``: 0 = unchanged, 1 = the
    reference's age, negative = moved away. Returns the means of ``toward`` (share of outputs with
    ``fraction > 0``) and ``fraction``, and the mean signed shift in years. NaN fractions when the
    reference's age equals the input's.
    """
    out = torch.as_tensor(age_outputs, dtype=torch.float64).reshape(-1)
    gap = float(age_reference) - float(age_input)
    shift = out - float(age_input)
    if gap == 0 or out.numel() == 0:
        return {"gap": gap, "shift": float(shift.mean()) if out.numel() else math.nan,
                "fraction": math.nan, "toward": math.nan}
    frac = shift / gap
    return {"gap": gap, "shift": float(shift.mean()), "fraction": float(frac.mean()),
            "toward": float((frac > 0).double().mean())}


def interpolate_curve(points: Sequence[tuple[float, float]], x: float) -> float | None:
    """y at x on the piecewise-linear curve through ``points`` (x, y) (sorted here); None outside it (e.g. a
    baseline's Age MAE at a given identity, from its (ID, MAE) points at several strengths)."""
    pts = sorted(points)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


__all__ = ["BACKGROUND_AREA_LIMIT", "BLOTCH_LIMIT", "CAST_LIMIT", "DIVERSITY_MARGIN", "FACE_FOUND_TARGET",
           "FaceCheck", "FaceFinder", "HF_BLUR_LIMIT", "HF_OK_TARGET", "HF_RATIO_LIMIT", "ID_TARGET",
           "HAZE_FLOOR", "HAZE_KEEP", "HAZE_LIFT", "HAZE_LIMIT", "HAZE_OFFSET",
           "PATCH_LIMIT", "PATCH_SIGMA", "SKIN_ELLIPSE", "SPEARMAN_TARGET", "STRUCTURE_LIMIT",
           "STRUCTURE_OK_TARGET",
           "TONE_AREA_LIMIT", "TONE_STEP",
           "background_change", "background_mask", "blotch", "chroma_strength", "colour_cast",
           "face_found_rate", "from_luma_chroma", "gaussian_blur", "haze", "head_mask", "hf_energy_ratio",
           "interpolate_curve", "laplacian_energy", "luma_spread", "patch_change", "rankdata",
           "reference_shift", "skin_mask", "smooth_chroma", "smooth_luma", "spearman", "ssim_map",
           "structure_change", "to_luma_chroma",
           "tone_change", "tone_shift"]
