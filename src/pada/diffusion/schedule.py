"""Noise schedules of DiffAE: float64 tables, DDIM spacing, forward process, x̂0 (paper Eq. 3).

Everything here is a pure function over frozen schedules. Tables are computed in float64 numpy,
like the official ``GaussianDiffusionBeatGans``, and cast to float32 only where they meet a tensor
(official ``_extract_into_tensor``). Timesteps ``t`` are always *original* steps 0..T-1; a spaced
schedule keeps its own ``timestep_map`` and the sampler asks it for the previous/next step.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from pada.errors import PadaError


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def _tables(betas: np.ndarray) -> dict[str, np.ndarray]:
    """The official coefficient tables from betas (float64)."""
    alphas = 1.0 - betas
    ac = np.cumprod(alphas, axis=0)
    return {
        "betas": betas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": np.append(1.0, ac[:-1]),
        "alphas_cumprod_next": np.append(ac[1:], 0.0),
        "sqrt_alphas_cumprod": np.sqrt(ac),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ac),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ac - 1.0),
    }


@dataclass(frozen=True, eq=False)
class Schedule:
    """A discrete diffusion schedule q(x_t | x_0) = N(sqrt(ᾱ_t) x_0, (1 - ᾱ_t) I), t = 0..T-1.

    Attributes (float64, read-only, shape (T,)): ``betas``, ``alphas_cumprod`` (ᾱ_t),
    ``alphas_cumprod_prev`` (ᾱ_{t-1}, 1 at t=0), ``alphas_cumprod_next`` (ᾱ_{t+1}, 0 at the end),
    ``sqrt_alphas_cumprod``, ``sqrt_one_minus_alphas_cumprod``, ``sqrt_recip_alphas_cumprod``,
    ``sqrt_recipm1_alphas_cumprod``.
    """

    betas: np.ndarray
    alphas_cumprod: np.ndarray = field(init=False)
    alphas_cumprod_prev: np.ndarray = field(init=False)
    alphas_cumprod_next: np.ndarray = field(init=False)
    sqrt_alphas_cumprod: np.ndarray = field(init=False)
    sqrt_one_minus_alphas_cumprod: np.ndarray = field(init=False)
    sqrt_recip_alphas_cumprod: np.ndarray = field(init=False)
    sqrt_recipm1_alphas_cumprod: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        betas = np.asarray(self.betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0) & (betas <= 1)).all():
            raise PadaError("Schedule: betas must be a 1-D array in (0, 1]")
        for k, v in _tables(betas).items():
            object.__setattr__(self, k, _frozen(v))

    @property
    def T(self) -> int:  # noqa: N802 - the paper's symbol
        return int(self.betas.shape[0])

    @property
    def base(self) -> Schedule:
        return self


@dataclass(frozen=True, eq=False)
class SpacedSchedule(Schedule):
    """A schedule that keeps only some original steps (official ``SpacedDiffusionBeatGans``).

    ``timestep_map[i]`` is the original t of spaced index i (ascending); the tables are indexed by
    i. Betas are ``1 - ᾱ_t / ᾱ_{prev kept}``, so ``alphas_cumprod[i] == base.alphas_cumprod[t_i]``
    (to 1 ulp in float64). ``alphas_cumprod_prev[i]`` is ᾱ of the previous *kept* step.
    """

    timestep_map: tuple[int, ...] = ()
    base_schedule: Schedule | None = None

    @property
    def base(self) -> Schedule:
        assert self.base_schedule is not None
        return self.base_schedule

    @property
    def num_steps(self) -> int:
        return len(self.timestep_map)

    def timesteps_tensor(self, device: torch.device | str | None = None) -> Tensor:
        """(N,) int64 original timesteps, ascending."""
        return torch.tensor(self.timestep_map, dtype=torch.int64, device=device)


@lru_cache(maxsize=8)
def linear_schedule(T: int = 1000) -> Schedule:  # noqa: N803
    """DDPM linear betas from 1e-4 to 0.02 (scaled by 1000/T as in the official code)."""
    scale = 1000 / T
    return Schedule(np.linspace(scale * 0.0001, scale * 0.02, T, dtype=np.float64))


def space_timesteps(T: int, section: str | int) -> list[int]:  # noqa: N803
    """Original timesteps kept by a spaced sampler, ascending (official ``space_timesteps``).

    ``"ddimN"``: the smallest integer stride s with ``len(range(0, T, s)) == N``; kept steps are
    ``0, s, 2s, ...`` (so the last one is not T-1). An int N (or ``"N"``) spreads N steps evenly
    over ``0..T-1`` with rounding, including both ends (the official section-count rule).
    """
    if isinstance(section, str) and section.startswith("ddim"):
        try:
            n = int(section[4:])
        except ValueError:
            raise PadaError(f"bad DDIM section {section!r}; expected e.g. 'ddim25'") from None
        for stride in range(1, T):
            if len(range(0, T, stride)) == n:
                return list(range(0, T, stride))
        raise PadaError(f"cannot make exactly {n} DDIM steps out of T={T} with an integer stride")
    try:
        n = int(section)
    except (TypeError, ValueError):
        raise PadaError(f"bad timestep section {section!r}; expected 'ddimN' or an integer") from None
    if not 1 <= n <= T:
        raise PadaError(f"cannot take {n} steps out of T={T}")
    frac = 1.0 if n <= 1 else (T - 1) / (n - 1)
    return sorted({round(i * frac) for i in range(n)})


def spaced(schedule: Schedule, timesteps: list[int] | tuple[int, ...]) -> SpacedSchedule:
    """The spaced schedule over the given original ``timesteps`` (any order; duplicates dropped)."""
    keep = sorted({int(t) for t in timesteps})
    if not keep or keep[0] < 0 or keep[-1] >= schedule.T:
        raise PadaError(f"timesteps must lie in 0..{schedule.T - 1}")
    base_ac = schedule.alphas_cumprod
    betas, last = [], 1.0
    for t in keep:
        betas.append(1.0 - base_ac[t] / last)
        last = base_ac[t]
    return SpacedSchedule(np.asarray(betas), timestep_map=tuple(keep), base_schedule=schedule)


@lru_cache(maxsize=32)
def ddim_schedule(steps: int, T: int = 1000) -> SpacedSchedule:  # noqa: N803
    """``spaced(linear_schedule(T), space_timesteps(T, f"ddim{steps}"))``, cached."""
    return spaced(linear_schedule(T), space_timesteps(T, f"ddim{steps}"))


def log_snr_table(schedule: Schedule) -> np.ndarray:
    """λ_t = log(α_t/σ_t) = ½·log(ᾱ_t / (1 - ᾱ_t)) for t = 0..T-1 (float64, decreasing)."""
    ac = schedule.alphas_cumprod
    return 0.5 * (np.log(ac) - np.log1p(-ac))


def logsnr_timesteps(schedule: Schedule, n: int) -> list[int]:
    """``n`` original timesteps evenly spaced in log-SNR λ between the first and last step of the
    official ``"ddimN"`` spacing (t = 0 and (n-1)·ceil(T/n), capped at T-1), ascending.

    The official spacing is even in t, which leaves one wide λ gap at the clean end (λ 4.6 -> 1.1 with
    10 steps out of 1000) where a fast sampler makes most of its error; even λ spreads the steps over
    the ODE's natural variable (Lu et al., DPM-Solver, 2022). Each step is the integer t whose λ is
    nearest its target, made strictly increasing.
    """
    T = schedule.T  # noqa: N806
    n = int(n)
    if not 1 <= n <= T:
        raise PadaError(f"cannot take {n} log-SNR steps out of T={T}")
    last = min(T - 1, (n - 1) * -(-T // n))
    if n > last + 1:
        raise PadaError(f"cannot take {n} distinct log-SNR steps out of 0..{last}")
    lam = log_snr_table(schedule)[: last + 1]
    keep = [int(np.argmin(np.abs(lam - v))) for v in np.linspace(lam[0], lam[last], n)]
    for i in range(1, n):  # strictly increasing, then room for the later ones below ``last``
        keep[i] = max(keep[i], keep[i - 1] + 1)
    keep[-1] = last
    for i in range(n - 2, -1, -1):
        keep[i] = min(keep[i], keep[i + 1] - 1)
    return keep


@lru_cache(maxsize=32)
def logsnr_schedule(steps: int, T: int = 1000) -> SpacedSchedule:  # noqa: N803
    """``spaced(linear_schedule(T), logsnr_timesteps(linear_schedule(T), steps))``, cached."""
    base = linear_schedule(T)
    return spaced(base, logsnr_timesteps(base, steps))


_DEVICE_TABLES: OrderedDict[tuple[int, str], tuple[np.ndarray, Tensor]] = OrderedDict()


def _table_on(table: np.ndarray, device: torch.device) -> Tensor:
    """``table`` as a float32 tensor on ``device``, copied there once (small LRU cache, keyed by identity)."""
    key = (id(table), str(device))
    hit = _DEVICE_TABLES.get(key)
    if hit is not None and hit[0] is table:
        _DEVICE_TABLES.move_to_end(key)
        return hit[1]
    tab = torch.from_numpy(np.array(table, dtype=np.float64)).float().to(device)
    _DEVICE_TABLES[key] = (table, tab)  # keeps ``table`` alive, so its id is not reused while cached
    while len(_DEVICE_TABLES) > 256:
        _DEVICE_TABLES.popitem(last=False)
    return tab


def extract(table: np.ndarray, index: Tensor, ndim: int) -> Tensor:
    """``table[index]`` as float32, shaped (B, 1, ..., 1) with ``ndim`` dims (``_extract_into_tensor``).

    On an accelerator the table is indexed on the device (no copy of ``index`` to the host, so sampling
    loops never wait for the device); on the CPU through numpy. Both give the float64 value cast to float32.
    """
    if index.device.type == "cpu":
        vals = np.asarray(table)[index.detach().numpy()]  # fancy indexing copies: writable
        out = torch.from_numpy(vals).float()
    else:
        out = _table_on(table, index.device)[index]
    return out.reshape(out.shape + (1,) * (ndim - out.dim()))


def _as_t(t: Tensor | int, batch: int, device: torch.device) -> Tensor:
    if not torch.is_tensor(t):
        t = torch.tensor([int(t)], device=device)
    t = t.to(device=device, dtype=torch.int64)
    if t.dim() == 0:
        t = t[None]
    return t.expand(batch) if t.shape[0] == 1 else t


def _at(schedule: Schedule, t: Tensor | int, x: Tensor, *tables: str) -> tuple[Tensor, ...]:
    """The base schedule's ``tables`` at the original timesteps ``t``, each shaped (B, 1, ..., 1) to
    broadcast over ``x`` (B, ...)."""
    s = schedule.base
    t = _as_t(t, x.shape[0], x.device)
    return tuple(extract(getattr(s, name), t, x.dim()) for name in tables)


def alpha_sigma(schedule: Schedule, t: Tensor | int, x: Tensor) -> tuple[Tensor, Tensor]:
    """(sqrt(ᾱ_t), sqrt(1 - ᾱ_t)) at the original timesteps t, each (B, 1, ..., 1) to broadcast over x."""
    return _at(schedule, t, x, "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod")


def q_sample(schedule: Schedule, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """Forward process x_t = sqrt(ᾱ_t)·x0 + sqrt(1 - ᾱ_t)·ε (paper Eq. 1; official ``q_sample``).

    Args:
        schedule: base schedule (a spaced one is mapped to its base; t is original).
        x0: (B, C, H, W) clean image in [-1, 1]; t: (B,) int64 original timesteps;
        noise: ε, same shape as x0.
    """
    sqrt_a, sqrt_1ma = alpha_sigma(schedule, t, x0)
    return sqrt_a * x0 + sqrt_1ma * noise


def predict_x0(schedule: Schedule, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """x̂0 = (x_t - sqrt(1 - ᾱ_t)·ε) / sqrt(ᾱ_t) (paper Eq. 3), computed as the official
    ``sqrt(1/ᾱ_t)·x_t - sqrt(1/ᾱ_t - 1)·ε``. Differentiable in x_t and eps; no clamping.

    Args: x_t, eps: (B, C, H, W); t: (B,) int64 original timesteps.
    """
    recip, recipm1 = _at(schedule, t, x_t, "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod")
    return recip * x_t - recipm1 * eps


def v_target(schedule: Schedule, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """The v-prediction target v = sqrt(ᾱ_t)·ε - sqrt(1 - ᾱ_t)·x0 (Salimans & Ho, ICLR 2022).

    Args: x0, noise: (B, C, H, W); t: (B,) int64 original timesteps.
    """
    sqrt_a, sqrt_1ma = alpha_sigma(schedule, t, x0)
    return sqrt_a * noise - sqrt_1ma * x0


def eps_from_v(schedule: Schedule, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """ε̂ = sqrt(ᾱ_t)·v̂ + sqrt(1 - ᾱ_t)·x_t: the noise a v-prediction network implies.

    Exact inverse of :func:`v_target` given ``x_t = q_sample(x0, t, ε)``; lets every sampler, the
    inversion and Eq. 3 keep working on ε. Args: x_t, v: (B, C, H, W); t: (B,) int64 original timesteps.
    """
    sqrt_a, sqrt_1ma = alpha_sigma(schedule, t, x_t)
    return sqrt_a * v + sqrt_1ma * x_t


def sample_timesteps(
    batch: int,
    T: int = 1000,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:  # noqa: N803
    """(batch,) int64 timesteps drawn uniformly from 0..T-1 with ``generator``."""
    if device is None:
        device = generator.device if generator is not None else "cpu"
    return torch.randint(0, T, (batch,), generator=generator, device=device)
