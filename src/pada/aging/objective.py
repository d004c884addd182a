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
* L_id, L_norm: all rows. L_rec: rows with ref = source.
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
    clip_direction_loss,
    diversity_loss,
    identity_loss,
    norm_loss,
    rec_loss,
    shift_loss,
    tkl_loss,
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
        from pada.diffusion import q_sample

        cfg, fz, model = self.cfg, self.frozen, self.model
        x_src = batch["source"].float()
        dev, B = x_src.device, x_src.shape[0]
        x_ref = batch["reference"].float().to(dev)
        modes = [batch["mode"]] * B if isinstance(batch["mode"], str) else list(batch["mode"])
        is_text = torch.tensor([m == "text" for m in modes], dtype=torch.bool, device=dev)
        is_same = torch.as_tensor(batch["ref_is_source"], dtype=torch.bool, device=dev).reshape(B)
        src_text, tar_text = list(batch["source_description"]), list(batch["target_description"])
        has_img = ~is_text

        with torch.no_grad():
            z_src = fz.diffae.encode(x_src).float()
            e_txt = self._encode_texts(tar_text, dev)
            e_img = torch.zeros_like(e_txt)
            if has_img.any():
                e_img[has_img] = fz.vl.encode_image(x_ref[has_img]).float()

        # ---- PAE (Eq. 5) and adaptive modulation (Eq. 6)
        enc = model.age_encoder
        D = e_txt.shape[1]
        eta = gaussian_noise((B, D), generator, dev, torch.float32)
        mu, sigma = enc(e_img)  # rows without an image are computed but unused
        e_age_img = enc.sample(mu, sigma, noise=eta)
        e_age_txt = enc.sample_text(e_txt, eps=cfg.train_text_eps, noise=eta)
        e_age = torch.where(has_img[:, None], e_age_img, e_age_txt)
        z_age = model.modulation(z_src, e_age)

        # ---- one random timestep and noise per sample, shared by source / target / reference
        t_max = min(cfg.t_max, int(fz.diffae.schedule.T))
        t = torch.randint(min(cfg.t_min, t_max - 1), t_max, (B,), generator=generator,
                          device=generator.device if generator is not None else "cpu").to(dev)
        noise = gaussian_noise(tuple(x_src.shape), generator, dev, torch.float32)
        sched = fz.diffae.schedule
        x_t = q_sample(sched, x_src, t, noise).float()
        with torch.no_grad():
            x0_src = self._x0(x_t, t, z_src)
        x0_tar = self._x0(x_t, t, z_age)

        out: dict[str, torch.Tensor] = {}
        zero = z_age.sum() * 0.0
        view = draw_views(B, cfg.augment, generator, dev) if cfg.augment > 0 else None

        def seen(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            """What a critic scores: x itself, or its random view (LossConfig.augment)."""
            if view is None:
                return x
            return apply_view(x, view if mask is None else subset(view, mask))

        # rows that ask for an age change (L_age / L_clip); optionally not the source's own group
        change = ~is_same
        if cfg.skip_same_group and "target_group" in batch and "source_group" in batch:
            same_group = torch.as_tensor(batch["target_group"], device=dev).reshape(B) == \
                torch.as_tensor(batch["source_group"], device=dev).reshape(B)
            change = change & ~same_group

        if cfg.enabled("L_tKL"):
            per = tkl_loss(mu, sigma, e_txt, e_img, variant="stable", sigma_reduction=cfg.kl_sigma_reduction)
            out["L_tKL"] = masked_mean(per, has_img)

        if cfg.enabled("L_age"):
            age_ref, age_mask = x_ref, change
            if age_mask.any():
                with torch.no_grad():
                    f_src = fz.age_critic(seen(x0_src[age_mask], age_mask)).features.float()
                    xr = age_ref[age_mask]
                    if cfg.ref_features == "x0hat":
                        tm = t[age_mask]
                        xr_t = q_sample(sched, xr, tm, noise[age_mask]).float()
                        xr = self._x0(xr_t, tm, fz.diffae.encode(xr).float())
                    f_ref = fz.age_critic(seen(xr, age_mask)).features.float()
                f_tar = fz.age_critic(seen(x0_tar[age_mask], age_mask)).features.float()
                out["L_age"] = age_triplet_loss(f_src, f_ref, f_tar, cfg.margin).mean()
            else:
                out["L_age"] = zero

        if cfg.enabled("L_clip"):
            clip_mask = change & torch.tensor([a != b for a, b in zip(src_text, tar_text)], device=dev)
            if clip_mask.any():
                with torch.no_grad():
                    i_src = fz.vl.encode_image(seen(x0_src[clip_mask], clip_mask)).float()
                    t_src = self._encode_texts([s for s, m in zip(src_text, clip_mask.tolist()) if m], dev)
                i_tar = fz.vl.encode_image(seen(x0_tar[clip_mask], clip_mask)).float()
                out["L_clip"] = clip_direction_loss(i_tar, i_src, e_txt[clip_mask], t_src).mean()
            else:
                out["L_clip"] = zero

        if cfg.enabled("L_id"):
            with torch.no_grad():
                r_src = fz.id_critic(seen(x0_src)).float()
            out["L_id"] = identity_loss(r_src, fz.id_critic(seen(x0_tar)).float()).mean()

        if cfg.enabled("L_norm"):
            if cfg.norm_target == "shift":
                out["L_norm"] = shift_loss(z_age, z_src).mean()
            else:
                out["L_norm"] = norm_loss(z_age, cfg.norm_reduction).mean()

        if cfg.lambda_div > 0:  # mode seeking: a second PAE draw must give a different code
            eta2 = gaussian_noise((B, D), generator, dev, torch.float32)
            e2 = torch.where(has_img[:, None], enc.sample(mu, sigma, noise=eta2),
                             enc.sample_text(e_txt, eps=cfg.train_text_eps, noise=eta2))
            out["L_div"] = diversity_loss(z_age, model.modulation(z_src, e2), z_src, cfg.div_target).mean()

        if cfg.lambda_dir > 0:  # data prior: the shift the linear age direction gives for this row
            if self.age_direction is None:
                raise ValueError("lambda_dir > 0 needs the DiffAE's age direction: call set_age_direction")
            years = _group_centres(batch["target_group"], dev) - _group_centres(batch["source_group"], dev)
            want = years[:, None] * (cfg.dir_gain * self.age_direction.to(dev))[None]
            out["L_dir"] = ((z_age - z_src) - want).square().sum(-1).div(
                z_src.square().sum(-1).clamp_min(1e-8)).mean()

        if cfg.enabled("L_rec"):
            per = rec_loss(x0_src, x0_tar, cfg.rec_reduction)
            out["L_rec"] = masked_mean(per, is_same) if is_same.any() else zero

        total = zero
        for name, value in out.items():
            total = total + cfg.weight(name) * value
        out["total"] = total
        return out
