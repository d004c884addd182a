"""The PADA training objective: one call = the six losses of §3.3 on one batch (Eq. 7–12).

All image losses act on x̂0 = (x_t − √(1−ᾱ_t)·ε_θ(x_t, t, z)) / √ᾱ_t (Eq. 3) at one random timestep per sample,
with one shared noise / timestep for source, target (and reference):

* source  x̂0_src = f(x_t, t; z_src)     (frozen path, no gradient)
* target  x̂0_tar = f(x_t, t; z_age)     z_age = modulation(z_src, e_age), the only trainable path
* reference x̂0_ref (for f_ref of Eq. 8) from the reference image noised with the same (t, noise).

Batch: the collated items of :class:`pada.data.datasets.AgingPairDataset` (``B`` rows); the keys used:

========================  ========================================================================
``source``                (B, 3, H, W) source faces in [-1, 1]
``reference``             (B, 3, H, W) reference faces: a real face of the target group in both modes
``mode``                  B strings, ``"image"`` (reference-guided) or ``"text"`` (text-guided)
``ref_is_source``         (B,) bool: the reference is the source itself (prob. 0.167 in the paper; L_rec)
``source_description``    B source texts (t_src of L_clip)
``target_description``    B target texts (t_tar of L_clip; the text prior e_txt of Eq. 7)
========================  ========================================================================

Which terms apply to which rows:

* PAE: image rows e_age = μ + σ⊙η from E_age(E_I(reference)) (Eq. 5); text rows the text-driven
  e_age = e_txt + ε·η (§3.2.1). L_tKL: image rows (μ, σ exist only there).
* L_age: rows with ref ≠ source. f_ref comes from the reference image (for text rows: the dataset's real
  face of the target group, the "age anchor" of the text), noised with the row's own (t, noise) and
  denoised with its own z (``ref_features="x0hat"``, paper) or taken clean (``"real"``).
* L_clip: rows with ref ≠ source and source text ≠ target text (otherwise the text direction is zero).
* L_id, L_norm: all rows. L_rec: rows with ref = source. L_tone and L_blotch (pada
  additions, ``lambda_tone``, ``lambda_blotch``): all rows.

With ``LossConfig.train_guard`` every term sees x̂0_tar under the model's guards (held near x̂0_src); with
``LossConfig.train_bound`` x̂0_tar is rendered from z_age with its edit held within the contrast bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from pada.aging.augment import apply_view, draw_views, subset
from pada.aging.config import LossConfig
from pada.aging.losses import (
    age_triplet_loss,
    blotch_loss,
    clip_direction_loss,
    diversity_loss,
    identity_loss,
    norm_loss,
    rec_loss,
    shift_loss,
    tkl_loss,
    tone_loss,
)
from pada.aging.model import PadaModel
from pada.aging.pae import gaussian_noise
from pada.frozen import freeze


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B,) over ``mask`` (B,) bool; 0 (still in the graph) when the mask is empty."""
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


@dataclass
class Frozen:
    """The frozen networks the objective uses (any objects with these interfaces).

    ``diffae``: ``.encode(x) -> z (B,S)``, ``.eps(x_t, t, z) -> ε`` (a :class:`pada.diffae.DiffAE`
    converts v-prediction networks to ε there), ``.schedule`` (for
    :func:`pada.diffusion.q_sample` / :func:`pada.diffusion.predict_x0`). ``vl``: ``encode_image`` /
    ``encode_text`` → unit (B, D). ``age_critic(x) -> AgeOutput`` with ``.features``;
    ``id_critic(x) -> (B, E)``.
    """

    diffae: object
    vl: object
    age_critic: object | None = None
    id_critic: object | None = None


def _group_centres(groups, device) -> torch.Tensor:
    """(B,) centre ages of age-group indices (pada.data.groups.AGE_GROUPS)."""
    from pada.data.groups import AGE_GROUPS

    idx = torch.as_tensor(groups).reshape(-1).long().tolist()
    return torch.tensor([AGE_GROUPS[i].center for i in idx], dtype=torch.float32, device=device)


def _draw_rate(eta: torch.Tensor) -> torch.Tensor:
    """(B,) in [-1, 1]: how much faster or slower than the typical face a PAE draw with noise ``eta`` (B, D)
    ages, read off one fixed direction of the noise (seeded, the same in every run): (η·u).clamp(±2) / 2."""
    u = torch.randn(eta.shape[1], generator=torch.Generator().manual_seed(1729)).to(eta)
    return (eta @ (u / u.norm())).clamp(-2.0, 2.0) / 2.0


@dataclass
class _Step:
    """What one batch gives the losses, filled in step by step by :meth:`PadaObjective.__call__`."""

    # _read_batch: the rows
    x_src: torch.Tensor
    x_ref: torch.Tensor
    dev: torch.device
    B: int
    has_img: torch.Tensor  # (B,) bool: reference-guided rows (the rest are text-guided)
    is_same: torch.Tensor  # (B,) bool: reference = source (L_rec)
    change: torch.Tensor  # (B,) bool: rows that ask for an age change (L_age, L_clip)
    real_ref: torch.Tensor  # (B,) bool: the reference is a real face of the target group (L_age)
    src_text: list[str]
    tar_text: list[str]
    # _embed (frozen) and the PAE / modulation
    z_src: torch.Tensor | None = None
    e_txt: torch.Tensor | None = None
    e_img: torch.Tensor | None = None
    eta: torch.Tensor | None = None
    mu: torch.Tensor | None = None
    sigma: torch.Tensor | None = None
    z_age: torch.Tensor | None = None
    z_out: torch.Tensor | None = None  # z_age as rendered: with the spread / contrast bound the losses see
    # _denoise
    t: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    x0_src: torch.Tensor | None = None
    x0_tar: torch.Tensor | None = None
    # the critics' random views (None: off) and a zero that keeps an empty term in the graph
    view: object | None = None
    zero: torch.Tensor | None = None


class PadaObjective:
    """``objective(batch, generator) -> dict``: per-term losses (0-d tensors) and ``"total"`` (Eq. 12)."""

    def __init__(self, model: PadaModel, frozen: Frozen, loss_cfg: LossConfig | None = None) -> None:
        self.model = model
        self.frozen = frozen
        self.cfg = loss_cfg or LossConfig()
        self.age_direction: torch.Tensor | None = None  # (S,) per year, for L_dir (set_age_direction)
        for m in (frozen.diffae, frozen.vl, frozen.age_critic, frozen.id_critic):
            if isinstance(m, nn.Module):
                freeze(m)
        if self.cfg.enabled("L_age") and frozen.age_critic is None:
            raise ValueError("L_age is enabled but no age critic was given")
        if self.cfg.enabled("L_id") and frozen.id_critic is None:
            raise ValueError("L_id is enabled but no identity critic was given")
        unet = getattr(frozen.diffae, "unet", None)
        if isinstance(unet, nn.Module):
            freeze(unet)
        self._text_cache: dict[str, torch.Tensor] = {}

    def set_age_direction(self, direction: torch.Tensor) -> None:
        """The frozen DiffAE's linear age direction (S,) per year, the aim of L_dir (lambda_dir)."""
        self.age_direction = direction.detach().float()

    # ------------------------------------------------------------------------------------------------
    def _encode_texts(self, texts: Sequence[str], device) -> torch.Tensor:
        """(B, D) unit text embeddings, cached per string (the text tower is frozen)."""
        missing = sorted({t for t in texts if t not in self._text_cache})
        if missing:
            with torch.no_grad():
                emb = self.frozen.vl.encode_text(missing).float()
            for t, e in zip(missing, emb):
                self._text_cache[t] = e.detach()
        return torch.stack([self._text_cache[t] for t in texts]).to(device)

    def _x0(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        from pada.diffusion import predict_x0

        eps = self.frozen.diffae.eps(x_t, t, z)
        x0 = predict_x0(self.frozen.diffae.schedule, x_t, t, eps.float()).float()
        return x0.clamp(-1.0, 1.0) if self.cfg.clip_x0 else x0

    # ------------------------------------------------------------------------------------------------
    def __call__(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The losses of one batch, in five steps: read the rows, embed them with the frozen networks,
        draw the age code z_age (PAE + modulation), denoise one noised source with z_src and with z_age, then
        each enabled loss on the rows it applies to (module docstring), and their weighted sum.

        The random draws come in a fixed order from ``generator`` (η of the PAE, the timesteps, the noise,
        the critics' views, the second PAE draw of L_div), so one seed gives the same losses."""
        s = self._read_batch(batch)
        self._embed(s)
        s.eta = gaussian_noise((s.B, s.e_txt.shape[1]), generator, s.dev, torch.float32)
        s.mu, s.sigma = self.model.age_encoder(s.e_img)  # rows without an image are computed but unused
        s.z_age = self._modulate(s.z_src, self._e_age(s, s.eta), s.eta)
        s.z_out = self._rendered(s, s.z_age, s.eta)
        self._denoise(s, generator)
        s.zero = s.z_age.sum() * 0.0
        s.view = draw_views(s.B, self.cfg.augment, generator, s.dev) if self.cfg.augment > 0 else None

        out = self._losses(s, batch, generator)
        total = s.zero
        for name, value in out.items():
            total = total + self.cfg.weight(name) * value
        out["total"] = total
        return out

    # ---- the steps, in the order __call__ runs them
    def _read_batch(self, batch: dict) -> _Step:
        """The batch's tensors on one device and its row masks (which loss applies to which row)."""
        x_src = batch["source"].float()
        dev, B = x_src.device, x_src.shape[0]
        modes = [batch["mode"]] * B if isinstance(batch["mode"], str) else list(batch["mode"])
        is_text = torch.tensor([m == "text" for m in modes], dtype=torch.bool, device=dev)
        is_same = torch.as_tensor(batch["ref_is_source"], dtype=torch.bool, device=dev).reshape(B)
        # rows that ask for an age change (L_age / L_clip); optionally not the source's own group
        change = ~is_same
        if self.cfg.skip_same_group and "target_group" in batch and "source_group" in batch:
            same_group = torch.as_tensor(batch["target_group"], device=dev).reshape(B) == \
                torch.as_tensor(batch["source_group"], device=dev).reshape(B)
            change = change & ~same_group
        real_ref = torch.as_tensor(batch.get("reference_real", [True] * B), dtype=torch.bool,
                                   device=dev).reshape(B)
        return _Step(x_src=x_src, x_ref=batch["reference"].float().to(dev), dev=dev, B=B, has_img=~is_text,
                     is_same=is_same, change=change, real_ref=real_ref,
                     src_text=list(batch["source_description"]), tar_text=list(batch["target_description"]))

    @torch.no_grad()
    def _embed(self, s: _Step) -> None:
        """Frozen embeddings: the source's code z_src, the target texts e_txt, the reference images e_img
        (zeros on text rows)."""
        fz = self.frozen
        s.z_src = fz.diffae.encode(s.x_src).float()
        s.e_txt = self._encode_texts(s.tar_text, s.dev)
        s.e_img = torch.zeros_like(s.e_txt)
        if s.has_img.any():
            s.e_img[s.has_img] = fz.vl.encode_image(s.x_ref[s.has_img]).float()

    def _modulate(self, z_src: torch.Tensor, e_age: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        """z_age of the modulation, its part along the gender direction taken out with
        ``LossConfig.train_hold`` (as ``PadaConfig.hold_gender`` renders it)."""
        z_age = self.model.modulation(z_src, e_age, eta)
        return self.model.modulation.hold(z_src, z_age) if self.cfg.train_hold else z_age

    def _rendered(self, s: _Step, z_age: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        """z_age as the losses see it rendered: with the model's draw spread added
        (LossConfig.train_spread), then each edit held within the contrast bound (LossConfig.train_bound);
        with neither, z_age itself."""
        if self.cfg.train_spread:
            mod = self.model.modulation
            if not mod.cfg.draw_spread:
                raise ValueError("train_spread=true needs a model with draw_spread > 0")
            z_age = mod.add_spread(s.z_src, z_age, eta)
        if self.cfg.train_bound > 0:
            from pada.aging.backoff import bound_contrast

            z_age = bound_contrast(self.frozen.diffae, s.z_src, z_age, self.cfg.train_bound, grad=True)
        return z_age

    def _e_age(self, s: _Step, eta: torch.Tensor) -> torch.Tensor:
        """The PAE's age embedding for the noise ``eta``: image rows μ + σ⊙η (Eq. 5), text rows the
        text-driven sample (§3.2.1)."""
        enc = self.model.age_encoder
        e_age_img = enc.sample(s.mu, s.sigma, noise=eta)
        e_age_txt = enc.sample_text(s.e_txt, eps=self.cfg.train_text_eps, noise=eta)
        return torch.where(s.has_img[:, None], e_age_img, e_age_txt)

    def _denoise(self, s: _Step, generator: torch.Generator | None) -> None:
        """One random timestep and noise per row, shared by source / target (and reference, in L_age);
        x̂0 of the noised source with z_src (no gradient) and with z_age."""
        from pada.diffusion import q_sample

        cfg, sched = self.cfg, self.frozen.diffae.schedule
        t_max = min(cfg.t_max, int(sched.T))
        s.t = torch.randint(min(cfg.t_min, t_max - 1), t_max, (s.B,), generator=generator,
                            device=generator.device if generator is not None else "cpu").to(s.dev)
        s.noise = gaussian_noise(tuple(s.x_src.shape), generator, s.dev, torch.float32)
        x_t = q_sample(sched, s.x_src, s.t, s.noise).float()
        with torch.no_grad():
            s.x0_src = self._x0(x_t, s.t, s.z_src)
        s.x0_tar = self._x0(x_t, s.t, s.z_out)
        if cfg.train_guard:  # the losses see the edit as the guards render it (LossConfig.train_guard)
            from pada.aging.guard import ToneGuard

            mc = self.model.cfg
            if not (mc.tone_guard > 0 or mc.background_guard > 0):
                raise ValueError("train_guard=true needs a model with tone_guard or background_guard > 0")
            s.x0_tar = ToneGuard(s.x0_src, mc.tone_guard, mc.background_guard)(s.x0_tar)

    def _seen(self, s: _Step, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """What a critic scores: x itself, or its random view (LossConfig.augment) on the rows ``mask``."""
        if s.view is None:
            return x
        return apply_view(x, s.view if mask is None else subset(s.view, mask))

    def _losses(self, s: _Step, batch: dict, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """Each enabled term, in a fixed order (the order of the sum and of the random draws)."""
        cfg, out = self.cfg, {}
        if cfg.enabled("L_tKL"):
            per = tkl_loss(s.mu, s.sigma, s.e_txt, s.e_img, variant="stable",
                           sigma_reduction=cfg.kl_sigma_reduction)
            out["L_tKL"] = masked_mean(per, s.has_img)
        if cfg.enabled("L_age"):
            out["L_age"] = self._age_loss(s)
        if cfg.enabled("L_clip"):
            out["L_clip"] = self._clip_loss(s)
        if cfg.enabled("L_id"):
            with torch.no_grad():
                r_src = self.frozen.id_critic(self._seen(s, s.x0_src)).float()
            out["L_id"] = identity_loss(r_src, self.frozen.id_critic(self._seen(s, s.x0_tar)).float()).mean()
        if cfg.enabled("L_norm"):
            if cfg.norm_target == "shift":
                out["L_norm"] = shift_loss(s.z_age, s.z_src).mean()
            else:
                out["L_norm"] = norm_loss(s.z_age, cfg.norm_reduction).mean()
        if cfg.lambda_div > 0:
            out["L_div"] = self._diversity_loss(s, generator)
        if cfg.lambda_dir > 0:
            out["L_dir"] = self._direction_loss(s, batch)
        if cfg.enabled("L_rec"):
            per = rec_loss(s.x0_src, s.x0_tar, cfg.rec_reduction)
            out["L_rec"] = masked_mean(per, s.is_same) if s.is_same.any() else s.zero
        if cfg.lambda_tone > 0:
            out["L_tone"] = tone_loss(s.x0_src, s.x0_tar, cfg.tone_margin).mean()
        if cfg.lambda_blotch > 0:
            out["L_blotch"] = blotch_loss(s.x0_src, s.x0_tar, cfg.blotch_margin).mean()
        return out

    # ---- the terms that need more than one line
    def _age_loss(self, s: _Step) -> torch.Tensor:
        """L_age (Eq. 8) on the rows that ask for a change: triplet of the critic's features of x̂0_src,
        the reference (f_ref) and x̂0_tar."""
        from pada.diffusion import q_sample

        mask, critic = s.change & s.real_ref, self.frozen.age_critic
        if not mask.any():
            return s.zero
        with torch.no_grad():
            f_src = critic(self._seen(s, s.x0_src[mask], mask)).features.float()
            xr = s.x_ref[mask]
            if self.cfg.ref_features == "x0hat":
                tm = s.t[mask]
                xr_t = q_sample(self.frozen.diffae.schedule, xr, tm, s.noise[mask]).float()
                xr = self._x0(xr_t, tm, self.frozen.diffae.encode(xr).float())
            f_ref = critic(self._seen(s, xr, mask)).features.float()
        f_tar = critic(self._seen(s, s.x0_tar[mask], mask)).features.float()
        return age_triplet_loss(f_src, f_ref, f_tar, self.cfg.margin).mean()

    def _clip_loss(self, s: _Step) -> torch.Tensor:
        """L_clip (Eq. 9) on the rows that ask for a change and whose source and target texts differ."""
        vl = self.frozen.vl
        mask = s.change & torch.tensor([a != b for a, b in zip(s.src_text, s.tar_text)], device=s.dev)
        if not mask.any():
            return s.zero
        with torch.no_grad():
            i_src = vl.encode_image(self._seen(s, s.x0_src[mask], mask)).float()
            t_src = self._encode_texts([t for t, m in zip(s.src_text, mask.tolist()) if m], s.dev)
        i_tar = vl.encode_image(self._seen(s, s.x0_tar[mask], mask)).float()
        return clip_direction_loss(i_tar, i_src, s.e_txt[mask], t_src).mean()

    def _diversity_loss(self, s: _Step, generator: torch.Generator | None) -> torch.Tensor:
        """L_div, mode seeking: a second PAE draw must give a different code."""
        eta2 = gaussian_noise(tuple(s.eta.shape), generator, s.dev, torch.float32)
        z_age2 = self._rendered(s, self._modulate(s.z_src, self._e_age(s, eta2), eta2), eta2)
        z_age = s.z_out
        if self.cfg.div_across:  # only the difference across the age direction counts (LossConfig.div_across)
            if self.age_direction is None:
                raise ValueError("div_across needs the DiffAE's age direction: call set_age_direction")
            w_hat = self.age_direction.to(s.dev) / self.age_direction.norm().clamp_min(1e-12)
            z_age, z_age2 = (z - (z @ w_hat)[:, None] * w_hat[None] for z in (z_age, z_age2))
        return diversity_loss(z_age, z_age2, s.z_src, self.cfg.div_target).mean()

    def _direction_loss(self, s: _Step, batch: dict) -> torch.Tensor:
        """L_dir, a data prior: the shift the linear age direction gives for the row's change of age group."""
        if self.age_direction is None:
            raise ValueError("lambda_dir > 0 needs the DiffAE's age direction: call set_age_direction")
        base = self._years(s, batch)
        years = base
        if self.cfg.dir_spread > 0:  # each PAE draw ages by its own amount (LossConfig.dir_spread)
            years = base * (1.0 + self.cfg.dir_spread * _draw_rate(s.eta))
        w = self.cfg.dir_gain * self.age_direction.to(s.dev)
        w_hat = w / w.norm().clamp_min(1e-12)
        shift, size = s.z_age - s.z_src, s.z_src.square().sum(-1).clamp_min(1e-8)
        if self.cfg.dir_mode == "along":  # only the amount of aging: the orthogonal part stays free
            miss = shift @ w_hat - years * w.norm()
            return miss.square().div(size).mean()
        if self.cfg.dir_mode == "mean":  # the PAE mean's whole shift; each draw's deviation only along w
            eta0 = torch.zeros_like(s.eta)
            z_mean = self._modulate(s.z_src, self._e_age(s, eta0), eta0)
            full = (z_mean - s.z_src - base[:, None] * w[None]).square().sum(-1)
            along = ((s.z_age - z_mean) @ w_hat - (years - base) * w.norm()).square()
            return (full + along).div(size).mean()
        return (shift - years[:, None] * w[None]).square().sum(-1).div(size).mean()

    def _years(self, s: _Step, batch: dict) -> torch.Tensor:
        """(B,) years of aging each row asks for (LossConfig.dir_target): between the group centres, or from
        the source's age label to the reference's (image rows) or the target group's centre (text rows)."""
        target = _group_centres(batch["target_group"], s.dev)
        if self.cfg.dir_target == "group":
            return target - _group_centres(batch["source_group"], s.dev)
        missing = [k for k in ("source_age", "reference_age") if k not in batch]
        if missing:
            raise ValueError(f"dir_target='label' needs the batch keys {missing} (PairDataset provides them)")
        ref_age = torch.as_tensor(batch["reference_age"], dtype=torch.float32).reshape(-1).to(s.dev)
        src_age = torch.as_tensor(batch["source_age"], dtype=torch.float32).reshape(-1).to(s.dev)
        return torch.where(s.has_img, ref_age, target) - src_age
