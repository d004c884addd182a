"""The DiffAE linear age baseline (paper Fig. 6): move z_sem along one fitted age direction.

DiffAE edits attributes by moving its semantic code along a linear direction. Here the direction is fitted
on age labels:

* ``method="regression"`` (default): per-channel least squares of z on age, z ≈ a + age·w, so
  w = Cov(z, age) / Var(age) (S,) is "the change of z per year". Uses every labelled image and no groups.
* ``method="class_means"``: the difference of the mean codes of the oldest and youngest age groups present,
  divided by the difference of their mean ages (also "per year").

To know how far to move, the source age is read off z by a ridge regression age ≈ b + zᵀv (λ = ``ridge``),
and an edit to ``target_age`` is ``z' = z + strength · (target_age − â(z)) · w``.
:class:`LinearBaselinePipeline` exposes the same ``age(...)`` API as
:class:`~pada.aging.pipeline.AgingPipeline`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pada.aging.backoff import back_off, bound_contrast, contrast_bound_value
from pada.aging.guard import tone_guard as make_tone_guard
from pada.aging.guard import tone_margin
from pada.aging.pipeline import (
    AgingResult,
    _as_batch,
    _Clock,
    decode_chunked,
    low_noise_value,
    mix_start_noise,
    output_seed,
    target_age_of_text,
)
from pada.diffusion.samplers import AGING_SAMPLER, get_sampler
from pada.errors import CheckpointError, PadaError
from pada.frozen import freeze

FORMAT = "pada-linear-age/1"


@dataclass
class LinearAgeDirection:
    """Fitted age direction in z_sem. ``direction`` (S,) per year; ``reg_weight`` (S,), ``reg_bias`` () the
    ridge age read-out; ``z_mean`` (S,) and ``age_mean`` the training means."""

    direction: torch.Tensor
    reg_weight: torch.Tensor
    reg_bias: torch.Tensor
    z_mean: torch.Tensor
    age_mean: float
    method: str = "regression"

    @classmethod
    def fit(cls, z: torch.Tensor, ages: torch.Tensor, method: str = "regression", ridge: float = 1.0,
            groups: torch.Tensor | None = None,
            covariates: torch.Tensor | None = None) -> LinearAgeDirection:
        """Fit on codes z (N, S) and ages (N,) (``groups`` (N,) group indices for ``"class_means"``).
        ``covariates`` (N,) or (N, K) (``"regression"`` only), e.g. gender as 0/1: the direction is then the
        age coefficient of z ≈ a + age·w + covariates·U, the change per year with the covariates held
        (age's part explained by them is regressed out first), so an age-gender mix in the data does not
        enter w."""
        z, a = z.double(), ages.double().reshape(-1)
        if z.dim() != 2 or z.shape[0] != a.shape[0] or z.shape[0] < 2:
            raise PadaError(f"fit needs z (N, S) and ages (N,) with N >= 2, got {tuple(z.shape)} and "
                            f"{tuple(a.shape)}")
        if float(a.var()) <= 0:
            raise PadaError("fit needs images of different ages")
        zm, am = z.mean(0), a.mean()
        zc, ac = z - zm, a - am
        if covariates is not None and method != "regression":
            raise PadaError("covariates need method='regression'")
        if method == "regression":
            r = ac
            if covariates is not None:
                c = covariates.double().reshape(a.shape[0], -1)
                x = torch.cat([torch.ones_like(a)[:, None], c], 1)
                r = a - x @ torch.linalg.lstsq(x, a[:, None]).solution[:, 0]  # age not explained by them
                if float((r * r).mean()) <= 1e-12 * float((ac * ac).mean()):
                    raise PadaError("fit: the covariates explain the ages completely; no age direction left")
            w = (zc * r[:, None]).mean(0) / (r * r).mean()
        elif method == "class_means":
            if groups is None:
                from pada.data.groups import group_of_age

                groups = torch.tensor([group_of_age(float(x)).index for x in a])
            groups = groups.reshape(-1)
            lo, hi = int(groups.min()), int(groups.max())
            if lo == hi:
                raise PadaError("class_means needs images of at least two age groups")
            m_lo, m_hi = groups == lo, groups == hi
            w = (z[m_hi].mean(0) - z[m_lo].mean(0)) / (a[m_hi].mean() - a[m_lo].mean())
        else:
            raise PadaError(f"method must be 'regression' or 'class_means', got {method!r}")
        s = z.shape[1]
        v = torch.linalg.solve(zc.T @ zc + ridge * torch.eye(s, dtype=z.dtype), zc.T @ ac)
        return cls(direction=w.float(), reg_weight=v.float(), reg_bias=am.float(), z_mean=zm.float(),
                   age_mean=float(am), method=method)

    def predict_age(self, z: torch.Tensor) -> torch.Tensor:
        """â(z) (N,) from codes (N, S)."""
        dev = z.device
        return (z.float() - self.z_mean.to(dev)) @ self.reg_weight.to(dev) + self.reg_bias.to(dev)

    def apply(self, z: torch.Tensor, target_age: float | torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """z' = z + strength·(target_age − â(z))·w, z (N, S) → (N, S)."""
        delta = torch.as_tensor(target_age, dtype=torch.float32, device=z.device) - self.predict_age(z)
        return z.float() + strength * delta.reshape(-1, 1) * self.direction.to(z.device)

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        from pada.outputs import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:  # all or nothing, umask mode (safetensors itself writes 0600)
            save_file({"direction": self.direction.contiguous(), "reg_weight": self.reg_weight.contiguous(),
                       "reg_bias": self.reg_bias.reshape(1).contiguous(), "z_mean": self.z_mean.contiguous()},
                      str(tmp), metadata={"format": FORMAT, "config": json.dumps(
                          {"age_mean": self.age_mean, "method": self.method})})
        return path

    @classmethod
    def load(cls, path: str | Path) -> LinearAgeDirection:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such age-direction file")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not a linear age direction (format {meta.get('format')!r})")
            t = {k: f.get_tensor(k) for k in f.keys()}
        cfg = json.loads(meta["config"])
        return cls(direction=t["direction"], reg_weight=t["reg_weight"], reg_bias=t["reg_bias"][0],
                   z_mean=t["z_mean"], age_mean=float(cfg["age_mean"]), method=cfg["method"])


@torch.no_grad()
def fit_from_dataset(diffae, dataset, batch_size: int = 32, method: str = "regression", ridge: float = 1.0,
                     device: torch.device | str = "cpu", max_items: int | None = None) -> LinearAgeDirection:
    """Encode a labelled :class:`~pada.data.datasets.AlignedFaceDataset` and fit the direction on its ages."""
    from torch.utils.data import DataLoader, Subset

    if max_items is not None:
        dataset = Subset(dataset, range(min(max_items, len(dataset))))
    zs, ages, groups = [], [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        zs.append(diffae.encode(batch["image"].to(device)).float().cpu())
        ages.append(torch.as_tensor(batch["age"]).float())
        groups.append(torch.as_tensor(batch["group"]).long())
    return LinearAgeDirection.fit(torch.cat(zs), torch.cat(ages), method=method, ridge=ridge,
                                  groups=torch.cat(groups))


class LinearBaselinePipeline:
    """DiffAE + a :class:`LinearAgeDirection`, with the ``age`` API of ``AgingPipeline``.

    The target age comes from ``target_age``, else from a canonical description (its group centre), else
    from a reference image (â of its code). There is no PAE: ``high_diversity`` is ignored; low-level
    diversity starts each output from the inverted x_T mixed with fresh noise of its own at the share
    ``low_noise`` (as PADA's; 1 = fresh noise alone). ``sampler`` / ``steps`` / ``tone_guard`` /
    ``background_guard`` / ``saturation_guard`` / ``blotch_guard`` / ``structure_guard`` /
    ``contrast_bound`` / ``low_noise``: as in
    ``AgingPipeline`` (evaluation passes the PADA pipeline's, so both are compared at equal sampling; a guard
    of 0 = off; the back-off shortens the baseline's edit from the source code the same way).
    """

    def __init__(self, diffae, direction: LinearAgeDirection, device: torch.device | str = "cpu",
                 steps: int | None = None, strength: float = 1.0, sampler: str = AGING_SAMPLER,
                 tone_guard: float = 0.0, background_guard: float = 0.0,
                 saturation_guard: float = 0.0, blotch_guard: float = 0.0,
                 structure_guard: float = 0.0, contrast_bound: float = 0.0, low_noise: float = 1.0) -> None:
        self.diffae, self.direction = diffae, direction
        spec = get_sampler(sampler)
        self.sampler, self.steps = spec.name, int(steps or spec.default_steps)
        self.strength = float(strength)
        self.tone_guard = tone_margin(tone_guard)
        self.background_guard = tone_margin(background_guard, "background guard")
        self.saturation_guard = tone_margin(saturation_guard, "saturation guard")
        self.blotch_guard = tone_margin(blotch_guard, "blotch guard")
        self.structure_guard = tone_margin(structure_guard, "structure guard")
        self.contrast_bound = contrast_bound_value(contrast_bound)
        self.low_noise = low_noise_value(low_noise)
        self.device = torch.device(device)
        if isinstance(diffae, torch.nn.Module):
            freeze(diffae.to(self.device))

    @torch.no_grad()
    def age(self, image: torch.Tensor, *, text: str | None = None, ref: torch.Tensor | None = None,
            n: int = 1, high_diversity: bool = True, low_diversity: bool = False, seed: int = 0,
            steps: int | None = None,
            eta: float = 0.0, target_age: float | None = None, strength: float | None = None,
            batch_size: int | None = None, tone_guard: float | None = None,
            background_guard: float | None = None, saturation_guard: float | None = None,
            blotch_guard: float | None = None, structure_guard: float | None = None,
            contrast_bound: float | None = None, low_noise: float | None = None, **_: object) -> AgingResult:
        del high_diversity
        clock = _Clock(self.device)
        t0 = time.perf_counter()
        x = _as_batch(image, "input image").to(self.device)
        z_src = self.diffae.encode(x).float()
        if target_age is None and text is not None:
            target_age = target_age_of_text(text)
        if target_age is None and ref is not None:
            target_age = float(self.direction.predict_age(self.diffae.encode(
                _as_batch(ref, "reference image").to(self.device)).float())[0])
        if target_age is None:
            raise PadaError("the linear baseline needs target_age, one of the 14 descriptions, or a "
                            "reference image")
        z = self.direction.apply(z_src, target_age, self.strength if strength is None else strength)
        bound = contrast_bound_value(self.contrast_bound if contrast_bound is None else contrast_bound)
        z = bound_contrast(self.diffae, z_src, z, bound)
        z_age = z.expand(n, -1)
        t0 = clock.lap("encode", t0)
        seeds = [output_seed(seed, i) for i in range(n)]
        share = low_noise_value(self.low_noise if low_noise is None else low_noise) if low_diversity else 0.0
        x_T = None  # noqa: N806
        if share < 1.0:
            x_T = self.diffae.encode_stochastic(x, z_src, steps or self.steps,  # noqa: N806
                                                sampler=self.sampler).float().expand(n, -1, -1, -1)
        if low_diversity:
            fresh = torch.cat([torch.randn((1, *x.shape[1:]), generator=torch.Generator().manual_seed(s))
                               for s in seeds]).to(self.device)
            x_T = fresh if x_T is None else mix_start_noise(x_T, fresh, share)  # noqa: N806
        t0 = clock.lap("invert", t0)
        gen = torch.Generator(device=self.device).manual_seed(output_seed(seed, -1)) if eta > 0 else None
        guard = make_tone_guard(x, self.tone_guard if tone_guard is None else tone_guard,
                                self.background_guard if background_guard is None else background_guard,
                                self.saturation_guard if saturation_guard is None else saturation_guard)
        def render(rows: list[int] | None, z: torch.Tensor) -> torch.Tensor:
            start = (x_T if rows is None else x_T[rows]) if low_diversity else x_T[:1]
            return decode_chunked(self.diffae, start, z, steps or self.steps, eta=eta, generator=gen,
                                  batch_size=batch_size, sampler=self.sampler, x0_guard=guard)

        images = render(None, z_age)
        t0 = clock.lap("decode", t0)
        blotch_guard = tone_margin(self.blotch_guard if blotch_guard is None else blotch_guard,
                                   "blotch guard")
        structure_guard = tone_margin(self.structure_guard if structure_guard is None else structure_guard,
                                      "structure guard")
        edit_scales = None
        if blotch_guard > 0 or structure_guard > 0:
            # from its own start the face's layout moved: score against the input rendered from that start
            ref = render(None, z_src.expand(n, -1)) if low_diversity else x
            images, z_age, edit_scales = back_off(images, z_src, z_age, ref, blotch_guard, render,
                                                  structure_limit=structure_guard)
            clock.lap("back-off", t0)
        return AgingResult(images=images.cpu(), z_age=z_age.cpu(), e_age=None, seeds=seeds,
                           timings=clock.times, edit_scales=edit_scales)
