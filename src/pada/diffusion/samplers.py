"""Named samplers: which ODE/SDE solver and which step spacing ``sampler="..."`` means (data, one place).

=============  ====================================================  ==========================
name           solver                                                steps ``N`` mean
=============  ====================================================  ==========================
``ddim``       DDIM (η ≥ 0), the official DiffAE sampler: default     ``"ddimN"``: even in t
               of DiffAE (the conformance path); 25 steps by default  (official)
``multistep``  second-order multistep (DPM-Solver++(2M)-style,        ``"logsnrN"``: even in
               :mod:`pada.diffusion.multistep`), deterministic:       log-SNR, same end steps
               default of face aging; 8 steps by default
=============  ====================================================  ==========================

:func:`sample` and :func:`invert` dispatch on the name; an integer ``steps`` takes the sampler's own
spacing, a section string (``"ddim10"``, ``"logsnr10"``) or a :class:`SpacedSchedule` is used as given.
Both samplers read and write the same x_T convention, so an x_T inverted by one renders with the other.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
from torch import Tensor

from pada.diffusion.ddim import ModelFn, ddim_invert, ddim_sample, resolve_steps
from pada.diffusion.multistep import multistep_invert, multistep_sample
from pada.diffusion.schedule import Schedule, SpacedSchedule
from pada.errors import PadaError


@dataclass(frozen=True)
class SamplerSpec:
    """A named sampler: ``solver`` ("ddim" | "multistep") on ``spacing`` ("ddim" | "logsnr") steps."""

    name: str
    solver: str
    spacing: str
    stochastic: bool
    default_steps: int
    summary: str


SAMPLERS: dict[str, SamplerSpec] = {
    "ddim": SamplerSpec("ddim", "ddim", "ddim", True, 25,
                        "DDIM on the official even-in-t steps (the paper's; η > 0 allowed)"),
    "multistep": SamplerSpec("multistep", "multistep", "logsnr", False, 8,
                             "2nd-order multistep ODE solver on even log-SNR steps (deterministic)"),
}
# ``default_steps``: ddim 25 is the paper's setting; multistep 8 reconstructs a face to 40 dB and keeps
# `pada age -n 8` at 64² under 3 s on two CPU cores (docs/speed.md, "Steps vs quality").
DEFAULT_SAMPLER = "ddim"  # DiffAE.render / encode_stochastic: the official path (conformance)
AGING_SAMPLER = "multistep"  # AgingPipeline, `pada age`, the web app: fast and closer to the exact ODE


def get_sampler(name: str) -> SamplerSpec:
    """The :class:`SamplerSpec` called ``name``; one-line :class:`PadaError` when unknown."""
    spec = SAMPLERS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise PadaError(f"sampler {name!r} unknown (one of {', '.join(SAMPLERS)})")
    return spec


def sampler_steps(name: str, steps: int | str | SpacedSchedule,
                  schedule: Schedule | None = None) -> SpacedSchedule:
    """The spaced schedule sampler ``name`` runs for ``steps`` (an int takes the sampler's spacing)."""
    spec = get_sampler(name)
    if isinstance(steps, numbers.Integral) and not isinstance(steps, bool):
        steps = f"{spec.spacing}{int(steps)}"
    return resolve_steps(steps, schedule)


def sample(
    name: str,
    model_fn: ModelFn,
    x_T: Tensor,  # noqa: N803
    steps: int | str | SpacedSchedule = 25,
    *,
    eta: float = 0.0,
    clip: bool = True,
    generator: torch.Generator | None = None,
    progress: bool = False,
    schedule: Schedule | None = None,
) -> Tensor:
    """x_T -> x_0 with sampler ``name`` (see the module table); arguments as :func:`ddim_sample`.
    ``eta > 0`` needs a stochastic sampler (``ddim``)."""
    spec = get_sampler(name)
    if eta != 0 and not spec.stochastic:
        raise PadaError(f"sampler {name!r} is deterministic: eta must be 0 (got {eta}); use sampler 'ddim'")
    sched = sampler_steps(name, steps, schedule)
    if spec.solver == "ddim":
        return ddim_sample(model_fn, x_T, sched, eta=eta, clip=clip, generator=generator, progress=progress)
    return multistep_sample(model_fn, x_T, sched, clip=clip, progress=progress)


def invert(
    name: str,
    model_fn: ModelFn,
    x0: Tensor,
    steps: int | str | SpacedSchedule = 250,
    *,
    clip: bool = True,
    progress: bool = False,
    schedule: Schedule | None = None,
) -> Tensor:
    """x_0 -> x_T (DiffAE's stochastic encoding) with sampler ``name``; arguments as :func:`ddim_invert`."""
    spec = get_sampler(name)
    sched = sampler_steps(name, steps, schedule)
    if spec.solver == "ddim":
        return ddim_invert(model_fn, x0, sched, clip=clip, progress=progress)
    return multistep_invert(model_fn, x0, sched, clip=clip, progress=progress)


__all__ = ["DEFAULT_SAMPLER", "SAMPLERS", "SamplerSpec", "get_sampler", "invert", "sample", "sampler_steps"]
