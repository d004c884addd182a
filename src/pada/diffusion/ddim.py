"""DDIM sampling and DDIM inversion (stochastic encoding), exactly as the official DiffAE sampler.

Both loops are pure functions of ``model_fn(x_t, t) -> ε̂`` where ``t`` is the (B,) int64 *original*
timestep (the official ``_WrappedModel`` mapping is done here), a frozen :class:`SpacedSchedule`
and the start tensor. A step (official ``ddim_sample`` / ``ddim_reverse_sample``)::

    x̂0 = sqrt(1/ᾱ_t)·x_t - sqrt(1/ᾱ_t - 1)·ε̂          (paper Eq. 3)
    x̂0 = clamp(x̂0, -1, 1)                              (when clip=True)
    ε  = (sqrt(1/ᾱ_t)·x_t - x̂0) / sqrt(1/ᾱ_t - 1)       (ε re-derived from the clamped x̂0)
    sampling:  x_prev = sqrt(ᾱ_prev)·x̂0 + sqrt(1 - ᾱ_prev - σ²)·ε + σ·z,
               σ = η·sqrt((1-ᾱ_prev)/(1-ᾱ_t))·sqrt(1 - ᾱ_t/ᾱ_prev)        (DDIM, paper Eq. 2)
    inversion: x_next = sqrt(ᾱ_next)·x̂0 + sqrt(1 - ᾱ_next)·ε

ᾱ_prev / ᾱ_next come from the spaced schedule's own tables; ᾱ_prev is 1 at index 0 (the last
sample is the clamped x̂0) and ᾱ_next is 0 at the last index, so the last inversion step returns
the re-derived ε itself (the official ``encode_stochastic`` result).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pada.diffusion.schedule import (
    Schedule,
    SpacedSchedule,
    ddim_schedule,
    extract,
    linear_schedule,
    logsnr_schedule,
    logsnr_timesteps,
    predict_x0,
    q_sample,
    space_timesteps,
    spaced,
)
from pada.errors import PadaError

ModelFn = Callable[[Tensor, Tensor], Tensor]


def resolve_steps(steps: int | str | SpacedSchedule, schedule: Schedule | None = None) -> SpacedSchedule:
    """``25``, ``"ddim25"``, ``"logsnr25"`` (:func:`logsnr_timesteps`) or a SpacedSchedule ->
    SpacedSchedule (default base: T=1000 linear)."""
    if isinstance(steps, SpacedSchedule):
        return steps
    if isinstance(steps, str) and steps.startswith("logsnr"):
        try:
            n = int(steps[6:])
        except ValueError:
            raise PadaError(f"bad log-SNR section {steps!r}; expected e.g. 'logsnr10'") from None
        if schedule is None:
            return logsnr_schedule(n)
        return spaced(schedule, logsnr_timesteps(schedule, n))
    section = steps if isinstance(steps, str) else f"ddim{int(steps)}"
    if schedule is None:
        if section.startswith("ddim"):
            try:
                return ddim_schedule(int(section[4:]))
            except ValueError:
                pass
        schedule = linear_schedule()
    return spaced(schedule, space_timesteps(schedule.T, section))


def _x0_and_eps(
    model_fn: ModelFn, sched: SpacedSchedule, x: Tensor, index: int, clip: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """(idx tensor, x̂0 (clamped if clip), ε re-derived from x̂0) at spaced ``index``."""
    b = x.shape[0]
    idx = torch.full((b,), index, dtype=torch.int64, device=x.device)
    t = torch.full((b,), sched.timestep_map[index], dtype=torch.int64, device=x.device)
    eps_hat = model_fn(x, t).to(x.dtype)
    recip = extract(sched.sqrt_recip_alphas_cumprod, idx, x.dim())
    recipm1 = extract(sched.sqrt_recipm1_alphas_cumprod, idx, x.dim())
    x0 = recip * x - recipm1 * eps_hat
    if clip:
        x0 = x0.clamp(-1, 1)
    eps = (recip * x - x0) / recipm1
    return idx, x0, eps


def ddim_step(
    model_fn: ModelFn,
    x_t: Tensor,
    schedule: SpacedSchedule,
    index: int,
    *,
    eta: float = 0.0,
    clip: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One DDIM sampling step from spaced ``index`` (original t = ``timestep_map[index]``) to
    ``index - 1``. x_t: (B, C, H, W). ``eta > 0`` needs a ``generator`` for the fresh noise."""
    idx, x0, eps = _x0_and_eps(model_fn, schedule, x_t, index, clip)
    ab = extract(schedule.alphas_cumprod, idx, x_t.dim())
    ab_prev = extract(schedule.alphas_cumprod_prev, idx, x_t.dim())
    out = x0 * torch.sqrt(ab_prev)
    if eta > 0:
        if generator is None:
            raise ValueError("ddim_step: eta > 0 draws noise and needs a torch.Generator")
        sigma = eta * torch.sqrt((1 - ab_prev) / (1 - ab)) * torch.sqrt(1 - ab / ab_prev)
        out = out + torch.sqrt(1 - ab_prev - sigma**2) * eps
        if index > 0:
            noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
            out = out + sigma * noise
        return out
    return out + torch.sqrt(1 - ab_prev) * eps


def ddim_reverse_step(
    model_fn: ModelFn, x: Tensor, schedule: SpacedSchedule, index: int, *, clip: bool = True
) -> Tensor:
    """One deterministic DDIM inversion step from spaced ``index`` to ``index + 1``
    (official ``ddim_reverse_sample``, eta 0). At the last index it returns the re-derived ε."""
    idx, x0, eps = _x0_and_eps(model_fn, schedule, x, index, clip)
    ab_next = extract(schedule.alphas_cumprod_next, idx, x.dim())
    return x0 * torch.sqrt(ab_next) + torch.sqrt(1 - ab_next) * eps


def _progress(it: range, progress: bool, desc: str):
    if not progress:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, leave=False)


def ddim_sample(
    model_fn: ModelFn,
    x_T: Tensor,  # noqa: N803
    steps: int | str | SpacedSchedule = 25,
    eta: float = 0.0,
    clip: bool = True,
    generator: torch.Generator | None = None,
    progress: bool = False,
    return_trajectory: bool = False,
    schedule: Schedule | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """DDIM sampling loop x_T -> x_0 (official ``ddim_sample_loop``).

    Args:
        model_fn: ``(x_t (B,C,H,W), t (B,) int64 original) -> ε̂ (B,C,H,W)``.
        x_T: (B, C, H, W) start noise.
        steps: number of DDIM steps (the official ``"ddimN"`` spacing), or a SpacedSchedule.
        eta: DDIM η (0 = deterministic); needs ``generator`` when > 0.
        clip: clamp x̂0 to [-1, 1] at every step (official default).
        schedule: base schedule to space (default: T=1000 linear).
        return_trajectory: also return (N, B, C, H, W): entry k is the sample after step k.
    Returns:
        x_0 (B, C, H, W) in [-1, 1] when clip, [and the trajectory].
    """
    sched = resolve_steps(steps, schedule)
    x = x_T
    traj = []
    for index in _progress(range(sched.num_steps - 1, -1, -1), progress, "DDIM sample"):
        x = ddim_step(model_fn, x, sched, index, eta=eta, clip=clip, generator=generator)
        if return_trajectory:
            traj.append(x)
    if return_trajectory:
        return x, torch.stack(traj)
    return x


def ddim_invert(
    model_fn: ModelFn,
    x0: Tensor,
    steps: int | str | SpacedSchedule = 250,
    clip: bool = True,
    return_trajectory: bool = False,
    progress: bool = False,
    schedule: Schedule | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Deterministic DDIM inversion x_0 -> x_T (official ``ddim_reverse_sample_loop``; DiffAE's
    stochastic encoding). Same arguments as :func:`ddim_sample`; the result is the re-derived ε at
    the last kept step (see module docstring). Trajectory entry k is the result of step k."""
    sched = resolve_steps(steps, schedule)
    x = x0
    traj = []
    for index in _progress(range(sched.num_steps), progress, "DDIM invert"):
        x = ddim_reverse_step(model_fn, x, sched, index, clip=clip)
        if return_trajectory:
            traj.append(x)
    if return_trajectory:
        return x, torch.stack(traj)
    return x


def eps_mse_loss(
    model_fn: ModelFn, x0: Tensor, t: Tensor, noise: Tensor, schedule: Schedule | None = None
) -> Tensor:
    """DDPM/DiffAE training loss E‖ε_θ(x_t, t) - ε‖² (mean over all elements), x_t = q_sample(x0, t, ε).

    x0, noise: (B, C, H, W); t: (B,) int64 original timesteps. Returns a scalar.
    """
    s = schedule if schedule is not None else linear_schedule()
    x_t = q_sample(s, x0, t, noise)
    return (model_fn(x_t, t).float() - noise.float()).square().mean()


__all__ = [
    "ddim_invert",
    "ddim_reverse_step",
    "ddim_sample",
    "ddim_step",
    "eps_mse_loss",
    "predict_x0",
    "resolve_steps",
]
