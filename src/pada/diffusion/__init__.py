"""Gaussian diffusion for DiffAE: schedules, forward process, DDIM sampling and inversion.

Knows nothing about networks: samplers take ``model_fn(x_t, t) -> ε̂`` with ``t`` the (B,) int64
original timesteps. See :mod:`pada.diffusion.schedule`, :mod:`pada.diffusion.ddim`,
:mod:`pada.diffusion.multistep` and the named samplers of :mod:`pada.diffusion.samplers`.
"""

from pada.diffusion.ddim import (
    ddim_invert,
    ddim_reverse_step,
    ddim_sample,
    ddim_step,
    eps_mse_loss,
    resolve_steps,
)
from pada.diffusion.multistep import multistep_invert, multistep_sample
from pada.diffusion.samplers import SAMPLERS, get_sampler, sampler_steps
from pada.diffusion.schedule import (
    Schedule,
    SpacedSchedule,
    alpha_sigma,
    ddim_schedule,
    eps_from_v,
    extract,
    linear_schedule,
    log_snr_table,
    logsnr_schedule,
    logsnr_timesteps,
    predict_x0,
    q_sample,
    sample_timesteps,
    space_timesteps,
    spaced,
    v_target,
)

__all__ = [
    "SAMPLERS",
    "Schedule",
    "SpacedSchedule",
    "alpha_sigma",
    "ddim_invert",
    "ddim_reverse_step",
    "ddim_sample",
    "ddim_schedule",
    "ddim_step",
    "eps_from_v",
    "eps_mse_loss",
    "extract",
    "get_sampler",
    "linear_schedule",
    "log_snr_table",
    "logsnr_schedule",
    "logsnr_timesteps",
    "multistep_invert",
    "multistep_sample",
    "predict_x0",
    "q_sample",
    "resolve_steps",
    "sample_timesteps",
    "sampler_steps",
    "space_timesteps",
    "spaced",
    "v_target",
]
