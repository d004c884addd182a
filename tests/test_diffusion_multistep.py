"""The second-order multistep solver, the log-SNR spacing and the named samplers, against closed forms.

The analytic model is the exact ε of a Gaussian data distribution N(μ, diag(s²)): its probability-flow
ODE keeps (x_t - α_t μ) / sqrt(α_t² s² + σ_t²) constant, so the exact solution between any two steps is
known and every sampler's discretisation error can be measured.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pada import diffusion as D
from pada.diffusion.multistep import log_snr, multistep_invert, multistep_sample
from pada.errors import PadaError


class Gaussian:
    """Exact ε̂(x_t, t) of x0 ~ N(mu, sd²) per element, and the exact ODE flow / end points."""

    def __init__(self, shape: tuple[int, ...], seed: int = 0, sd_range: tuple[float, float] = (0.05, 0.55)):
        g = torch.Generator().manual_seed(seed)
        self.mu = ((torch.rand(shape[1:], generator=g) - 0.5) * 0.8).double()
        self.sd = (sd_range[0] + torch.rand(shape[1:], generator=g) * (sd_range[1] - sd_range[0])).double()
        self.ac = D.linear_schedule().alphas_cumprod
        self.calls: list[torch.Tensor] = []

    def eps_at(self, x: torch.Tensor, ab) -> torch.Tensor:
        return (1 - ab) ** 0.5 * (x - ab**0.5 * self.mu) / (ab * self.sd**2 + 1 - ab)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls.append(t.clone())
        ab = torch.from_numpy(self.ac[t.numpy()]).to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        return self.eps_at(x, ab).to(x.dtype)

    def flow(self, x: torch.Tensor, ab_s: float, ab_t: float) -> torch.Tensor:
        var = lambda ab: ab * self.sd**2 + 1 - ab  # noqa: E731
        return ab_t**0.5 * self.mu + var(ab_t).sqrt() * (x - ab_s**0.5 * self.mu) / var(ab_s).sqrt()

    def exact_sample(self, x_T: torch.Tensor, sched: D.SpacedSchedule) -> torch.Tensor:  # noqa: N803
        """The sampling loops' target: exact ODE from the first to the last evaluated step, then x̂0 there."""
        a0, a_last = sched.alphas_cumprod[0], sched.alphas_cumprod[-1]
        x = self.flow(x_T, a_last, a0)
        return (x - (1 - a0) ** 0.5 * self.eps_at(x, a0)) / a0**0.5

    def exact_invert(self, x0: torch.Tensor, sched: D.SpacedSchedule) -> torch.Tensor:
        """The inversion loops' target: exact ODE from step 0 to the last step, then the ε there."""
        a0, a_last = sched.alphas_cumprod[0], sched.alphas_cumprod[-1]
        return self.eps_at(self.flow(x0, a0, a_last), a_last)


SHAPE = (2, 3, 4, 4)


def _data(model: Gaussian, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(SHAPE, generator=g, dtype=torch.float64)  # noqa: N806
    x0 = model.mu + model.sd * torch.randn(SHAPE, generator=g, dtype=torch.float64)
    return x_T, x0


def _err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def test_logsnr_timesteps_even_in_lambda() -> None:
    s = D.linear_schedule()
    for n in (2, 5, 10, 25, 200, 1000):
        ts = D.logsnr_timesteps(s, n)
        assert len(ts) == n and ts[0] == 0 and all(b > a for a, b in zip(ts, ts[1:], strict=False))
        assert ts[-1] == min(999, D.ddim_schedule(n).timestep_map[-1] if n < 1000 else 999)
    ts = D.logsnr_timesteps(s, 10)
    assert ts[-1] == 900 == D.ddim_schedule(10).timestep_map[-1]  # the official end points
    gaps = -np.diff(D.log_snr_table(s)[ts])
    assert gaps.max() / gaps.min() < 1.3  # even in λ (the official "ddim10" gaps range 0.5 .. 3.5)
    assert D.logsnr_timesteps(s, 1) == [0]
    assert D.resolve_steps("logsnr10").timestep_map == tuple(ts)
    assert D.resolve_steps("logsnr10") is D.logsnr_schedule(10)
    assert D.resolve_steps("logsnr4", D.linear_schedule(100)).timestep_map[-1] == 75
    with pytest.raises(PadaError, match="logsnrX"):
        D.resolve_steps("logsnrX")
    with pytest.raises(PadaError, match="1001"):
        D.logsnr_timesteps(s, 1001)
    assert log_snr(1.0) == np.inf and log_snr(0.0) == -np.inf


@pytest.mark.parametrize("steps", ["ddim10", "logsnr10", "logsnr1", "logsnr2", 25])
def test_order_one_is_ddim(steps) -> None:
    """order=1 is DDIM (η = 0) exactly: same calls, same result, with the clamp active."""
    model = Gaussian((2, 3, 4, 4), sd_range=(0.8, 1.2))  # wide data: the x̂0 clamp bites
    g = torch.Generator().manual_seed(3)
    x_T = torch.randn(2, 3, 4, 4, generator=g)  # noqa: N806
    x0 = (torch.rand(2, 3, 4, 4, generator=g) * 2 - 1)
    for clip in (True, False):
        torch.testing.assert_close(multistep_sample(model, x_T, steps, clip=clip, order=1),
                                   D.ddim_sample(model, x_T, steps, clip=clip), atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(multistep_invert(model, x0, steps, clip=clip, order=1),
                                   D.ddim_invert(model, x0, steps, clip=clip), atol=2e-5, rtol=1e-5)


def test_sample_well_below_ddim_and_second_order() -> None:
    model = Gaussian(SHAPE)
    x_T, _ = _data(model)  # noqa: N806
    err_ms, err_ddim = {}, {}
    for n in (10, 20, 40):
        sched = D.resolve_steps(f"logsnr{n}")
        ref = model.exact_sample(x_T, sched)
        err_ms[n] = _err(multistep_sample(model, x_T, sched, clip=False), ref)
        err_ddim[n] = _err(D.ddim_sample(model, x_T, sched, clip=False), ref)
    assert err_ms[10] < 0.25 * err_ddim[10]
    assert err_ms[20] < err_ms[10] and err_ms[40] < err_ms[20] / 3  # ~4x per doubling: second order
    assert err_ddim[40] > err_ddim[20] / 2.5  # DDIM: ~2x per doubling (first order)
    # on the official even-in-t spacing it is still no worse than DDIM
    sched = D.resolve_steps(10)
    ref = model.exact_sample(x_T, sched)
    assert _err(multistep_sample(model, x_T, sched, clip=False), ref) < _err(
        D.ddim_sample(model, x_T, sched, clip=False), ref)


def test_invert_and_round_trip_well_below_ddim() -> None:
    model = Gaussian(SHAPE)
    _, x0 = _data(model)
    sched = D.resolve_steps("logsnr10")
    ref = model.exact_invert(x0, sched)
    x_T_ms = multistep_invert(model, x0, sched, clip=False)  # noqa: N806
    x_T_ddim = D.ddim_invert(model, x0, sched, clip=False)  # noqa: N806
    assert _err(x_T_ms, ref) < 0.4 * _err(x_T_ddim, ref)
    back_ms = multistep_sample(model, x_T_ms, sched, clip=False)
    back_ddim = D.ddim_sample(model, x_T_ddim, sched, clip=False)
    assert _err(back_ms, x0) < 0.1 * _err(back_ddim, x0)
    # converges: 40 log-SNR steps round-trip to the official end-point mismatch (x_T is taken at
    # ᾱ = 0 by the inversion and at ᾱ(t_last) ~ 1e-4 by the sampler), DDIM still far off
    sched40 = D.resolve_steps("logsnr40")
    back40 = multistep_sample(model, multistep_invert(model, x0, sched40, clip=False), sched40, clip=False)
    assert _err(back40, x0) < 0.25 * _err(back_ms, x0)


def test_calls_shapes_dtypes_trajectory() -> None:
    model = Gaussian(SHAPE)
    sched = D.resolve_steps("logsnr6")
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(SHAPE, dtype=dtype)
        model.calls.clear()
        out, traj = multistep_sample(model, x, sched, return_trajectory=True)
        assert out.shape == SHAPE and out.dtype == dtype and traj.shape == (6, *SHAPE)
        assert torch.equal(traj[-1], out) and out.abs().max() <= 1  # clamped x̂0 at the end
        assert [int(t[0]) for t in model.calls] == list(reversed(sched.timestep_map))
        assert all(t.shape == (2,) and t.dtype == torch.int64 for t in model.calls)
        model.calls.clear()
        inv, traj = multistep_invert(model, x.clamp(-1, 1), sched, return_trajectory=True)
        assert inv.shape == SHAPE and inv.dtype == dtype and traj.shape == (6, *SHAPE)
        assert [int(t[0]) for t in model.calls] == list(sched.timestep_map)
        assert torch.isfinite(inv).all()


def test_one_step_and_ratio_guard() -> None:
    model = Gaussian(SHAPE)
    x_T, x0 = _data(model)  # noqa: N806
    # one step: nothing to extrapolate from; exactly DDIM's single step
    one = D.spaced(D.linear_schedule(), [600])
    torch.testing.assert_close(multistep_sample(model, x_T, one), D.ddim_sample(model, x_T, one))
    torch.testing.assert_close(multistep_invert(model, x0, one), D.ddim_invert(model, x0, one))
    # the even-in-t spacing ends with a λ gap 4.7x the previous: taken at first order by default
    # (min_ratio=0.5); with the guard off the result changes. Even log-SNR gaps never trigger it.
    ddim10, log10 = D.resolve_steps(10), D.resolve_steps("logsnr10")
    guarded = multistep_sample(model, x_T, ddim10)
    assert not torch.equal(guarded, multistep_sample(model, x_T, ddim10, min_ratio=0))
    assert torch.equal(multistep_sample(model, x_T, log10), multistep_sample(model, x_T, log10, min_ratio=0))
    with pytest.raises(PadaError, match="order must be one of"):
        multistep_sample(model, x_T, 5, order=3)
    with pytest.raises(PadaError, match="order must be one of"):
        multistep_invert(model, x0, 5, order=0)


def test_named_samplers_dispatch() -> None:
    model = Gaussian(SHAPE)
    x_T, x0 = _data(model)  # noqa: N806
    assert set(D.SAMPLERS) == {"ddim", "multistep"}
    assert D.sampler_steps("ddim", 10) is D.ddim_schedule(10)
    assert D.sampler_steps("multistep", np.int64(10)) is D.logsnr_schedule(10)
    assert D.sampler_steps("multistep", "ddim10") is D.ddim_schedule(10)  # a section is used as given
    torch.testing.assert_close(D.samplers.sample("ddim", model, x_T, 10), D.ddim_sample(model, x_T, 10))
    torch.testing.assert_close(D.samplers.sample("multistep", model, x_T, 10),
                               multistep_sample(model, x_T, "logsnr10"))
    torch.testing.assert_close(D.samplers.invert("multistep", model, x0, 10),
                               multistep_invert(model, x0, "logsnr10"))
    torch.testing.assert_close(D.samplers.invert("ddim", model, x0, 10), D.ddim_invert(model, x0, 10))
    g = torch.Generator().manual_seed(0)
    noisy = D.samplers.sample("ddim", model, x_T, 5, eta=1.0, generator=g)
    assert not torch.equal(noisy, D.ddim_sample(model, x_T, 5))
    with pytest.raises(PadaError, match="deterministic: eta must be 0"):
        D.samplers.sample("multistep", model, x_T, 5, eta=0.5)
    with pytest.raises(PadaError, match="sampler 'dpm' unknown"):
        D.get_sampler("dpm")
