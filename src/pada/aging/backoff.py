"""Back-off: re-render the outputs whose skin is blotched or whose structure broke with a shorter edit.

The shipped 64-px DiffAE has seen few old faces, and a long edit toward one makes its decoder paint the
brightening of the upper head (what the age critics read as greying) as a pale blob on a forehead or cheek,
and at young targets hollow, darkened eye sockets; on some faces it goes further and covers the skin with a
pale or grey mask, smears the eyes and mouth or mottles the skin. The tone guard (:mod:`pada.aging.guard`)
bounds each skin pixel's change; it cannot tell one even change from a blotch within that bound.
:func:`pada.evaluation.scores.blotch` (the spread of the smoothed luma change over the skin) and
:func:`pada.evaluation.scores.structure_change` (the skin's local structure lost: 1 − SSIM against the
input) can.

:func:`back_off` checks every output after the decode; an output whose score is above its limit (``limit``
for the blotch, ``structure_limit`` for the structure; 0 = that score is not checked) is rendered again
from the same start noise with its edit ``z_age − z_src`` shortened to each of ``scales`` in turn (0.75,
then 0.5 of its length; with the structure checked, then 0.25 too), and the first render within the limits
replaces it; when none is, the least
bad of the tries is kept. Given the ``center`` of a request's draws (the code of the PAE mean), only
the edit the draws share, ``center − z_src``, is shortened and each output keeps its own offset ``z_age −
center``: the blotch comes mostly from the length of the shared edit, and shortening the offsets too would
take away the variation PAE sampling adds (measured: docs/pada_history.md, "Shipped model (v7h)"); with
the structure checked, an output the shared edit's tries leave broken is tried last with its whole edit,
offset included, at 0.5 and 0.25 (a draw's own offset can break a pale face by itself). Outputs drawn
from their own start noise (low-level diversity) are scored against the input rendered from the same
noise, not the input image (from fresh noise alone their layout is new: against the image, every one
failed the structure check; session 37). Outputs
within the limits are not touched, so the back-off costs one to two renders per caught output (one to
five with the structure checked) and nothing otherwise, plus one per output from its own start noise
(its reference). Like the guards it is inference-only (a pada addition, not the paper's); it trades
some of the edit's length — so some age — on the outputs it catches for an image a person does not call
broken. Measured effect: docs/pada_history.md ("Tried in session 25", "Tried in session 29"); the blotch
limit is on in the shipped ``pada-demo64`` since v7h (0.06).

:func:`bound_contrast` shortens edits *before* they are rendered, with no render at all. On a DiffAE with a
coarse image path (``coarse_size``; the shipped 64-px one), z reaches the image only through coarse(z), a
32×32 image that is the linear eigenface reconstruction of z's last entries (plus a learned part that adds
little), so an edit of z adds an image ``coarse(z_age) − coarse(z_src)`` to the face's coarse image. For
one target that added image is nearly the same for every face (PADA v7h at eighty, 32 held-out faces:
pairwise cosine 0.91), and the faces that break are those for which it is large against the face's own
contrast (Spearman 0.64–0.66 between that ratio and the structure lost, at sixty and eighty; 0.19 and 0.37
for how far the face's edit differs from the mean edit): a pale, low-contrast face drowns under the added
pattern. The bound keeps that ratio at most ``r`` (docs/pada_history.md, "Tried in session 30").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from pada.errors import PadaError

#: the edit lengths tried, in order, as fractions of an output's own edit
BACKOFF_SCALES: tuple[float, ...] = (0.75, 0.5)
#: the lengths tried when the structure is checked too: the faces whose structure breaks mostly still do at
#: half the edit (session 29, four such faces at eighty: 1 − SSIM 0.14-0.26 at 0.5, 0.04-0.13 at 0.25)
STRUCTURE_BACKOFF_SCALES: tuple[float, ...] = (0.75, 0.5, 0.25)
#: with the structure checked and draws around a centre, the whole edit (the draw's own offset too) is tried
#: at these lengths after the shared edit's: on the 32 held-out faces at forty, the 8 outputs the shared
#: edit's tries left over the structure limit all came under it at a whole edit of 0.5 (the offset broke them)
STRUCTURE_WHOLE_SCALES: tuple[float, ...] = (0.5, 0.25)


def contrast_bound_value(value: float) -> float:
    """A contrast bound as a float in [0, 10] (0 = off); anything else is a :class:`PadaError` naming it."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PadaError(f"contrast bound must be a number in [0, 10], got {value!r}") from None
    if not 0.0 <= v <= 10.0:  # also rejects NaN
        raise PadaError(f"contrast bound must be in [0, 10], got {value}")
    return v


def coarse_contrast(coarse: torch.Tensor) -> torch.Tensor:
    """The contrast of one coarse image (1, 3, s, s): ‖coarse − its mean‖, the unit of the contrast bound
    (floored at 1e-8 so a flat image does not divide by zero)."""
    return _row_contrast(coarse)[0]


def _row_contrast(coarse: torch.Tensor) -> torch.Tensor:
    """(B,) :func:`coarse_contrast` of each row of ``coarse`` (B, 3, s, s)."""
    flat = coarse.flatten(1)
    return (flat - flat.mean(dim=1, keepdim=True)).norm(dim=1).clamp_min(1e-8)


def _coarse_change(unet, z_src: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) ‖coarse(z) − coarse(z_src)‖ of each edit and (1 or N,) the input's coarse-image contrast."""
    c0 = unet.coarse_image(z_src).float()
    return (unet.coarse_image(z).float() - c0).flatten(1).norm(dim=1), _row_contrast(c0)


def bound_contrast(diffae, z_src: torch.Tensor, z: torch.Tensor, bound: float, *,
                   grad: bool = False) -> torch.Tensor:
    """``z`` (N, S) with each edit ``z − z_src`` shortened so that the change it makes to
    ``diffae``'s coarse image is at most ``bound`` × the input's coarse-image contrast:
    ‖coarse(z) − coarse(z_src)‖ ≤ bound·‖coarse(z_src) − mean(coarse(z_src))‖ (the scale factor
    min(1, bound / ratio) is computed on the coarse image and applied to the whole edit). ``z_src`` is one
    input (1, S) for all rows or one per row (N, S). ``bound`` 0 returns ``z`` unchanged; a DiffAE without a
    coarse image path is a :class:`PadaError`.

    ``grad=True`` (training, ``LossConfig.train_bound``) keeps the scale factor in the graph: where the
    bound holds an edit, its rendered length is fixed, so a loss's gradient can turn the edit but not make
    it longer. Inference computes the factor without gradients."""
    if bound <= 0:
        return z
    unet = getattr(diffae, "unet", None)
    if getattr(unet, "coarse", None) is None:
        raise PadaError("the contrast bound needs a DiffAE with a coarse image path (coarse_size > 0); "
                        "this one has none: set it to 0")
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        change, contrast = _coarse_change(unet, z_src, z)
        f = (float(bound) * contrast / change.clamp_min(1e-12)).clamp(max=1.0).to(z.dtype)
    return z_src + f[:, None] * (z - z_src)


def edit_sizes(diffae, z_src: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """(N,) how much each edit ``z − z_src`` (z (N, S), z_src (1, S)) changes the face: on a DiffAE with a
    coarse image path, the change to the coarse image over the input's coarse-image contrast (the contrast
    bound's measure); otherwise the edit's length in z."""
    unet = getattr(diffae, "unet", None)
    if getattr(unet, "coarse", None) is None:
        return (z - z_src).float().norm(dim=1)
    change, contrast = _coarse_change(unet, z_src, z)
    return change / contrast


def space_anchors(diffae, z_src: torch.Tensor, z_anchor: torch.Tensor, centres: Sequence[float],
                  source_age: float) -> tuple[torch.Tensor, list[float]]:
    """A lifespan's anchor codes ``z_anchor`` (A, S) of the input ``z_src`` (1, S), with target ages
    ``centres``, shortened so the sweep changes the face step by step away from the input's own
    ``source_age``: on each side of it (younger targets, older targets) every anchor's
    :func:`edit_sizes` is at most the side's outermost anchor's × its distance to ``source_age`` over the
    outermost's, and at most that of the next anchor out. Only shortens (each factor ≤ 1; the coarse image
    is close to linear in the edit's length, so a factor f scales the size by about f). Without it, two
    anchors that both reach the contrast bound ("sixties", "eighties") render alike, and the young anchors,
    which the demo data cannot take below its youngest faces, in an order set by noise.
    Returns the spaced codes and each anchor's factor."""
    size = edit_sizes(diffae, z_src, z_anchor)
    c = torch.as_tensor([float(v) for v in centres], dtype=torch.float32)
    if c.numel() != z_anchor.shape[0]:
        raise PadaError(f"space_anchors needs one target age per anchor, got {c.numel()} for "
                        f"{z_anchor.shape[0]} anchors")
    dist = (c - float(source_age)).abs()
    new = size.clone()
    for side in (c < source_age, c >= source_age):
        order = sorted((int(k) for k in torch.nonzero(side).flatten()), key=lambda k: float(dist[k]))
        if not order or float(dist[order[-1]]) <= 0:
            continue
        outer = order[-1]
        for k in order:
            new[k] = min(float(new[k]), float(size[outer] * dist[k] / dist[outer]))
        for inner, out in reversed(list(zip(order, order[1:]))):
            new[inner] = min(float(new[inner]), float(new[out]))
    f = (new / size.clamp_min(1e-12)).clamp(max=1.0)
    return z_src + f[:, None].to(z_anchor.dtype) * (z_anchor - z_src), [float(v) for v in f]


def back_off(images: torch.Tensor, z_src: torch.Tensor, z_age: torch.Tensor, image: torch.Tensor,
             limit: float, render: Callable[[list[int], torch.Tensor], torch.Tensor],
             scales: Sequence[float] | None = None,
             center: torch.Tensor | None = None,
             structure_limit: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Outputs ``images`` (N, 3, H, W), rendered from the codes ``z_age`` (N, S) of the input ``image``
    (1, 3, H, W) whose own code is ``z_src`` (1, S), with those above ``limit`` on
    :func:`~pada.evaluation.scores.blotch` or above ``structure_limit`` on
    :func:`~pada.evaluation.scores.structure_change` rendered again at shorter edits (module docstring; a
    limit of 0 leaves its score out, at least one must be on). An output's badness is the largest of its
    scores over their limits: it passes at 1 or below, and of several tries the least bad is kept.
    ``render(rows, z)`` renders the codes ``z`` (len(rows), S) from the start noise of outputs ``rows``.
    ``scales``: the lengths tried (default :data:`BACKOFF_SCALES`, or :data:`STRUCTURE_BACKOFF_SCALES` when
    the structure is checked). ``center`` (1, S): the code the outputs' codes vary around; when given, an
    output at scale s is rendered from ``z_src + s·(center − z_src) + (z_age − center)``, else from
    ``z_src + s·(z_age − z_src)``; with a ``center`` and the structure checked, outputs still over after
    ``scales`` are tried with their whole edit at :data:`STRUCTURE_WHOLE_SCALES` (the draw's own offset
    shortened too). ``image`` may also hold one reference per output (N, 3, H, W): what each output is
    scored against, e.g. the input rendered from that output's own fresh start noise (an output drawn from
    fresh noise has a new layout, so against the input image itself every one of them would fail).
    Returns the images, the codes they were rendered from and each output's edit scale (1.0 = kept)."""
    from pada.evaluation.scores import blotch, structure_change

    for value, what in ((limit, "blotch guard"), (structure_limit, "structure guard")):
        if not 0.0 <= value < 1.0:
            raise PadaError(f"{what} must be in [0, 1), got {value:g}")
    if limit == 0 and structure_limit == 0:
        raise PadaError("the back-off needs a blotch guard or a structure guard above 0")
    if scales is None:
        scales = STRUCTURE_BACKOFF_SCALES if structure_limit > 0 else BACKOFF_SCALES

    def badness(x: torch.Tensor, rows: list[int]) -> torch.Tensor:
        ref = src if src.shape[0] == 1 else src[rows]
        parts = [blotch(x, ref) / limit] if limit > 0 else []
        if structure_limit > 0:
            parts.append(structure_change(x, ref) / structure_limit)
        return torch.stack(parts).amax(0)
    if not scales or not all(0.0 <= s < 1.0 for s in scales):
        raise PadaError(f"back-off scales must be in [0, 1), got {list(scales)}")
    images, z_age = images.clone(), z_age.clone()
    asked = z_age.clone()
    z_src = z_src.to(z_age.device, z_age.dtype)
    if center is None:  # each output's whole edit is shortened
        shared, own = z_age - z_src, torch.zeros_like(z_age)
    else:
        center = center.to(z_age.device, z_age.dtype)
        if center.shape != z_src.shape:
            raise PadaError(f"back-off center must have the shape of z_src {tuple(z_src.shape)}, "
                            f"got {tuple(center.shape)}")
        shared, own = (center - z_src).expand_as(z_age), z_age - center
    src = image.detach().cpu()
    if src.ndim != 4 or src.shape[0] not in (1, images.shape[0]):
        raise PadaError(f"back-off reference must be one image or one per output ({images.shape[0]}), "
                        f"got shape {tuple(src.shape)}")
    score = badness(images.cpu(), list(range(images.shape[0])))
    used = [1.0] * images.shape[0]
    todo = [k for k in range(images.shape[0]) if float(score[k]) > 1.0]
    tries_of = [(s, z_src + s * shared + own) for s in scales]
    if structure_limit > 0 and center is not None:  # then the draw's own offset too
        tries_of += [(s, z_src + s * (asked - z_src)) for s in STRUCTURE_WHOLE_SCALES]
    for s, codes in tries_of:
        if not todo:
            break
        z = codes[todo]
        tries = render(todo, z)
        tried = badness(tries.cpu(), todo)
        for j, k in enumerate(todo):
            if float(tried[j]) < float(score[k]):  # the least blotched so far
                images[k] = tries[j].to(images.device, images.dtype)
                z_age[k], score[k], used[k] = z[j], tried[j], s
        todo = [k for k in todo if float(score[k]) > 1.0]
    return images, z_age, used


__all__ = ["BACKOFF_SCALES", "STRUCTURE_BACKOFF_SCALES", "STRUCTURE_WHOLE_SCALES", "back_off",
           "bound_contrast", "edit_sizes", "space_anchors"]
