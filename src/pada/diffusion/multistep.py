"""A second-order multistep solver of the probability-flow ODE: sampling x_T -> x_0 and inversion x_0 -> x_T.

DDIM (η = 0) is the first-order exponential integrator of the diffusion ODE written in the data
prediction x̂0 (Lu et al., "DPM-Solver++", 2022). With α = sqrt(ᾱ), σ = sqrt(1 - ᾱ) and the
log-SNR λ = log(α/σ), one step from s to t is::

    x_t = (σ_t/σ_s)·x_s + (α_t - (σ_t/σ_s)·α_s)·D          (D = x̂0(x_s, s): DDIM exactly)

Taking D as the linear extrapolation of the last two x̂0 in λ (the "2M" rule of that paper)::

    r = (λ_s - λ_prev) / (λ_t - λ_s),   D = x̂0_s + (x̂0_s - x̂0_prev) / (2r)

makes the step second order at no extra network call (the previous x̂0 is kept). The same formula
integrates the ODE backwards (λ_t < λ_s), which is DiffAE's stochastic encoding with higher order.

Conventions are those of :mod:`pada.diffusion.ddim`, so both samplers are interchangeable over one
:class:`SpacedSchedule` and ``model_fn(x_t, t) -> ε̂`` (``t`` the (B,) int64 *original* steps):

* sampling evaluates the network at spaced indices N-1 .. 0 and ends at ᾱ = 1 (the last result is the
  clamped x̂0 at index 0); inversion evaluates at 0 .. N-1 and ends at ᾱ = 0 (the result is the ε
  re-derived from x̂0 at index N-1).
* ``clip`` clamps every x̂0 to [-1, 1] before it enters D (and the history), as DDIM does.
* a step whose end has infinite λ (ᾱ = 1 or 0, i.e. the last step of either loop) is first order: the
  extrapolation in λ has no finite limit there. The first step has no history and is first order too.
* ``min_ratio``: a step whose λ gap is more than 1/``min_ratio`` times the previous one is taken at first
  order (the extrapolation would reach far beyond the two known points). With the official even-in-t
  spacing this is the step into index 0 (λ 1.1 -> 4.6 with 10 steps, r = 0.21), the case DPM-Solver++
  handles by "lower order final"; with the even-in-λ spacing (``"logsnrN"``, see
  :func:`pada.diffusion.schedule.logsnr_timesteps`) every inner step is second order.

``order=1`` reproduces :func:`pada.diffusion.ddim.ddim_sample` / ``ddim_invert`` (η = 0) to float
rounding. The solver is deterministic: there is no η.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pada.diffusion.ddim import ModelFn, _progress, _x0_and_eps, resolve_steps
from pada.diffusion.schedule import Schedule, SpacedSchedule
from pada.errors import PadaError

ORDERS = (1, 2)


def log_snr(alpha_bar: float) -> float:
    """λ = log(α/σ) = ½·log(ᾱ / (1 - ᾱ)); +inf at ᾱ = 1, -inf at ᾱ = 0."""
    if alpha_bar >= 1.0:
        return math.inf
    if alpha_bar <= 0.0:
        return -math.inf
    return 0.5 * (math.log(alpha_bar) - math.log1p(-alpha_bar))


def _step_coefs(ab_s: float, ab_t: float) -> tuple[float, float]:
    """(a, b) of the first-order step x_t = a·x_s + b·D from ᾱ_s to ᾱ_t (finite at ᾱ_t = 0 or 1)."""
    a = math.sqrt(1.0 - ab_t) / math.sqrt(1.0 - ab_s)
    return a, math.sqrt(ab_t) - a * math.sqrt(ab_s)


def _check_order(order: int) -> None:
    if order not in ORDERS:
        raise PadaError(f"multistep solver: order must be one of {ORDERS}, got {order!r}")


def _solve(
    model_fn: ModelFn,
    x: Tensor,
    sched: SpacedSchedule,
    indices: list[int],
    targets: list[float],
    order: int,
    clip: bool,
    min_ratio: float,
    progress: bool,
    desc: str,
    return_trajectory: bool,
) -> Tensor | tuple[Tensor, Tensor]:
    """Run the steps: at spaced ``indices[k]`` evaluate the network, jump to ᾱ = ``targets[index]``."""
    prev_x0: Tensor | None = None
    prev_lam = 0.0
    traj = []
    for index in _progress(indices, progress, desc):
        _, x0, _ = _x0_and_eps(model_fn, sched, x, index, clip)
        ab_s, ab_t = float(sched.alphas_cumprod[index]), targets[index]
        lam_s, lam_t = log_snr(ab_s), log_snr(ab_t)
        d = x0
        if order >= 2 and prev_x0 is not None and math.isfinite(lam_t):
            r = (lam_s - prev_lam) / (lam_t - lam_s)
            if r >= min_ratio:
                d = x0 + (x0 - prev_x0) * (0.5 / r)
        a, b = _step_coefs(ab_s, ab_t)
        x = x * a + d * b
        prev_x0, prev_lam = x0, lam_s
        if return_trajectory:
            traj.append(x)
    if return_trajectory:
        return x, torch.stack(traj)
    return x


def multistep_sample(
    model_fn: ModelFn,
    x_T: Tensor,  # noqa: N803
    steps: int | str | SpacedSchedule = 25,
    clip: bool = True,
    order: int = 2,
    min_ratio: float = 0.5,
    progress: bool = False,
    return_trajectory: bool = False,
    schedule: Schedule | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Multistep sampling x_T -> x_0 (deterministic; same network calls as :func:`ddim_sample`).

    Args:
        model_fn: ``(x_t (B,C,H,W), t (B,) int64 original) -> ε̂ (B,C,H,W)``.
        x_T: (B, C, H, W) start (noise, or the result of :func:`multistep_invert` / ``ddim_invert``).
        steps: number of steps (the official ``"ddimN"`` spacing, as :func:`ddim_sample`), a section
            (``"logsnrN"``: even in log-SNR, where this solver gains most; what ``sampler="multistep"``
            uses) or a SpacedSchedule.
        clip: clamp x̂0 to [-1, 1] at every step (as DDIM).
        order: 2 (default) or 1 (= DDIM).
        min_ratio: steps whose λ-gap ratio r (previous gap / this gap) is below it are first order.
        schedule: base schedule to space (default: T=1000 linear).
        return_trajectory: also return (N, B, C, H, W): entry k is the sample after step k.
    Returns:
        x_0 (B, C, H, W) in [-1, 1] when clip, [and the trajectory].
    """
    _check_order(order)
    sched = resolve_steps(steps, schedule)
    n = sched.num_steps
    targets = [float(v) for v in sched.alphas_cumprod_prev]  # ᾱ of the next-less-noisy kept step; 1 at 0
    return _solve(model_fn, x_T, sched, list(range(n - 1, -1, -1)), targets, order, clip, min_ratio, progress,
                  "multistep sample", return_trajectory)


def multistep_invert(
    model_fn: ModelFn,
    x0: Tensor,
    steps: int | str | SpacedSchedule = 250,
    clip: bool = True,
    order: int = 2,
    min_ratio: float = 0.5,
    return_trajectory: bool = False,
    progress: bool = False,
    schedule: Schedule | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Multistep inversion x_0 -> x_T: the probability-flow ODE integrated from the image up (DiffAE's
    stochastic encoding at second order). Same arguments as :func:`multistep_sample`; like
    ``ddim_invert`` the image is taken as x at spaced index 0 and the result is the ε re-derived at
    the last index (ᾱ = 0). Trajectory entry k is the result of step k."""
    _check_order(order)
    sched = resolve_steps(steps, schedule)
    targets = [float(v) for v in sched.alphas_cumprod_next]  # 0 at the last index
    return _solve(model_fn, x0, sched, list(range(sched.num_steps)), targets, order, clip, min_ratio,
                  progress, "multistep invert", return_trajectory)


__all__ = ["ORDERS", "log_snr", "multistep_invert", "multistep_sample"]
