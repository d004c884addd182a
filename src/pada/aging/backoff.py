"""Blotch back-off: re-render the outputs whose skin brightness changed unevenly with a shorter edit.

The shipped 64-px DiffAE has seen few old faces, and a long edit toward one makes its decoder paint the
brightening of the upper head (what the age critics read as greying) as a pale blob on a forehead or
cheek, and at young targets hollow, darkened eye sockets. The tone guard (:mod:`pada.aging.guard`) bounds
each skin pixel's change; it cannot tell one even change from a blotch within that bound.
:func:`pada.evaluation.scores.blotch` can: the spread of the smoothed luma change over the skin.

:func:`back_off` checks every output after the decode; an output whose score is above ``limit`` is
rendered again from the same start noise with its edit ``z_age − z_src`` shortened to each of ``scales``
in turn (0.75, then 0.5 of its length), and the first render within the limit replaces it; when none is,
the least blotched of the tries is kept. Outputs within the limit are not touched, so the back-off costs
one or two renders per blotched output and nothing otherwise. Like the guards it is inference-only (a pada
addition, not the paper's); it trades some of the edit's length — so some age — on the outputs it
catches for an image without blotches. Measured effect: docs/pada_method.md ("Tried in session 25").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from pada.errors import PadaError

#: the edit lengths tried, in order, as fractions of an output's own edit
BACKOFF_SCALES: tuple[float, ...] = (0.75, 0.5)


def back_off(images: torch.Tensor, z_src: torch.Tensor, z_age: torch.Tensor, image: torch.Tensor,
             limit: float, render: Callable[[list[int], torch.Tensor], torch.Tensor],
             scales: Sequence[float] = BACKOFF_SCALES) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Outputs ``images`` (N, 3, H, W), rendered from the codes ``z_age`` (N, S) of the input ``image``
    (1, 3, H, W) whose own code is ``z_src`` (1, S), with those above ``limit`` on
    :func:`~pada.evaluation.scores.blotch` rendered again at shorter edits (module docstring).
    ``render(rows, z)`` renders the codes ``z`` (len(rows), S) from the start noise of outputs ``rows``.
    Returns the images, the codes they were rendered from and each output's edit scale (1.0 = kept)."""
    from pada.evaluation.scores import blotch

    if not 0.0 < limit < 1.0:
        raise PadaError(f"blotch guard must be in (0, 1), got {limit:g}")
    if not scales or not all(0.0 <= s < 1.0 for s in scales):
        raise PadaError(f"back-off scales must be in [0, 1), got {list(scales)}")
    images, z_age = images.clone(), z_age.clone()
    z_src = z_src.to(z_age.device, z_age.dtype)
    edit = z_age - z_src
    src = image.detach().cpu()
    score = blotch(images.cpu(), src)
    used = [1.0] * images.shape[0]
    todo = [k for k in range(images.shape[0]) if float(score[k]) > limit]
    for s in scales:
        if not todo:
            break
        z = z_src + s * edit[todo]
        tries = render(todo, z)
        tried = blotch(tries.cpu(), src)
        for j, k in enumerate(todo):
            if float(tried[j]) < float(score[k]):  # the least blotched so far
                images[k] = tries[j].to(images.device, images.dtype)
                z_age[k], score[k], used[k] = z[j], tried[j], s
        todo = [k for k in todo if float(score[k]) > limit]
    return images, z_age, used


__all__ = ["BACKOFF_SCALES", "back_off"]
