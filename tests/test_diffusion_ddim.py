"""Diffusion maths with analytic models: spacing rules, schedules, DDIM sampling/inversion, losses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pada import diffusion as D
from pada.errors import PadaError


def _oracle(x_star: torch.Tensor, calls: list | None = None):
    """The exact ε-predictor for a data distribution concentrated on x_star (t = original steps)."""
    s = D.linear_schedule()

    def fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append(t.clone())
        a = D.extract(s.sqrt_alphas_cumprod, t, x_t.dim())
        b = D.extract(s.sqrt_one_minus_alphas_cumprod, t, x_t.dim())
        return (x_t - a * x_star) / b

    return fn


def test_space_timesteps_rules() -> None:
    assert D.space_timesteps(1000, "ddim10") == list(range(0, 1000, 100))
    assert D.space_timesteps(1000, "ddim25") == list(range(0, 1000, 40))
    even = D.space_timesteps(1000, 10)
    assert even[0] == 0 and even[-1] == 999 and len(even) == 10
    assert D.space_timesteps(1000, "4") == [0, 333, 666, 999]
    with pytest.raises(PadaError, match="exactly 999"):
        D.space_timesteps(1000, "ddim999")
    with pytest.raises(PadaError):
        D.space_timesteps(1000, "ddimX")
    with pytest.raises(PadaError):
        D.space_timesteps(1000, 2000)


def test_schedule_tables_and_spacing() -> None:
    s = D.linear_schedule()
    assert s.T == 1000 and s.betas.dtype == np.float64
    assert s.betas[0] == pytest.approx(1e-4) and s.betas[-1] == pytest.approx(0.02)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.betas = np.ones(3)  # type: ignore[misc]
    with pytest.raises(ValueError):
        s.alphas_cumprod[0] = 0.5
    sp = D.spaced(s, [900, 0, 450, 450])
    assert sp.timestep_map == (0, 450, 900)
    np.testing.assert_allclose(sp.alphas_cumprod, s.alphas_cumprod[[0, 450, 900]], rtol=1e-12)
    assert sp.alphas_cumprod_prev[0] == 1.0 and sp.alphas_cumprod_next[-1] == 0.0
    np.testing.assert_allclose(sp.alphas_cumprod_prev[1:], sp.alphas_cumprod[:-1])
    assert sp.base is s
    assert D.ddim_schedule(25) is D.ddim_schedule(25)


def test_q_sample_matches_closed_form_and_x0_inverse() -> None:
    s = D.linear_schedule()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    eps = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    x_t = D.q_sample(s, x0, t, eps)
    ab = torch.from_numpy(s.alphas_cumprod[t.numpy()]).float().view(-1, 1, 1, 1)
    torch.testing.assert_close(x_t, ab.sqrt() * x0 + (1 - ab).sqrt() * eps)
    torch.testing.assert_close(D.predict_x0(s, x_t, t, eps)[:3], x0[:3], atol=1e-4, rtol=0)
    # a spaced schedule maps to its base for original-t functions
    torch.testing.assert_close(D.q_sample(D.ddim_schedule(10), x0, t, eps), x_t)


@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("clip", [True, False])
def test_ddim_sample_recovers_point_mass(steps: int, clip: bool) -> None:
    g = torch.Generator().manual_seed(1)
    x_star = torch.rand(2, 3, 4, 4, generator=g) * 1.8 - 0.9
    x_T = torch.randn(2, 3, 4, 4, generator=g)
    calls: list = []
    out, traj = D.ddim_sample(_oracle(x_star, calls), x_T, steps, clip=clip, return_trajectory=True)
    torch.testing.assert_close(out, x_star, atol=1e-5, rtol=0)
    assert traj.shape == (steps, 2, 3, 4, 4) and torch.equal(traj[-1], out)
    # the network sees original timesteps in descending order, from the schedule's own list
    seen = [int(c[0]) for c in calls]
    assert seen == D.space_timesteps(1000, f"ddim{steps}")[::-1]
    # stochastic DDIM (eta > 0) reaches the same point; it is reproducible under a generator
    a = D.ddim_sample(_oracle(x_star), x_T, steps, eta=1.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, x_star, atol=1e-4, rtol=0)


def test_ddim_invert_point_mass_closed_form() -> None:
    """For the point-mass model ε stays constant along the inversion, so x_T_enc = ε at t=0."""
    g = torch.Generator().manual_seed(2)
    x_star = torch.rand(2, 3, 4, 4, generator=g) * 2 - 1
    calls: list = []
    out, traj = D.ddim_invert(_oracle(x_star, calls), x_star, 10, return_trajectory=True)
    ab0 = D.linear_schedule().alphas_cumprod[0]
    want = x_star * float((1 - np.sqrt(ab0)) / np.sqrt(1 - ab0))
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-4)
    assert [int(c[0]) for c in calls] == list(range(0, 1000, 100))
    assert torch.equal(traj[-1], out) and traj.shape[0] == 10


def test_single_steps_match_loops() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 3, 4, 4, generator=g)

    def fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x_t) * (t.float().view(-1, 1, 1, 1) / 1000)

    sched = D.ddim_schedule(5)
    manual = x
    for i in range(4, -1, -1):
        manual = D.ddim_step(fn, manual, sched, i)
    assert torch.equal(manual, D.ddim_sample(fn, x, sched))
    manual = x
    for i in range(5):
        manual = D.ddim_reverse_step(fn, manual, sched, i)
    assert torch.equal(manual, D.ddim_invert(fn, x, 5))
    with pytest.raises(ValueError, match="Generator"):
        D.ddim_sample(fn, x, 5, eta=0.5)


def test_eps_mse_loss_and_timestep_sampling() -> None:
    g = torch.Generator().manual_seed(4)
    x0 = torch.rand(3, 3, 4, 4, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = D.sample_timesteps(3, 1000, torch.Generator().manual_seed(5))
    assert torch.equal(t, D.sample_timesteps(3, 1000, torch.Generator().manual_seed(5)))
    assert t.dtype == torch.int64 and (t >= 0).all() and (t < 1000).all()
    perfect = D.eps_mse_loss(lambda x_t, tt: noise, x0, t, noise)
    assert perfect.item() == 0.0
    zero = D.eps_mse_loss(lambda x_t, tt: torch.zeros_like(x_t), x0, t, noise)
    assert zero.item() == pytest.approx(noise.square().mean().item(), rel=1e-6)
