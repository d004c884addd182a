"""Ageing-pattern draws: the N results of one request differ in how far the hair ages.

On a DiffAE with an eigenface coarse code (``DiffAEConfig.coarse_pca``, the shipped ``diffae-demo64``) an
edit ``d = z_age − z_src`` reaches the image mostly through the change it makes to the coarse image, and
that change is linear in the code's last k (eigenface) entries: ``Δcoarse = scale · d_k @ basis``. So the
edit can be split by region: its *hair part* ``h`` is the coarse change inside the head but outside the skin
(:func:`hair_mask`), projected back onto the eigenface basis. Draw i renders

    z_src + d + t_i · h        (the hair's change scaled by 1 + t_i, the face's left as the edit has it)

so one result greys (or, at young targets, darkens) the hair twice as far as the edit and another leaves it
as it was, while the face ages alike in all of them: people differ in how early their hair shows their age.
``t_i = τ · (η_i · u)`` clipped to [−1, 1], with η_i the draw's standard-normal PAE noise and u a fixed
seeded unit vector, so t_i ~ N(0, τ²) and an output's t is the same whatever N; the PAE mean (η = 0) is
unchanged. The variation scales with the edit: a face asked for its own age (an edit near zero) gets N
near-identical hair, a face asked for eighty N different heads of hair. The face's part is never lengthened:
an earlier form that moved the edit between hair and face ((1 + t)·h + (1 − t)·(rest)) broke faces whose
face part it doubled (docs/pada_history.md, "Tried in session 34").
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from pada.errors import PadaError
from pada.validation import check_number

#: seed of the fixed unit vector u that reads a draw's pattern factor off its PAE noise
PATTERN_SEED = 4112
#: largest accepted τ (``PadaConfig.draw_pattern``)
MAX_PATTERN = 10.0


def pattern_value(value: float, what: str = "draw pattern") -> float:
    """``value`` as a float in [0, MAX_PATTERN]; anything else is a :class:`PadaError` naming ``what``."""
    return float(check_number(what, value, lo=0.0, hi=MAX_PATTERN))


@functools.lru_cache(maxsize=4)
def hair_mask(size: int) -> torch.Tensor:
    """(size, size) soft mask, 1 on the hair of an FFHQ-aligned crop: inside the head ellipse
    (:data:`pada.faces.align.HEAD_ELLIPSE`) and outside the skin ellipse
    (:data:`pada.evaluation.scores.SKIN_ELLIPSE`), its edge softened by a 3×3 box filter."""
    from pada.evaluation.scores import head_mask, skin_mask

    hard = (head_mask(size).float() - skin_mask(size)).clamp(0.0, 1.0)
    return F.avg_pool2d(hard[None, None], 3, stride=1, padding=1, count_include_pad=False)[0, 0]


@functools.lru_cache(maxsize=4)
def _pattern_axis(d: int) -> torch.Tensor:
    """u (D,): the fixed unit vector (seed :data:`PATTERN_SEED`) a draw's noise is read along."""
    g = torch.Generator().manual_seed(PATTERN_SEED)
    u = torch.randn(d, generator=g, dtype=torch.float64)
    return (u / u.norm()).float()


def pattern_factors(eta: torch.Tensor, tau: float) -> torch.Tensor:
    """t (N,) = τ · (η · u), clipped to [−1, 1], for draws with noise ``eta`` (N, D)."""
    u = _pattern_axis(eta.shape[1]).to(eta.device)
    return (float(tau) * (eta.float() @ u)).clamp(-1.0, 1.0)


def eigenface_code(diffae):
    """The DiffAE's eigenface coarse code (:class:`pada.networks.unet.EigenfaceCode`); a one-line
    :class:`PadaError` when it has none."""
    coarse = getattr(getattr(diffae, "unet", None), "coarse", None)
    pca = getattr(coarse, "pca", None)
    if pca is None:
        raise PadaError("the draw pattern finds an edit's coarse-image change on the hair and needs a DiffAE "
                        "with an eigenface coarse code (coarse_pca > 0); this one has none: set it to 0")
    return pca


def hair_part(pca, d_code: torch.Tensor) -> torch.Tensor:
    """(N, k): the part of the eigenface-code edits ``d_code`` (N, k) whose coarse change lies on the hair
    (the masked change projected back onto the orthonormal basis; the code's common scale cancels)."""
    basis = pca.basis.to(d_code.device, torch.float32)  # (k, 3·s·s)
    mask = hair_mask(pca.size).to(d_code.device).flatten().repeat(basis.shape[1] // pca.size ** 2)
    return ((d_code.float() @ basis) * mask) @ basis.T


def apply_draw_pattern(diffae, z_src: torch.Tensor, z_age: torch.Tensor, eta: torch.Tensor | None,
                       tau: float) -> torch.Tensor:
    """``z_age`` (N, S) with each draw's hair change scaled by 1 + its pattern factor (module docstring);
    ``z_src`` (1 or N, S), ``eta`` (N, D) the draws' PAE noise. Unchanged for ``tau`` 0 or ``eta`` None (the
    PAE mean); a DiffAE without an eigenface code is a :class:`PadaError`."""
    tau = pattern_value(tau)
    if eta is None or tau == 0.0:
        return z_age
    pca = eigenface_code(diffae)
    k = int(pca.k)
    d = (z_age - z_src).float()
    d_code = d[:, -k:]
    h = hair_part(pca, d_code)
    t = pattern_factors(eta.to(z_age.device), tau)
    d = d.clone()
    d[:, -k:] = d_code + t[:, None] * h
    return (z_src + d).to(z_age.dtype)


__all__ = ["MAX_PATTERN", "PATTERN_SEED", "apply_draw_pattern", "eigenface_code", "hair_mask", "hair_part",
           "pattern_factors", "pattern_value"]
