"""Blotch back-off: re-render the outputs whose skin brightness changed unevenly with a shorter edit.

The shipped 64-px DiffAE has seen few old faces, and a long edit toward one makes its decoder paint the
brightening of the upper head (what the age critics read as greying) as a pale blob on a forehead or cheek,
and at young targets hollow, darkened eye sockets. The tone guard (:mod:`pada.aging.guard`) bounds each skin
pixel's change; it cannot tell one even change from a blotch within that bound.
:func:`pada.evaluation.scores.blotch` can: the spread of the smoothed luma change over the skin.

:func:`back_off` checks every output after the decode; an output whose score is above ``limit`` is rendered
again from the same start noise with its edit ``z_age − z_src`` shortened to each of ``scales`` in turn
(0.75, then 0.5 of its length), and the first render within the limit replaces it; when none is, the least
blotched of the tries is kept. Given the ``center`` of a request's draws (the code of the PAE mean), only
the edit the draws share, ``center − z_src``, is shortened and each output keeps its own offset ``z_age −
center``: the blotch comes mostly from the length of the shared edit, and shortening the offsets too would
take away the variation PAE sampling adds (measured: docs/pada_method.md, "Shipped model (v7h)"). Outputs
within the limit are not touched, so the back-off costs one or two renders per blotched output and nothing
otherwise. Like the guards it is inference-only (a pada addition, not the paper's); it trades some of the
edit's length — so some age — on the outputs it catches for an image without blotches. Measured effect:
docs/pada_method.md ("Tried in session 25"); on in the shipped ``pada-demo64`` since v7h (limit 0.06).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from pada.errors import PadaError

#: the edit lengths tried, in order, as fractions of an output's own edit
BACKOFF_SCALES: tuple[float, ...] = (0.75, 0.5)


def _check(limit: float, scales: Sequence[float]) -> None:
    if not 0.0 < limit < 1.0:
        raise PadaError(f"blotch guard must be in (0, 1), got {limit:g}")
    if not scales or not all(0.0 <= s < 1.0 for s in scales):
        raise PadaError(f"back-off scales must be in [0, 1), got {list(scales)}")


def _keep_better(images: torch.Tensor, z: torch.Tensor, score: torch.Tensor, rows: list[int],
                 z_try: torch.Tensor, render: Callable[[list[int], torch.Tensor], torch.Tensor],
                 src: torch.Tensor) -> list[int]:
    """Render the codes ``z_try`` for outputs ``rows``; each try less blotched than its output so far
    replaces it in ``images``, ``z`` and ``score`` (in place). Returns the rows replaced."""
    from pada.evaluation.scores import blotch

    tries = render(rows, z_try)
    tried = blotch(tries.cpu(), src)
    better = []
    for j, k in enumerate(rows):
        if float(tried[j]) < float(score[k]):  # the least blotched so far
            images[k] = tries[j].to(images.device, images.dtype)
            z[k], score[k] = z_try[j], tried[j]
            better.append(k)
    return better


def back_off(images: torch.Tensor, z_src: torch.Tensor, z_age: torch.Tensor, image: torch.Tensor,
             limit: float, render: Callable[[list[int], torch.Tensor], torch.Tensor],
             scales: Sequence[float] = BACKOFF_SCALES,
             center: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Outputs ``images`` (N, 3, H, W), rendered from the codes ``z_age`` (N, S) of the input ``image``
    (1, 3, H, W) whose own code is ``z_src`` (1, S), with those above ``limit`` on
    :func:`~pada.evaluation.scores.blotch` rendered again at shorter edits (module docstring).
    ``render(rows, z)`` renders the codes ``z`` (len(rows), S) from the start noise of outputs ``rows``.
    ``center`` (1, S): the code the outputs' codes vary around; when given, an output at scale s is
    rendered from ``z_src + s·(center − z_src) + (z_age − center)``, else from ``z_src + s·(z_age − z_src)``.
    Returns the images, the codes they were rendered from and each output's edit scale (1.0 = kept)."""
    from pada.evaluation.scores import blotch

    _check(limit, scales)
    images, z_age = images.clone(), z_age.clone()
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
    score = blotch(images.cpu(), src)
    used = [1.0] * images.shape[0]
    todo = [k for k in range(images.shape[0]) if float(score[k]) > limit]
    for s in scales:
        if not todo:
            break
        for k in _keep_better(images, z_age, score, todo, z_src + s * shared[todo] + own[todo], render, src):
            used[k] = s
        todo = [k for k in todo if float(score[k]) > limit]
    return images, z_age, used


def back_off_sweep(images: torch.Tensor, z_src: torch.Tensor, z_frames: torch.Tensor, image: torch.Tensor,
                   limit: float, render: Callable[[list[int], torch.Tensor], torch.Tensor],
                   scales: Sequence[float] = BACKOFF_SCALES,
                   ) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """:func:`back_off` for the frames of a sweep (a lifespan), ``z_frames`` (N, S) in sweep order.

    Shortening each blotched frame's own edit toward ``z_src`` (what :func:`back_off` does) can render an
    old frame younger than the unblotched frame before it, so the sweep's old end stops aging. Here the
    frames are taken outward from the one whose code lies nearest ``z_src``, and a blotched frame is
    shortened toward the code its neighbour on the input's side was finally rendered from (``z_src`` for
    the nearest frame): it stays at least as far along the sweep as that neighbour. When no try is within
    ``limit``, the frame keeps the least blotched of its tries, or takes its neighbour's image and code
    when that one is less blotched still (the sweep pauses for a frame instead of stepping back); the
    frames must share one start noise (rendered from its neighbour's code, a frame is its neighbour's
    image). Frames within ``limit`` keep their code. Returns the images, their codes and each frame's
    edit length projected on its asked edit ``z_frame − z_src`` (1.0 = kept)."""
    from pada.evaluation.scores import blotch

    _check(limit, scales)
    images, z = images.clone(), z_frames.clone()
    z_src = z_src.to(z.device, z.dtype)
    src = image.detach().cpu()
    score = blotch(images.cpu(), src)
    n = z.shape[0]
    start = int((z - z_src).norm(dim=1).argmin())
    rings = [[start]] + [[k for k in (start - r, start + r) if 0 <= k < n] for r in range(1, n)]
    for ring in rings:
        todo = [k for k in ring if float(score[k]) > limit]
        nb = {k: k + 1 if k < start else k - 1 for k in todo}  # the neighbour on the input's side
        anchor = {k: z_src[0] if k == start else z[nb[k]].clone() for k in todo}
        for s in scales:
            if not todo:
                break
            _keep_better(images, z, score, todo,
                         torch.stack([anchor[k] + s * (z_frames[k] - anchor[k]) for k in todo]), render, src)
            todo = [k for k in todo if float(score[k]) > limit]
        for k in todo:  # still over: the neighbour's frame, if less blotched (a flat step, not a step back)
            if k != start and float(score[nb[k]]) < float(score[k]):
                images[k], z[k], score[k] = images[nb[k]], z[nb[k]], score[nb[k]]
    asked = z_frames - z_src
    along = ((z - z_src) * asked).sum(1) / asked.pow(2).sum(1).clamp_min(1e-12)
    used = [1.0 if torch.equal(z[k], z_frames[k]) else float(along[k]) for k in range(n)]
    return images, z, used


__all__ = ["BACKOFF_SCALES", "back_off", "back_off_sweep"]
