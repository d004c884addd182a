"""Inference: age one aligned face into N pluralistic futures (paper §3.1, Eq. 4; Fig. 4, 7, 8).

:class:`AgingPipeline` wraps a frozen DiffAE, a frozen vision-language model and a trained
:class:`~pada.aging.model.PadaModel`:

1. **encode** once: z_src = E_sem(x) (B=1), the reference / text embeddings e_img, e_txt.
2. **invert** once (unless low-level diversity is on): x_T = DiffAE stochastic encoding of x with z_src.
3. **PAE**: N samples e_age (high-level diversity on; image: μ + σ⊙η, text: e_txt + ε·η, both: see
   :mod:`pada.aging.pae`) or N copies of the PAE mean (off); z_age = modulation(z_src, e_age) (Eq. 6),
   scaled by the target age's gain (``PadaConfig.shift_gain``, :mod:`pada.aging.gain`) when the model has
   one, plus, for a model with a draw spread (``PadaConfig.draw_spread``), each draw's spread offset.
4. **decode** all N in chunks: x_0 = sampler(x_T, z_age). Default: the second-order ``multistep`` sampler
   with 8 steps for both the inversion and the decode (docs/speed.md); ``sampler="ddim", steps=25`` is the
   paper's setting ("in all cases"). With a tone guard (``PadaConfig.tone_guard``, :mod:`pada.aging.guard`)
   every step's x̂0 keeps the skin's smoothed brightness near the input's (and, with the background and
   saturation guards, the backdrop's colour and the head's colour strength).
   Low-level diversity on: each output starts from the inverted x_T mixed with fresh noise of its own,
   √(1 − s²)·x_T + s·ε, ε ~ N(0, I) (s = ``PadaConfig.low_noise``; 1 = fresh noise alone); off: the
   inverted x_T.

Reproducibility: output i draws its PAE noise and its x_T noise from its own generator seeded by
:func:`output_seed` (seed, i), so output i is the same whatever N is (up to batched float round-off).

:class:`LinearBaselinePipeline` (the DiffAE baseline of Fig. 6, :mod:`pada.aging.baseline`) has the same
``age`` API, so evaluation can compare both.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pada.aging.backoff import back_off, bound_contrast, contrast_bound_value, space_anchors
from pada.aging.detail import head_region, transfer_edit, upsample
from pada.aging.gain import (
    calibration_factors,
    group_prototypes,
    parse_shift_gain,
    pick_factor,
    read_ages,
    shift_gains,
    target_ages,
    young_cap_value,
)
from pada.aging.guard import ToneGuard, tone_guard, tone_margin
from pada.aging.model import PadaModel
from pada.aging.modulation import spread_cap_value
from pada.aging.pae import gaussian_noise
from pada.aging.pattern import apply_draw_pattern, pattern_value
from pada.data.groups import AGE_GROUPS, GENDERS, description, parse_description
from pada.diffusion.samplers import AGING_SAMPLER, get_sampler
from pada.errors import PadaError
from pada.evaluation.scores import hf_energy_ratio, patch_change
from pada.faces.grid import make_grid, save_grid  # noqa: F401 - re-exported (the one grid writer)
from pada.frozen import freeze


def output_seed(seed: int, index: int) -> int:
    """Seed of output ``index`` of a request with ``seed`` (independent streams, stable everywhere)."""
    d = hashlib.blake2b(f"pada-output/{int(seed)}/{int(index)}".encode(), digest_size=8).digest()
    return int.from_bytes(d, "big") & ((1 << 63) - 1)


def _as_batch(image: torch.Tensor, what: str) -> torch.Tensor:
    if not torch.is_tensor(image) or image.dim() not in (3, 4) or image.shape[-3] != 3:
        shape = tuple(image.shape) if torch.is_tensor(image) else type(image).__name__
        raise PadaError(f"{what}: expected an aligned face tensor (3, H, W) or (1, 3, H, W) in [-1, 1], "
                        f"got {shape}")
    x = image[None] if image.dim() == 3 else image
    if x.shape[0] != 1:
        raise PadaError(f"{what}: expected one face, got a batch of {x.shape[0]}")
    return x.float()


@dataclass
class AgingResult:
    """What :meth:`AgingPipeline.age` returns.

    ``images`` (N, 3, H, W) in [-1, 1] (CPU, float32); ``e_age`` (N, D) PAE samples (None for the linear
    baseline); ``z_age`` (N, S) decoder conditions; ``seeds`` the per-output seeds; ``timings`` seconds per
    stage (``encode``, ``invert``, ``calibrate``, ``decode``, ``detail``); ``reconstruction`` the plain DiffAE
    reconstruction of the input from (x_T, z_src) when asked for. ``calibration``: with ``calibrate=True``,
    the chosen edit factor, the target age, and each candidate render's age reading and high-frequency ratio.
    ``images_hr`` (N, 3, S, S): with ``image_hr``, the results carried onto the sharper crop
    (:func:`pada.aging.detail.transfer_edit`). ``edit_scales``: with a blotch guard, the length of each
    output's shared edit (toward the PAE mean's code) relative to the one it was asked for (1.0, or the
    shorter one :func:`pada.aging.backoff.back_off` rendered it at; the draw's own offset is kept).
    """

    images: torch.Tensor
    z_age: torch.Tensor
    e_age: torch.Tensor | None
    seeds: list[int]
    timings: dict[str, float] = field(default_factory=dict)
    reconstruction: torch.Tensor | None = None
    calibration: dict[str, Any] | None = None
    images_hr: torch.Tensor | None = None
    edit_scales: list[float] | None = None


@dataclass
class LifespanResult:
    """A row of ages: ``images`` (F, 3, H, W) in [-1, 1], ``labels`` F strings, ``anchors`` frame indices;
    ``calibration``: with ``calibrate=True``, each anchor's :meth:`AgingPipeline.calibrate` result;
    ``images_hr`` (F, 3, S, S): with ``image_hr``, the frames carried onto the sharper crop;
    ``edit_scales``: with a blotch guard, each frame's edit length relative to the asked one;
    ``anchor_scales``: with ``space``, each anchor's factor from :func:`pada.aging.backoff.space_anchors`."""

    images: torch.Tensor
    labels: list[str]
    anchors: list[int]
    timings: dict[str, float] = field(default_factory=dict)
    calibration: list[dict[str, Any]] | None = None
    images_hr: torch.Tensor | None = None
    edit_scales: list[float] | None = None
    anchor_scales: list[float] | None = None


class _Clock:
    def __init__(self, device: torch.device) -> None:
        self.device, self.times = device, {}

    def lap(self, name: str, t0: float) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.times[name] = self.times.get(name, 0.0) + now - t0
        return now


class AgingPipeline:
    """PADA inference (module docstring). ``diffae``: DiffAE wrapper; ``vl``: VisionLanguageModel;
    ``model``: trained :class:`PadaModel`. ``sampler``: default sampler of the inversion and the decode
    (``"multistep"``, default: 8 steps, near the exact ODE result and ~3× faster than the paper's
    setting; or ``"ddim"``, the paper's, 25 steps; :mod:`pada.diffusion.samplers`, docs/speed.md).
    ``steps``: default number of steps (None: the sampler's own default)."""

    def __init__(self, diffae, vl, model: PadaModel, device: torch.device | str | None = None,
                 steps: int | None = None, sampler: str = AGING_SAMPLER) -> None:
        self.device = torch.device(device) if device is not None else _module_device(model)
        self.diffae, self.vl, self.model = diffae, vl, model
        self.steps = None if steps is None else int(steps)
        self.sampler = get_sampler(sampler).name
        self._descriptions: torch.Tensor | None = None  # (G, 7, D) VL embeddings of the group texts
        self._prototypes: torch.Tensor | None = None  # their per-group mean over genders
        for m in (diffae, vl, model):
            if isinstance(m, torch.nn.Module):
                freeze(m.to(self.device))
        if getattr(vl, "dim", model.cfg.e_dim) != model.cfg.e_dim:
            raise PadaError(f"the PADA model expects a {model.cfg.e_dim}-d vision-language space but "
                            f"{getattr(vl, 'name', 'the VL model')} has {vl.dim} dimensions")

    @classmethod
    def from_pretrained(cls, model: str | Path, device: torch.device | str | None = None, diffae=None,
                        vl=None, steps: int | None = None, trust_pickle: bool = False,
                        sampler: str = AGING_SAMPLER) -> AgingPipeline:
        """Load a PADA model file (path or registry name) and the DiffAE / VL models it names.

        ``trust_pickle`` allows a DiffAE checkpoint that needs unpickling (official Lightning files may).
        """
        path = resolve_model(model)
        pm = PadaModel.load(path)
        if diffae is None:
            if not pm.cfg.diffae:
                raise PadaError(f"{path}: the model does not name its DiffAE; pass one")
            from pada.diffae import DiffAE

            diffae = DiffAE.from_pretrained(pm.cfg.diffae, preset=pm.cfg.diffae_preset or None,
                                            trust_pickle=trust_pickle)
        if vl is None:
            if not pm.cfg.vl:
                raise PadaError(f"{path}: the model does not name its vision-language model; pass one")
            from pada.vl import load_vl

            vl = load_vl(pm.cfg.vl)
        return cls(diffae, vl, pm, device=device, steps=steps, sampler=sampler)

    # ----------------------------------------------------------------------------------------- pieces
    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """z_src (1, S) of one aligned face."""
        return self.diffae.encode(_as_batch(image, "input image").to(self.device)).float()

    @torch.no_grad()
    def invert(self, image: torch.Tensor, z_src: torch.Tensor, steps: int | None = None,
               progress: bool = False, sampler: str | None = None) -> torch.Tensor:
        """x_T (1, 3, H, W): DiffAE stochastic encoding of the face with its own z_src."""
        x = _as_batch(image, "input image").to(self.device)
        kw = {"progress": True} if progress else {}
        sampler = sampler or self.sampler
        return self.diffae.encode_stochastic(x, z_src, self.steps_for(sampler, steps), sampler=sampler,
                                             **kw).float()

    @torch.no_grad()
    def pae(self, *, text: str | None = None, ref: torch.Tensor | None = None, n: int = 1,
            high_diversity: bool = True, seed: int = 0, text_weight: float = 0.5,
            eps: float | None = None) -> torch.Tensor:
        """N PAE samples e_age (N, D) from a text, a reference image or both (§3.2.1).

        ``high_diversity=False`` returns N copies of the (normalised) PAE mean. ``eps`` overrides the
        text-driven sampling intensity ε for text-only requests. :meth:`pae_draws` also returns the noise.
        """
        return self.pae_draws(text=text, ref=ref, n=n, high_diversity=high_diversity, seed=seed,
                              text_weight=text_weight, eps=eps)[0]

    @torch.no_grad()
    def pae_draws(self, *, text: str | None = None, ref: torch.Tensor | None = None, n: int = 1,
                  high_diversity: bool = True, seed: int = 0, text_weight: float = 0.5,
                  eps: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`pae`, with each sample's standard-normal noise η (N, D) (zeros for the mean), which a
        model with a draw head (``PadaConfig.draw_hidden``) reads in :meth:`modulate`."""
        if text is None and ref is None:
            raise PadaError("give a target text, a reference image, or both")
        enc = self.model.age_encoder
        e_txt = self.vl.encode_text([text]).float().to(self.device) if text is not None else None
        e_img = (self.vl.encode_image(_as_batch(ref, "reference image").to(self.device)).float()
                 if ref is not None else None)
        mu, sigma = enc.posterior(e_img, e_txt, text_weight=text_weight)
        if e_img is None and eps is not None:
            sigma = torch.full_like(sigma, eps)
        if not high_diversity:
            return enc.finish(mu).expand(n, -1).clone(), torch.zeros(n, mu.shape[-1], device=self.device)
        draws, noise = [], []
        for i in range(n):
            g = torch.Generator().manual_seed(output_seed(seed, i))
            eta = gaussian_noise(tuple(mu.shape), g, self.device, mu.dtype)
            draws.append(enc.sample(mu, sigma, noise=eta))
            noise.append(eta)
        return torch.cat(draws), torch.cat(noise)

    def target_ages(self, e_age: torch.Tensor) -> torch.Tensor:
        """(N,) target age of each PAE embedding (N, D): the centre of the nearest age group's text
        prototype (:func:`pada.aging.gain.target_ages`); the prototypes are encoded once per pipeline."""
        return target_ages(self.group_prototypes(), e_age.to(self.device))

    def group_prototypes(self) -> torch.Tensor:
        """(7, D): each age group's text prototype (:func:`pada.aging.gain.group_prototypes`), cached."""
        if self._prototypes is None:
            self._prototypes = group_prototypes(self.group_descriptions())
        return self._prototypes

    @torch.no_grad()
    def group_descriptions(self) -> torch.Tensor:
        """(G, 7, D): the VL embeddings of the 7 group descriptions of each gender (order of ``GENDERS``),
        encoded once per pipeline (the gender guess and the target-age read-out both use them)."""
        if self._descriptions is None:
            self._descriptions = torch.stack([
                self.vl.encode_text([description(g, gender) for g in AGE_GROUPS]).float().to(self.device)
                for gender in GENDERS])
        return self._descriptions

    @torch.no_grad()
    def modulate(self, z_src: torch.Tensor, e_age: torch.Tensor,
                 eta: torch.Tensor | None = None, draw_spread: float | None = None,
                 shift_gain: str | None = None, edit_scale: float = 1.0,
                 hold_gender: bool | None = None, contrast_bound: float | None = None,
                 draw_pattern: float | None = None, spread_cap: float | None = None) -> torch.Tensor:
        """z_age (N, S) = modulation(z_src (1, S), e_age (N, D)) (Eq. 6); ``eta`` (N, D): the draws' noise
        (:meth:`pae_draws`; None = the PAE mean), which also sets each draw's spread offset
        (``PadaConfig.draw_spread``; ``draw_spread`` overrides the model's value, 0 = off; at most
        ``spread_cap`` × the draw's own edit, default the model's ``PadaConfig.spread_cap``) and how far its
        hair ages against the edit's (``PadaConfig.draw_pattern``, :mod:`pada.aging.pattern`;
        ``draw_pattern`` overrides the model's value, 0 = off). The shift is
        first scaled by its target age's gain (``PadaConfig.shift_gain``; ``shift_gain`` overrides the
        model's spec, "" = off) and by ``edit_scale`` (a per-face calibration's factor, :meth:`calibrate`).
        Last, with ``hold_gender`` (default: the model's ``PadaConfig.hold_gender``), the part of each shift
        along the gender direction is taken out (:meth:`pada.aging.modulation.AdaptiveModulation.hold`),
        and with ``contrast_bound`` (default: the model's ``PadaConfig.contrast_bound``; 0 = off) each edit
        is shortened so that its change to the coarse image stays within that many times the input's
        coarse-image contrast (:func:`pada.aging.backoff.bound_contrast`)."""
        mod = self.model.modulation
        z = z_src.expand(e_age.shape[0], -1)
        eta = None if eta is None else eta.to(self.device)
        z_age = mod(z, e_age.to(self.device), eta)
        knots = parse_shift_gain(mod.cfg.shift_gain if shift_gain is None else shift_gain)
        if knots:
            gains = shift_gains(knots, self.target_ages(e_age)).to(z_age.device, z_age.dtype)
            z_age = z + gains[:, None] * (z_age - z)
        if edit_scale != 1.0:
            z_age = z + float(edit_scale) * (z_age - z)
        scale = mod.cfg.draw_spread if draw_spread is None else float(draw_spread)
        cap = spread_cap_value(mod.cfg.spread_cap if spread_cap is None else spread_cap)  # checked every call
        if eta is not None and scale > 0:
            try:
                z_age = mod.add_spread(z, z_age, eta, scale, cap)
            except ValueError as exc:
                raise PadaError(f"draw spread {scale:g}: {exc}") from None
        pattern = pattern_value(mod.cfg.draw_pattern if draw_pattern is None else draw_pattern)
        if eta is not None and pattern:
            z_age = apply_draw_pattern(self.diffae, z, z_age, eta, pattern)
        if self.model.cfg.hold_gender if hold_gender is None else hold_gender:
            try:
                z_age = mod.hold(z, z_age)
            except ValueError as exc:
                raise PadaError(f"hold gender: {exc}") from None
        return bound_contrast(self.diffae, z_src, z_age.float(), self.contrast_limit(contrast_bound))

    def contrast_limit(self, value: float | None = None) -> float:
        """The contrast bound for a request: ``value``, else the model's ``PadaConfig.contrast_bound``
        (0 = off); a bad value is a :class:`PadaError` naming it."""
        return contrast_bound_value(self.model.cfg.contrast_bound if value is None else value)

    def blotch_limit(self, value: float | None = None) -> float:
        """The blotch back-off's limit for a request: ``value``, else the model's ``PadaConfig.blotch_guard``
        (0 = off); a bad value is a :class:`PadaError` naming it."""
        return tone_margin(self.model.cfg.blotch_guard if value is None else value, "blotch guard")

    def structure_limit(self, value: float | None = None) -> float:
        """The structure back-off's limit for a request: ``value``, else the model's
        ``PadaConfig.structure_guard`` (0 = off); a bad value is a :class:`PadaError` naming it."""
        return tone_margin(self.model.cfg.structure_guard if value is None else value, "structure guard")

    def tone_guard(self, image: torch.Tensor, margin: float | None = None,
                   background: float | None = None, saturation: float | None = None) -> ToneGuard | None:
        """The :class:`~pada.aging.guard.ToneGuard` of ``image`` (1, 3, H, W) at ``margin``, ``background``
        and ``saturation`` (None: the model's ``PadaConfig.tone_guard`` / ``background_guard`` /
        ``saturation_guard``); None when all are 0."""
        cfg = self.model.cfg
        return tone_guard(image, cfg.tone_guard if margin is None else margin,
                          cfg.background_guard if background is None else background,
                          cfg.saturation_guard if saturation is None else saturation)

    @torch.no_grad()
    def calibrate(self, x_T: torch.Tensor, z_src: torch.Tensor, e_mean: torch.Tensor,  # noqa: N803
                  steps: int | None = None, sampler: str | None = None, shift_gain: str | None = None,
                  factors: Sequence[float] | None = None,
                  image: torch.Tensor | None = None, x0_guard=None,
                  hold_gender: bool | None = None, patch_guard: float | None = None,
                  contrast_bound: float | None = None, young_cap: float | None = None) -> dict[str, Any]:
        """Per-face edit length: render the PAE-mean edit (e_mean (1, D)) from x_T (1, ...) at each of
        ``factors`` (default :func:`~pada.aging.gain.calibration_factors`: 0.5–1.5×, or with ``young_cap`` c >
        0 (default: the model's ``PadaConfig.young_cap``) and a target younger than the input ``image`` as the
        VL model reads it, 0.5c, 0.75c and c), read each render's age with the VL model
        (:func:`pada.aging.gain.read_ages`) and pick the factor nearest the request's target age
        (:func:`pada.aging.gain.pick_factor`); with the input ``image``, lengths whose render carries more
        than ``CALIBRATION_HF_GUARD`` times its high-frequency energy are left out, and with ``patch_guard`` >
        0 (default: the model's ``PadaConfig.patch_guard``) those whose skin colour changed unevenly
        (:func:`~pada.evaluation.scores.patch_change` above it); ``x0_guard`` renders them as the request's
        outputs will be (:meth:`decode`); ``contrast_bound`` (default: the model's) bounds each candidate as
        :meth:`modulate` bounds an output, so a long candidate of an edit already at the bound renders at the
        bound.
        Returns ``{"factor", "target_age", "factors", "read_ages", "hf_ratios", "patches"}``."""
        target = float(self.target_ages(e_mean[:1])[0])
        if factors is None:
            cap = young_cap_value(self.model.cfg.young_cap if young_cap is None else young_cap)
            source = self.read_age(image) if cap > 0 and image is not None else None
            factors = calibration_factors(target, source, cap)
        factors = tuple(float(f) for f in factors)
        z_mean = self.modulate(z_src, e_mean[:1], shift_gain=shift_gain, hold_gender=hold_gender,
                               contrast_bound=0.0)
        codes = bound_contrast(self.diffae, z_src, torch.cat([z_src + f * (z_mean - z_src) for f in factors]),
                               self.contrast_limit(contrast_bound))
        renders = self.decode(x_T[:1], codes, steps, sampler=sampler, x0_guard=x0_guard)
        ages = read_ages(self.group_prototypes(), self.vl.encode_image(renders.to(self.device)))
        patch_guard = tone_margin(self.model.cfg.patch_guard if patch_guard is None else patch_guard,
                                  "patch guard")
        hf = patches = None
        if image is not None:
            src = _as_batch(image, "input image").cpu()
            hf = hf_energy_ratio(renders, src)
            patches = patch_change(renders, src) if patch_guard > 0 else None
        factor = pick_factor(ages, target, factors, hf_ratios=hf, patches=patches, patch_guard=patch_guard)
        return {"factor": factor, "target_age": target,
                "factors": list(factors), "read_ages": [round(float(a), 2) for a in ages],
                "hf_ratios": None if hf is None else [round(float(r), 3) for r in hf],
                "patches": None if patches is None else [round(float(q), 4) for q in patches]}

    @staticmethod
    def _sharp_crop(image_hr: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
        """``image_hr`` as a (1, 3, S, S) batch on the CPU, checked against the input ``x`` (None: None)."""
        if image_hr is None:
            return None
        x_hr = _as_batch(image_hr, "sharp crop (image_hr)").cpu()
        if x_hr.shape[-1] < x.shape[-1] or x_hr.shape[-1] != x_hr.shape[-2]:
            raise PadaError(f"the sharp crop (image_hr) must be square and at least the input's "
                            f"{x.shape[-1]} px, got {tuple(x_hr.shape[-2:])}")
        return x_hr

    def _carry(self, images, x_T, z_src, x, x_hr, steps, sampler, guard,  # noqa: N803
               keep_background: bool, relative_detail: bool = True) -> torch.Tensor:
        """``images`` carried onto the sharp crop ``x_hr`` (:func:`pada.aging.detail.transfer_edit`): the
        input rendered from the results' start noise ``x_T`` (1, ...) as they were (same steps, sampler,
        guard), so that result minus render is the edit; head only with ``keep_background``; the crop's
        fine detail scaled by the edit's brightness ratio with ``relative_detail``."""
        base = self.decode(x_T, z_src, steps, sampler=sampler, x0_guard=guard).cpu()
        return transfer_edit(images.cpu(), base, x_hr.cpu(), image=x.cpu(),
                             region=head_region(x.shape[-1]) if keep_background else None,
                             relative_detail=relative_detail)

    @torch.no_grad()
    def decode(self, x_T: torch.Tensor, z: torch.Tensor, steps: int | None = None, eta: float = 0.0,  # noqa: N803
               generator: torch.Generator | None = None, batch_size: int | None = None,
               progress: bool = False, sampler: str | None = None, x0_guard=None) -> torch.Tensor:
        """x_0 (N, 3, H, W) in [-1, 1] on the CPU from x_T (N or 1, ...) and z (N, S), decoded in chunks of
        ``batch_size`` (default :func:`default_chunk`), so the working memory does not grow with N.
        ``x0_guard``: a projection of every step's x̂0 (:meth:`pada.diffae.DiffAE.render`), e.g. the
        :class:`~pada.aging.guard.ToneGuard` of :meth:`age`."""
        sampler = sampler or self.sampler
        return decode_chunked(self.diffae, x_T, z, self.steps_for(sampler, steps), eta=eta,
                              generator=generator, batch_size=batch_size, progress=progress, sampler=sampler,
                              x0_guard=x0_guard)

    def steps_for(self, sampler: str | None = None, steps: int | None = None) -> int:
        """The steps a call runs: ``steps`` if given, else the pipeline's, else the sampler's default."""
        return int(steps or self.steps or get_sampler(sampler or self.sampler).default_steps)

    def low_noise_share(self, value: float | None = None) -> float:
        """The share of fresh noise in low-level diversity's start noise for a request: ``value``, else the
        model's ``PadaConfig.low_noise``; a bad value is a :class:`PadaError` naming it."""
        return low_noise_value(self.model.cfg.low_noise if value is None else value)

    def _start(self, x, z_src, seeds, low_diversity, low_noise, invert, steps, progress, sampler):
        """``(x_inv, x_T, base)`` of a request: the inverted start noise of ``x`` (None when neither the
        start nor ``invert`` needs it), every output's start noise (:func:`mix_start_noise` with
        ``low_diversity``, else ``x_inv``) and the start noise that renders the input as the results
        are for the detail transfer (None when the results start from fresh noise alone: a new layout)."""
        share = self.low_noise_share(low_noise) if low_diversity else 0.0
        x_inv = None
        if invert or share < 1.0:
            x_inv = self.invert(x, z_src, steps, progress=progress, sampler=sampler)
        if not low_diversity:
            return x_inv, x_inv, x_inv
        fresh = self.start_noise(x.shape[1:], seeds)
        if share >= 1.0:
            return x_inv, fresh, None
        return x_inv, mix_start_noise(x_inv, fresh, share), x_inv

    def start_noise(self, shape: Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
        """Fresh x_T (N, *shape) with output i drawn from its own generator (after its PAE noise)."""
        out = []
        for s in seeds:
            g = torch.Generator().manual_seed(s)
            gaussian_noise((1, self.model.cfg.e_dim), g, "cpu", torch.float32)  # skip the PAE draw
            out.append(gaussian_noise((1, *shape), g, self.device, torch.float32))
        return torch.cat(out)

    # ------------------------------------------------------------------------------------------- API
    def age(self, image: torch.Tensor, *, text: str | None = None, ref: torch.Tensor | None = None,
            n: int = 1, high_diversity: bool = True, low_diversity: bool = False, seed: int = 0,
            steps: int | None = None, eta: float = 0.0, text_weight: float = 0.5, eps: float | None = None,
            batch_size: int | None = None, reconstruct: bool = False, progress: bool = False,
            inversion_steps: int | None = None, sampler: str | None = None,
            draw_spread: float | None = None, shift_gain: str | None = None,
            calibrate: bool | None = None, tone_guard: float | None = None,
            hold_gender: bool | None = None, image_hr: torch.Tensor | None = None,
            keep_background: bool = True, relative_detail: bool = True,
            background_guard: float | None = None,
            saturation_guard: float | None = None, patch_guard: float | None = None,
            blotch_guard: float | None = None, structure_guard: float | None = None,
            contrast_bound: float | None = None, draw_pattern: float | None = None,
            low_noise: float | None = None, spread_cap: float | None = None,
            young_cap: float | None = None) -> AgingResult:
        """Age one aligned face (3, H, W) / (1, 3, H, W) in [-1, 1] into ``n`` outputs.

        Args:
            text: target age description (e.g. "man's face in his sixties"); ref: reference face; or both.
            high_diversity: sample the PAE (True) or use its mean (False).
            low_diversity: low-level diversity: each output starts from the input's inverted x_T mixed
                with fresh noise of its own (True; ``low_noise``) or from the inverted x_T itself (False).
            low_noise: with ``low_diversity``, the share s of fresh noise in every output's start,
                √(1 − s²)·x_T + s·ε (:func:`mix_start_noise`; 1 = fresh noise alone, a face drawn anew).
                Default: the model's (``PadaConfig.low_noise``).
            seed: request seed; output i uses :func:`output_seed` (seed, i).
            steps: sampler steps T (default: the pipeline's, else the sampler's: multistep 8, ddim 25);
                eta: DDIM η of the decode (0 = deterministic; > 0 needs ``sampler="ddim"``).
            inversion_steps: steps of the inversion (default: ``steps``); see docs/speed.md for
                step counts vs quality.
            batch_size: futures decoded at once (default :func:`default_chunk`: bounded memory for any n).
            reconstruct: also return the plain DiffAE reconstruction from (x_T, z_src).
            progress: show progress bars of the DDIM loops.
            sampler: ``"multistep"`` or ``"ddim"`` for the inversion and the decode (default: the
                pipeline's); ``"multistep"`` needs η = 0.
            draw_spread: how far the draws spread across age, in ‖z_src‖ (``PadaConfig.draw_spread``;
                default: the model's; 0 = off; needs a model built with a spread).
            spread_cap: each draw's spread offset at most this × the length of its own edit
                (``PadaConfig.spread_cap``, :func:`pada.aging.modulation.cap_spread`; default: the model's;
                0 = no cap).
            draw_pattern: how far each draw's hair ages against the edit's (``PadaConfig.draw_pattern``).
            shift_gain: gain on the shift by target age, "AGE:GAIN,..." (``PadaConfig.shift_gain``;
                default: the model's; "" = off).
            calibrate: pick this face's edit length first (:meth:`calibrate`: the PAE-mean edit rendered
                from the inverted x_T at 5 lengths, the one whose VL-read age is nearest the target);
                every output's edit is scaled by it. Costs 5 extra renders (and the inversion when
                ``low_diversity``). Default: the model's (``PadaConfig.calibrate``).
            tone_guard: keep the skin's smoothed brightness within this distance (0-1 scale) of the
                input's while sampling (:class:`~pada.aging.guard.ToneGuard`; the calibration's renders
                too). Default: the model's (``PadaConfig.tone_guard``); 0 = off.
            hold_gender: take the gender direction out of every edit (:meth:`modulate`). Default: the
                model's (``PadaConfig.hold_gender``); True needs a model that carries the direction.
            image_hr: a sharper crop of the same face (3, S, S) / (1, 3, S, S), S >= H: the results are
                also carried onto it (:func:`pada.aging.detail.transfer_edit`; ``AgingResult.images_hr``),
                at the cost of one more render (the input from the results' start noise). With
                fresh start noise alone (``low_diversity`` with ``low_noise`` 1) the results' layout is not
                the input's, so they are upsampled instead; from a mixed start they are carried against
                the input rendered from its inverted x_T, so each output's drawn detail is carried too.
            keep_background: with ``image_hr``, carry the edit over inside the head only (face and hair,
                :func:`pada.aging.detail.head_region`), so the photo's background and clothes stay.
            relative_detail: with ``image_hr``, scale the crop's fine detail by the edit's local brightness
                ratio (where hair is lightened threefold its strands' detail is tripled, so it turns grey
                strand by strand instead of under a pale haze; :func:`pada.aging.detail.transfer_edit`).
                False: the detail keeps its amplitude (before session 39).
            background_guard: keep the crop's smoothed colour outside the head within this distance (0-1
                scale) of the input's while sampling (:class:`~pada.aging.guard.ToneGuard`). Default: the
                model's (``PadaConfig.background_guard``); 0 = off.
            saturation_guard: keep the head's smoothed colour strength at most this far (0-1 scale) above
                the input's while sampling: colour may fade, not intensify
                (:class:`~pada.aging.guard.ToneGuard`). Default: the model's
                (``PadaConfig.saturation_guard``); 0 = off.
            patch_guard: with ``calibrate``, leave out edit lengths whose render's skin colour changed
                unevenly (:meth:`calibrate`). Default: the model's (``PadaConfig.patch_guard``); 0 = off.
            young_cap: with ``calibrate``, a target younger than the face (as the VL model reads it) gets
                edit lengths of at most this (0.5, 0.75 and 1 times it; :meth:`calibrate`). Default: the
                model's (``PadaConfig.young_cap``); 0 = off (0.5–1.5× as for any target).
            blotch_guard: render outputs whose skin brightness changed unevenly beyond this
                (:func:`~pada.evaluation.scores.blotch`) again with a shorter shared edit, keeping each
                draw's offset from the PAE mean's code (:func:`pada.aging.backoff.back_off`;
                ``AgingResult.edit_scales``). Default: the model's
                (``PadaConfig.blotch_guard``); 0 = off.
            structure_guard: the same for outputs whose skin lost its local structure beyond this
                (:func:`~pada.evaluation.scores.structure_change`: a pale mask, smeared features); an output
                must pass both guards. Default: the model's (``PadaConfig.structure_guard``); 0 = off.
            contrast_bound: before anything is rendered, shorten every edit (the calibration's candidates
                too) so that its change to the DiffAE's coarse image stays within this many times the
                input's coarse-image contrast (:func:`pada.aging.backoff.bound_contrast`; no extra renders).
                Default: the model's (``PadaConfig.contrast_bound``); 0 = off.
        """
        if n < 1:
            raise PadaError(f"n must be >= 1, got {n}")
        sampler = get_sampler(sampler or self.sampler).name
        if eta > 0 and not get_sampler(sampler).stochastic:
            raise PadaError(f"sampler {sampler!r} is deterministic: eta must be 0 (got {eta}); use 'ddim'")
        clock = _Clock(self.device)
        t0 = time.perf_counter()
        x = _as_batch(image, "input image").to(self.device)
        x_hr = self._sharp_crop(image_hr, x)
        z_src = self.encode(x)
        e_age, draw_noise = self.pae_draws(text=text, ref=ref, n=n, high_diversity=high_diversity,
                                           seed=seed, text_weight=text_weight, eps=eps)
        if draw_spread is not None and not 0.0 <= draw_spread <= 1.0:
            raise PadaError(f"draw spread must be in [0, 1], got {draw_spread}")
        young_cap_value(0.0 if young_cap is None else young_cap)  # a bad value fails before the inversion
        edit = {"shift_gain": shift_gain, "hold_gender": hold_gender, "contrast_bound": contrast_bound,
                "spread_cap": spread_cap}
        z_age = self.modulate(z_src, e_age, draw_noise, draw_spread, draw_pattern=draw_pattern, **edit)
        calibrate = bool(self.model.cfg.calibrate) if calibrate is None else calibrate
        guard = self.tone_guard(x, tone_guard, background_guard, saturation_guard)
        blotch_guard = self.blotch_limit(blotch_guard)
        structure_guard = self.structure_limit(structure_guard)
        t0 = clock.lap("encode", t0)
        seeds = [output_seed(seed, i) for i in range(n)]
        recon = calibration = None
        x_inv, x_T, base = self._start(x, z_src, seeds, low_diversity, low_noise, calibrate,  # noqa: N806
                                       inversion_steps or steps, progress, sampler)
        t0 = clock.lap("invert", t0)
        e_mean = factor = None
        if calibrate or blotch_guard > 0 or structure_guard > 0:
            e_mean = self.pae(text=text, ref=ref, n=1, high_diversity=False, text_weight=text_weight, eps=eps)
        if calibrate:
            calibration = self.calibrate(x_inv, z_src, e_mean, steps, sampler, shift_gain, image=x,
                                         x0_guard=guard, hold_gender=hold_gender, patch_guard=patch_guard,
                                         contrast_bound=contrast_bound, young_cap=young_cap)
            factor = calibration["factor"]
            z_age = self.modulate(z_src, e_age, draw_noise, draw_spread, edit_scale=factor,
                                  draw_pattern=draw_pattern, **edit)
            t0 = clock.lap("calibrate", t0)
        gen = torch.Generator(device=self.device).manual_seed(output_seed(seed, -1)) if eta > 0 else None
        with torch.no_grad():
            images = self.decode(x_T, z_age, steps, eta=eta, generator=gen, batch_size=batch_size,
                                 progress=progress, sampler=sampler, x0_guard=guard)
            if reconstruct:
                recon = self.decode(x_T[:1], z_src, steps, sampler=sampler).cpu()
        t0 = clock.lap("decode", t0)
        edit_scales = None
        if blotch_guard > 0 or structure_guard > 0:
            # the draws vary around the PAE mean's code: only that shared edit is shortened
            center = self.modulate(z_src, e_mean, None, draw_spread, edit_scale=factor or 1.0, **edit)
            ref = self._reference(x, x_T, z_src, low_diversity, steps, eta, seed, batch_size, sampler, guard)
            images, z_age, edit_scales = back_off(
                images, z_src, z_age, ref, blotch_guard, center=center, structure_limit=structure_guard,
                render=lambda rows, z: self.decode(x_T[rows] if x_T.shape[0] > 1 else x_T, z, steps, eta=eta,
                                                   generator=gen, batch_size=batch_size, sampler=sampler,
                                                   x0_guard=guard))
            t0 = clock.lap("back-off", t0)
        images_hr = None
        if x_hr is not None:  # base: the input rendered as the results are, so y - r is the edit (+ draw)
            images_hr = upsample(images.cpu().float(), x_hr.shape[-1]) if base is None else self._carry(
                images, base[:1], z_src, x, x_hr, steps, sampler, guard, keep_background, relative_detail)
            clock.lap("detail", t0)
        return AgingResult(images=images.cpu(), z_age=z_age.cpu(), e_age=e_age.cpu(), seeds=seeds,
                           timings=clock.times, reconstruction=recon, calibration=calibration,
                           images_hr=images_hr, edit_scales=edit_scales)

    def _reference(self, x, x_T, z_src, low_diversity, steps, eta, seed, batch_size, sampler,  # noqa: N803
                   guard) -> torch.Tensor:
        """What the back-off scores outputs against: the input ``x`` when they start from its inverted
        noise; with low-level diversity (``low_diversity``) the input's own code rendered from each
        output's start noise, as the outputs were (a drawn start moves the face's layout and detail)."""
        if not low_diversity:
            return x
        gen = torch.Generator(device=self.device).manual_seed(output_seed(seed, -1)) if eta > 0 else None
        return self.decode(x_T, z_src.expand(x_T.shape[0], -1), steps, eta=eta, generator=gen,
                           batch_size=batch_size, sampler=sampler, x0_guard=guard)

    @torch.no_grad()
    def read_age(self, image: torch.Tensor) -> float:
        """The age of ``image`` (1, 3, H, W) as the VL model reads it (:func:`pada.aging.gain.read_ages`, the
        read-out the calibration uses)."""
        e = self.vl.encode_image(_as_batch(image, "input image").to(self.device))
        return float(read_ages(self.group_prototypes(), e)[0])

    @torch.no_grad()
    def infer_gender(self, image: torch.Tensor) -> str:
        """Zero-shot gender from the VL model: the gender whose 7 descriptions match the face best."""
        e = self.vl.encode_image(_as_batch(image, "input image").to(self.device)).float()
        sims = [float((t @ e[0]).mean()) for t in self.group_descriptions()]
        return GENDERS[int(torch.tensor(sims).argmax())]

    @torch.no_grad()
    def lifespan(self, image: torch.Tensor, *, gender: str | None = None, texts: Sequence[str] | None = None,
                 frames_per_segment: int = 3, steps: int | None = None, batch_size: int | None = None,
                 ref: torch.Tensor | None = None, text_weight: float = 0.5,
                 progress: bool = False, inversion_steps: int | None = None,
                 sampler: str | None = None, shift_gain: str | None = None,
                 tone_guard: float | None = None, hold_gender: bool | None = None,
                 calibrate: bool | None = None, image_hr: torch.Tensor | None = None,
                 keep_background: bool = True, relative_detail: bool = True,
                 background_guard: float | None = None,
                 saturation_guard: float | None = None, patch_guard: float | None = None,
                 blotch_guard: float | None = None, structure_guard: float | None = None,
                 contrast_bound: float | None = None, space: bool | None = None,
                 young_cap: float | None = None) -> LifespanResult:
        """Fig. 4-style sweep from child to old: z_age at each anchor description (the PAE mean), linear
        interpolation of z_age between consecutive anchors (``frames_per_segment`` frames per gap, anchors
        included), all decoded from the same inverted x_T. Anchors: the 7 group descriptions of ``gender``
        (inferred zero-shot when None) unless ``texts`` are given. ``inversion_steps``: steps of the
        inversion (default: ``steps``). ``sampler``, ``shift_gain``, ``tone_guard``, ``hold_gender``: as in
        :meth:`age`. ``calibrate`` (default: the model's ``PadaConfig.calibrate``): each anchor's edit gets
        its own length first (:meth:`calibrate`, 5 renders per anchor), so the anchors are the edits
        :meth:`age` would render for those descriptions (at the PAE mean); frames between anchors
        interpolate the calibrated codes. ``image_hr``, ``keep_background``, ``relative_detail``,
        ``background_guard``, ``saturation_guard``, ``patch_guard``: as in :meth:`age`
        (``LifespanResult.images_hr``);
        ``blotch_guard`` and ``structure_guard`` too, per frame (``LifespanResult.edit_scales``);
        ``contrast_bound`` bounds each anchor (and so every frame between two anchors); ``young_cap``: as in
        :meth:`age`, for each anchor younger than the face, but off unless given (the model's
        ``PadaConfig.young_cap`` is not read here: capped, the young frames read closer together and the
        sweep's order, measured on 32 held-out faces, fell from ρ 0.871 to 0.837). ``space`` (default:
        the model's ``PadaConfig.space_lifespan``): after the calibration, the anchors are shortened to
        change the face step by step away from the input's own age, read by the VL model
        (:func:`pada.aging.backoff.space_anchors`; ``LifespanResult.anchor_scales``)."""
        if frames_per_segment < 1:
            raise PadaError("frames_per_segment must be >= 1")
        clock = _Clock(self.device)
        t0 = time.perf_counter()
        x = _as_batch(image, "input image").to(self.device)
        x_hr = self._sharp_crop(image_hr, x)
        if texts is None:
            gender = gender or self.infer_gender(x)
            texts = [description(g, gender) for g in AGE_GROUPS]
        texts = list(texts)
        if len(texts) < 2:
            raise PadaError("a lifespan needs at least two anchor descriptions")
        young_cap = 0.0 if young_cap is None else young_cap_value(young_cap)
        z_src = self.encode(x)
        e_anchor = torch.cat([self.pae(text=t, ref=ref, n=1, high_diversity=False, text_weight=text_weight)
                              for t in texts])
        # (A, S); bad options fail here, before the inversion
        z_anchor = self.modulate(z_src, e_anchor, shift_gain=shift_gain, hold_gender=hold_gender,
                                 contrast_bound=contrast_bound)
        guard = self.tone_guard(x, tone_guard, background_guard, saturation_guard)
        blotch_guard = self.blotch_limit(blotch_guard)
        structure_guard = self.structure_limit(structure_guard)
        t0 = clock.lap("encode", t0)
        x_T = self.invert(x, z_src, inversion_steps or steps, progress=progress, sampler=sampler)  # noqa: N806
        t0 = clock.lap("invert", t0)
        calibration = None
        if self.model.cfg.calibrate if calibrate is None else calibrate:
            calibration = [self.calibrate(x_T, z_src, e_anchor[k:k + 1], steps, sampler, shift_gain, image=x,
                                          x0_guard=guard, hold_gender=hold_gender, patch_guard=patch_guard,
                                          contrast_bound=contrast_bound, young_cap=young_cap)
                           for k in range(len(texts))]
            z_anchor = torch.cat([self.modulate(z_src, e_anchor[k:k + 1], shift_gain=shift_gain,
                                                edit_scale=c["factor"], hold_gender=hold_gender,
                                                contrast_bound=contrast_bound)
                                  for k, c in enumerate(calibration)])
            t0 = clock.lap("calibrate", t0)
        anchor_scales = None
        if self.model.cfg.space_lifespan if space is None else space:
            z_anchor, anchor_scales = space_anchors(self.diffae, z_src, z_anchor, self.target_ages(e_anchor),
                                                    self.read_age(x))
        zs, labels, anchors = sweep_codes(z_anchor, texts, frames_per_segment)
        images = self.decode(x_T, torch.stack(zs), steps, batch_size=batch_size, progress=progress,
                             sampler=sampler, x0_guard=guard)
        t0 = clock.lap("decode", t0)
        edit_scales = None
        if blotch_guard > 0 or structure_guard > 0:
            images, _, edit_scales = back_off(
                images, z_src, torch.stack(zs), x, blotch_guard,
                lambda rows, z: self.decode(x_T, z, steps, batch_size=batch_size, sampler=sampler,
                                            x0_guard=guard), structure_limit=structure_guard)
            t0 = clock.lap("back-off", t0)
        images_hr = None
        if x_hr is not None:
            images_hr = self._carry(images, x_T, z_src, x, x_hr, steps, sampler, guard, keep_background,
                                    relative_detail)
            clock.lap("detail", t0)
        return LifespanResult(images=images.cpu(), labels=labels, anchors=anchors, timings=clock.times,
                              calibration=calibration, images_hr=images_hr, edit_scales=edit_scales,
                              anchor_scales=anchor_scales)


def sweep_codes(z_anchor: torch.Tensor, texts: Sequence[str],
                frames_per_segment: int) -> tuple[list[torch.Tensor], list[str], list[int]]:
    """A lifespan's frames from its anchor codes ``z_anchor`` (A, S): ``frames_per_segment`` codes per gap
    between consecutive anchors (linear interpolation, the first anchor of each gap included) and the last
    anchor; each frame's label (its anchor's text, "" between anchors) and the anchors' frame indices."""
    zs, labels, anchors = [], [], []
    for k in range(len(texts) - 1):
        for j in range(frames_per_segment):
            zs.append(torch.lerp(z_anchor[k], z_anchor[k + 1], j / frames_per_segment))
            labels.append(texts[k] if j == 0 else "")
            if j == 0:
                anchors.append(len(zs) - 1)
    zs.append(z_anchor[-1])
    labels.append(texts[-1])
    anchors.append(len(zs) - 1)
    return zs, labels, anchors


DEFAULT_CHUNK = {"cpu": 8, "cuda": 32}  # futures decoded at once when the caller does not say


def low_noise_value(value) -> float:
    """A share of fresh noise as a float in (0, 1]; anything else is a :class:`PadaError` naming it."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PadaError(f"low noise must be a number in (0, 1], got {value!r}") from None
    if not 0.0 < v <= 1.0:  # also rejects NaN
        raise PadaError(f"low noise must be in (0, 1], got {value}")
    return v


def mix_start_noise(x_inv: torch.Tensor, noise: torch.Tensor, share: float) -> torch.Tensor:
    """Start noise that keeps part of the input's: √(1 − s²)·``x_inv`` + s·``noise`` with s = ``share`` in
    (0, 1] (``x_inv`` (1 or N, ...) the inverted x_T, ``noise`` (N, ...) fresh unit Gaussians). Both are
    near unit Gaussians, so the mix is too: s near 0 keeps the input's layout and detail, 1 is fresh noise."""
    s = low_noise_value(share)
    return (1.0 - s * s) ** 0.5 * x_inv + s * noise


def default_chunk(device: torch.device | str) -> int:
    """How many futures one DDIM decode batch holds by default on ``device`` (CPU 8, CUDA 32).

    On the CPU the throughput per image stops improving well before 8 images of 64-256 px; on a GPU 32
    images of 256 px keep the activations of one UNet call within ~2 GB. Pass ``batch_size`` to change it.
    """
    return DEFAULT_CHUNK.get(torch.device(device).type, 8)


def decode_chunked(diffae, x_T: torch.Tensor, z: torch.Tensor, steps: int, *, eta: float = 0.0,  # noqa: N803
                   generator: torch.Generator | None = None, batch_size: int | None = None,
                   progress: bool = False, sampler: str = "ddim", x0_guard=None) -> torch.Tensor:
    """Render N futures (x_T (N or 1, 3, H, W), z (N, S)) chunk by chunk into one CPU tensor (N, 3, H, W).

    Peak memory is that of one chunk of ``batch_size`` (default :func:`default_chunk`) plus the N outputs.
    When every row is the same request (one x_T, identical z rows, η = 0) the decode runs once and is
    copied: the outputs would be identical anyway (e.g. PADA without high-level diversity).
    ``sampler``: ``"ddim"`` or ``"multistep"`` (:mod:`pada.diffusion.samplers`); ``x0_guard``: see
    :meth:`pada.diffae.DiffAE.render` (None = off).
    """
    n = z.shape[0]
    if batch_size is not None and batch_size < 1:
        raise PadaError(f"batch_size must be >= 1, got {batch_size}")
    bs = batch_size or default_chunk(z.device)
    kw = {"progress": True} if progress else {}
    kw["sampler"] = sampler
    if x0_guard is not None:
        kw["x0_guard"] = x0_guard
    if x_T.shape[0] == 1 and eta == 0 and n > 1 and bool((z == z[:1]).all()):
        one = diffae.render(x_T.contiguous(), z[:1], steps, eta=eta, clip=True, **kw).float().cpu()
        return one.expand(n, -1, -1, -1).clone()
    out = torch.empty((n, *x_T.shape[1:]), dtype=torch.float32)
    for i in range(0, n, bs):
        j = min(n, i + bs)
        x_i = x_T.expand(j - i, -1, -1, -1) if x_T.shape[0] == 1 else x_T[i:j]
        out[i:j] = diffae.render(x_i.contiguous(), z[i:j], steps, eta=eta, clip=True, generator=generator,
                                 **kw).float().cpu()
    return out


def _module_device(m) -> torch.device:
    for p in m.parameters():
        return p.device
    return torch.device("cpu")


def target_age_of_text(text: str) -> float | None:
    """Target age of one of the 14 canonical descriptions (the group's centre), else None."""
    parsed = parse_description(text)
    return parsed[0].center if parsed else None


def resolve_model(model: str | Path) -> Path:
    """A PADA model file from a path or a :mod:`pada.weights` registry name (PadaError when absent)."""
    p = Path(model)
    if p.suffix == ".safetensors" or p.exists() or "/" in str(model):
        if not p.is_file():
            raise PadaError(f"{p}: no such PADA model file (train one with `pada train pada --data DIR`)")
        return p
    from pada import weights

    try:
        return Path(weights.resolve(str(model)))
    except PadaError as exc:
        raise PadaError(f"PADA model {model!r} is not available ({exc}); train one with "
                        "`pada train pada --data DIR --diffae DIFFAE` and pass --model "
                        "runs/pada/pada.safetensors") from None


# GIF helper (grids: pada.faces.grid) ---------------------------------------------------------------
def save_gif(images: torch.Tensor, path: str | Path, fps: float = 6.0, bounce: bool = True) -> Path:
    """Write frames (F, 3, H, W) in [-1, 1] as an animated GIF (forward, then back when ``bounce``)."""
    import imageio.v2 as imageio

    from pada.faces.io import to_uint8

    frames = to_uint8(images.float().cpu())
    if bounce and len(frames) > 2:
        frames = frames + frames[-2:0:-1]
    from pada.outputs import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:  # all or nothing, umask mode, one-line OSError
        imageio.mimsave(tmp, frames, format="GIF", duration=1.0 / fps, loop=0)
    return path
