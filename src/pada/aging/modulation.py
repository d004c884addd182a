"""Adaptive modulation, paper §3.2.2, Eq. 6.

A sampled PAE e_age (B, D) is first translated into DiffAE's semantic space, Δz = MLP(e_age) (B, S), then
modulates the normalised source code:

    z_age = γ_θ(Δz) ⊙ (z_src − μ_src) / σ_src + β_θ(Δz)                                      (Eq. 6)

γ_θ and β_θ are two fully-connected layers each (Linear → LeakyReLU → Linear).

Statistics (``PadaConfig.stats``):
* ``"instance"`` (default): μ_src, σ_src are the mean / std over the S entries of each z_src, (B, 1) —
  AdaIN-style, needs nothing but z_src.
* ``"dataset"``: per-channel mean / std over a data set's codes, buffers ``z_mean``, ``z_std`` (S,), filled by
  :func:`compute_latent_stats` (like DiffAE's ``conds_mean`` / ``conds_std``).

Identity at initialisation: γ_θ and β_θ are written as residuals around the statistics,
``γ_θ(Δz) = σ_src + g(Δz)`` and ``β_θ(Δz) = μ_src + b(Δz)``, so Eq. 6 becomes
``z_age = z_src + g(Δz) ⊙ ẑ + b(Δz)`` with ẑ = (z_src − μ_src)/σ_src. The last layers of g and b start with
weights of scale ``init_gain`` and zero bias: z_age = z_src exactly for ``init_gain = 0`` and within
O(init_gain) otherwise. For ``"dataset"`` statistics this is Eq. 6 with γ/β biases initialised to σ/μ; for
``"instance"`` statistics the offset depends on the sample, which a function of Δz alone could not provide.

Draw head (``PadaConfig.draw_hidden`` > 0, a pada addition): Δz = MLP(e_age) + draw(η), where η is the PAE
draw's standard-normal noise, so that different draws of one PAE reach γ/β as different inputs of size O(1).
The head has no biases, so η = 0 (or no η), the PAE mean, adds nothing; its last layer starts at zero. Its
output is multiplied by the fixed ``PadaConfig.draw_gain`` (1 = none), which makes it learn faster.

Source input (``PadaConfig.source_input``, a pada addition): the MLP's first layer also reads c, the
source code's coordinates in the shift subspace, standardised: Δz = MLP'(e_age, c), where the first
pre-activation is W_e·e_age + b + W_c·c, W_c bias-free and zero at the start. Eq. 6's γ acts channel by
channel, so without it the shift is nearly the same for every face asked for one target.

Gender hold (``PadaConfig.hold_gender``, a pada addition): the buffer ``held_directions`` (1, S), the unit
difference of the training codes' mean man and mean woman (:meth:`AdaptiveModulation.set_held_directions`);
:meth:`AdaptiveModulation.hold` takes each shift's part along it out. The pipeline applies it at inference,
the objective in training only with ``LossConfig.train_hold``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import torch
from torch import nn

from pada.aging.config import PadaConfig
from pada.aging.pae import _mlp
from pada.validation import check_number


def _two_fc(d_in: int, hidden: int, d_out: int, gain: float) -> nn.Sequential:
    last = nn.Linear(hidden, d_out)
    with torch.no_grad():
        last.weight.mul_(gain)
        last.bias.zero_()
    return nn.Sequential(nn.Linear(d_in, hidden), nn.LeakyReLU(0.2), last)


#: the largest spread cap a request or a model may set (× the draw's own edit)
MAX_SPREAD_CAP = 10.0


def cap_spread(offset: torch.Tensor, shift: torch.Tensor, cap: float) -> torch.Tensor:
    """``offset`` (B, S) shortened, row by row, to at most ``cap`` × the length of ``shift`` (B, S), each
    draw's own edit (directions kept; a row already within it is unchanged). Why: the spread's offset is a
    fixed share of ‖z_src‖, so for a target near the face's own age (an edit a third of the offset's
    length) the N results were mostly the offset — random changes of lighting, hair tone and backdrop —
    which on the demo DiffAE also broke faces asked to look younger; with the cap, how much the results
    differ grows with how far they are asked to move (docs/pada_method.md, "Spread cap")."""
    limit = float(cap) * shift.norm(dim=-1, keepdim=True)
    return offset * (limit / offset.norm(dim=-1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)


def spread_cap_value(value) -> float:
    """A spread cap as a float in [0, :data:`MAX_SPREAD_CAP`] (0 = no cap); anything else is a
    :class:`PadaError` naming it."""
    return float(check_number("spread cap", value, lo=0.0, hi=MAX_SPREAD_CAP))


class AdaptiveModulation(nn.Module):
    """e_age (B, D), z_src (B, S) → z_age (B, S) by Eq. 6 (module docstring)."""

    def __init__(self, cfg: PadaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Δz = MLP(e_age): (mod_layers − 1) hidden Linear+LeakyReLU layers, then a Linear to S.
        hidden = cfg.mod_layers - 1
        self.mlp = nn.Sequential(*_mlp(cfg.e_dim, cfg.mod_hidden, hidden),
                                 nn.Linear(cfg.mod_hidden if hidden else cfg.e_dim, cfg.z_dim))
        self.gamma = _two_fc(cfg.z_dim, cfg.z_dim, cfg.z_dim, cfg.init_gain)
        self.beta = _two_fc(cfg.z_dim, cfg.z_dim, cfg.z_dim, cfg.init_gain)
        # Data-set statistics (used only when cfg.stats == "dataset"); always present so files load strictly.
        self.register_buffer("z_mean", torch.zeros(cfg.z_dim))
        self.register_buffer("z_std", torch.ones(cfg.z_dim))
        self.register_buffer("stats_ready", torch.tensor(cfg.stats == "instance"))
        # Rows: orthonormal leading directions of real codes (PadaConfig.shift_subspace; set by set_subspace),
        # then the age direction (shift_age_direction). Only models with a subspace carry the buffer, so files
        # without it keep loading strictly.
        if cfg.shift_subspace:
            rows = cfg.shift_subspace + int(cfg.shift_age_direction)
            self.register_buffer("shift_basis", torch.zeros(rows, cfg.z_dim))
        if cfg.draw_hidden:  # no biases: η = 0 (the PAE mean) adds exactly nothing
            self.draw = nn.Sequential(nn.Linear(cfg.e_dim, cfg.draw_hidden, bias=False), nn.LeakyReLU(0.2),
                                      nn.Linear(cfg.draw_hidden, cfg.z_dim, bias=False))
            nn.init.zeros_(self.draw[2].weight)
        if cfg.has_spread_basis:  # fitted by set_spread_basis; only models with a spread carry it
            self.register_buffer("spread_basis", torch.zeros(cfg.shift_subspace, cfg.z_dim))
        if cfg.hold_gender:  # fitted by set_held_directions; only models that hold gender carry it
            self.register_buffer("held_directions", torch.zeros(1, cfg.z_dim))
        if cfg.source_input:  # zero at the start: a fresh model behaves as one without the source input
            first = self.mlp[0].out_features
            self.source = nn.Linear(cfg.shift_subspace, first, bias=False)
            nn.init.zeros_(self.source.weight)
            self.register_buffer("source_mean", torch.zeros(cfg.shift_subspace))
            self.register_buffer("source_std", torch.ones(cfg.shift_subspace))

    def statistics(self, z_src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ_src, σ_src), broadcastable to z_src (B, S): (B, 1) for "instance", (1, S) for "dataset"."""
        if self.cfg.stats == "instance":
            return z_src.mean(-1, keepdim=True), z_src.std(-1, keepdim=True) + self.cfg.stats_eps
        if not bool(self.stats_ready):
            raise RuntimeError("dataset statistics are not set: call set_statistics / compute_latent_stats "
                               "first")
        return self.z_mean[None].to(z_src.dtype), self.z_std[None].to(z_src.dtype) + self.cfg.stats_eps

    @torch.no_grad()
    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-channel data-set statistics (S,) for ``stats="dataset"``."""
        if mean.shape != (self.cfg.z_dim,) or std.shape != (self.cfg.z_dim,):
            raise ValueError(f"statistics must have shape ({self.cfg.z_dim},)")
        self.z_mean.copy_(mean)
        self.z_std.copy_(std)
        self.stats_ready.fill_(True)

    @torch.no_grad()
    def set_subspace(self, codes: torch.Tensor, age_direction: torch.Tensor | None = None) -> float:
        """Fit ``shift_basis`` to codes (N, S) of real faces: their ``shift_subspace`` leading principal
        directions, then (``shift_age_direction``) ``age_direction`` (S,) made orthogonal to them. Returns the
        share of the codes' variance the principal directions hold."""
        m = self.cfg.shift_subspace
        if m == 0:
            raise ValueError("set_subspace needs PadaConfig.shift_subspace > 0")
        if codes.ndim != 2 or codes.shape[1] != self.cfg.z_dim or codes.shape[0] < m:
            raise ValueError(f"set_subspace needs at least {m} codes of size {self.cfg.z_dim}, "
                             f"got {tuple(codes.shape)}")
        s_dim = self.cfg.z_dim
        if self.cfg.shift_age_direction and (age_direction is None or age_direction.shape != (s_dim,)):
            raise ValueError(f"shift_age_direction=true: set_subspace needs the age direction ({s_dim},)")
        x = codes.double()
        _, s, vh = torch.linalg.svd(x - x.mean(0), full_matrices=False)
        rows = vh[:m]
        if self.cfg.shift_age_direction:
            w = age_direction.double()
            rest = w - (rows @ w) @ rows  # the part of the age direction the principal directions miss
            if float(rest.norm()) <= 1e-6 * float(w.norm()):
                raise ValueError("the age direction lies inside the principal directions: nothing to add")
            rows = torch.cat([rows, (rest / rest.norm())[None]])
        self.shift_basis.copy_(rows.to(self.shift_basis.dtype))
        if self.cfg.source_input:
            coords = x @ vh[:m].T
            self.source_mean.copy_(coords.mean(0).to(self.source_mean.dtype))
            self.source_std.copy_(coords.std(0).clamp_min(1e-8).to(self.source_std.dtype))
        return float(s[:m].square().sum() / s.square().sum())

    @torch.no_grad()
    def set_spread_basis(self, age_directions: torch.Tensor) -> int:
        """Fit ``spread_basis`` (needs ``draw_spread`` > 0 and a fitted shift subspace): the principal rows of
        ``shift_basis`` with the span of ``age_directions`` (K, S) (e.g. the linear age direction and the
        ridge age read-out of the training codes) projected out. Returns the rank left (m − K)."""
        if not self.cfg.has_spread_basis:
            raise ValueError("set_spread_basis needs PadaConfig.draw_spread > 0 or spread_basis=true")
        m = self.cfg.shift_subspace
        pcs = self.shift_basis[:m].double()
        if float(pcs.abs().sum()) == 0.0:
            raise ValueError("set_spread_basis needs the shift subspace first: call set_subspace")
        a = age_directions.double().reshape(-1, self.cfg.z_dim)
        q, r = torch.linalg.qr((a @ pcs.T).T)  # (m, K): the age directions' coordinates in the subspace
        q = q[:, r.diagonal().abs() > 1e-9 * float(r.abs().max().clamp_min(1e-30))]
        keep = torch.eye(m, dtype=torch.float64) - q @ q.T
        self.spread_basis.copy_((keep @ pcs).to(self.spread_basis.dtype))
        return m - q.shape[1]

    @torch.no_grad()
    def set_held_directions(self, codes: torch.Tensor, male: torch.Tensor) -> tuple[int, int]:
        """Fit ``held_directions`` (needs ``hold_gender``): the unit difference of the mean code of men and
        of women among codes (N, S) of real faces, ``male`` (N,) bool. Returns (men, women) counted."""
        if not self.cfg.hold_gender:
            raise ValueError("set_held_directions needs PadaConfig.hold_gender=true")
        male = male.reshape(-1).bool()
        if codes.ndim != 2 or codes.shape != (male.shape[0], self.cfg.z_dim):
            raise ValueError(f"set_held_directions needs codes (N, {self.cfg.z_dim}) and N labels, got "
                             f"{tuple(codes.shape)} and {male.shape[0]}")
        men, women = int(male.sum()), int((~male).sum())
        if men == 0 or women == 0:
            raise ValueError(f"the gender direction needs codes of men and of women (got {men} men, "
                             f"{women} women)")
        x = codes.double()
        d = x[male].mean(0) - x[~male].mean(0)
        if float(d.norm()) <= 1e-12:
            raise ValueError("the mean codes of men and women are equal: no gender direction")
        self.held_directions.copy_((d / d.norm())[None].to(self.held_directions.dtype))
        return men, women

    def hold(self, z_src: torch.Tensor, z_age: torch.Tensor) -> torch.Tensor:
        """z_age (B, S) with the shift's parts along ``held_directions`` taken out (z_src (B or 1, S))."""
        if not hasattr(self, "held_directions"):
            raise ValueError("this PADA model holds no directions (built without hold_gender)")
        rows = self.held_directions.to(z_age.dtype)
        if float(rows.square().sum()) < 0.5:
            raise ValueError("the held directions are not fitted: call set_held_directions")
        d = z_age - z_src
        return z_src + d - (d @ rows.T) @ rows

    def spread(self, z_src: torch.Tensor, eta: torch.Tensor, scale: float | None = None,
               shift: torch.Tensor | None = None, cap: float | None = None) -> torch.Tensor:
        """The draw-spread offset (B, S) for draws with noise ``eta`` (B, D) of codes ``z_src`` (B or 1, S):
        ``scale`` (default ``cfg.draw_spread``) · ‖z_src‖ · c·spread_basis / √rank with c = R·η, R (m, D) a
        fixed seeded matrix with orthonormal rows, so c ~ N(0, I) and the offset's mean length is about
        scale·‖z_src‖. Zero for η = 0 (the PAE mean) and for scale 0. ``shift`` (B, S): each draw's own edit
        z_age − z_src; the offset's part along it is taken out, so a draw neither undoes nor extends it, and
        with ``cap`` > 0 (default ``cfg.spread_cap``) the offset is shortened to at most ``cap`` × the edit's
        length, so a draw asked for little change gets little spread (:func:`cap_spread`)."""
        scale = self.cfg.draw_spread if scale is None else float(scale)
        cap = self.cfg.spread_cap if cap is None else float(cap)
        if cap < 0:
            raise ValueError(f"spread cap must be >= 0, got {cap}")
        if scale < 0:
            raise ValueError(f"draw spread must be >= 0, got {scale}")
        if scale == 0:
            return torch.zeros(eta.shape[0], self.cfg.z_dim, dtype=z_src.dtype, device=z_src.device)
        if not hasattr(self, "spread_basis"):
            raise ValueError("this PADA model has no draw-spread basis (built without draw_spread or "
                             "spread_basis)")
        basis = self.spread_basis.to(z_src.dtype)
        rank = float(basis.square().sum())
        if rank < 0.5:
            raise ValueError("the draw-spread basis is not fitted: call set_spread_basis")
        proj = _spread_projection(eta.shape[1], basis.shape[0]).to(eta.device, z_src.dtype)
        c = eta.to(z_src.dtype) @ proj.T
        off = scale * z_src.norm(dim=-1, keepdim=True) * (c @ basis) / rank ** 0.5
        if shift is not None:
            unit = shift / shift.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            off = off - (off * unit).sum(-1, keepdim=True) * unit
            if cap > 0:
                off = cap_spread(off, shift, cap)
        return off

    def add_spread(self, z_src: torch.Tensor, z_age: torch.Tensor, eta: torch.Tensor,
                   scale: float | None = None, cap: float | None = None) -> torch.Tensor:
        """z_age (B, S) plus each draw's spread offset (:meth:`spread`), its own edit z_age − z_src taken
        out of the offset and, with ``cap``, bounding it (the edit's direction and length are held fixed,
        no gradient through them). What inference renders and what ``LossConfig.train_spread`` shows the
        losses."""
        return z_age + self.spread(z_src, eta, scale, shift=(z_age - z_src).detach(), cap=cap)

    def source_coords(self, z_src: torch.Tensor) -> torch.Tensor:
        """c (B, m): z_src's coordinates in the shift subspace, standardised by the training codes'."""
        basis = self.shift_basis[: self.cfg.shift_subspace].to(z_src.dtype)  # the principal directions
        return (z_src @ basis.T - self.source_mean.to(z_src.dtype)) / self.source_std.to(z_src.dtype)

    def delta(self, e_age: torch.Tensor, eta: torch.Tensor | None = None,
              z_src: torch.Tensor | None = None) -> torch.Tensor:
        """Δz = MLP(e_age) (+ draw(η) with a draw head; the first layer also reads z_src with a source
        input): (B, D) → (B, S)."""
        if self.cfg.source_input:
            if z_src is None:
                raise ValueError("a modulation with source_input needs z_src")
            h = self.mlp[0](e_age) + self.source(self.source_coords(z_src))
            dz = self.mlp[1:](h)
        else:
            dz = self.mlp(e_age)
        if eta is not None and self.cfg.draw_hidden:
            dz = dz + self.cfg.draw_gain * self.draw(eta.to(dz.dtype))
        return dz

    def forward(self, z_src: torch.Tensor, e_age: torch.Tensor,
                eta: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 6. z_src (B, S) and e_age (B, D) → z_age (B, S). A single z_src (1, S) broadcasts over B.
        ``eta`` (B, D): the PAE draw's noise, read only by a draw head (None = the PAE mean)."""
        mu, sd = self.statistics(z_src)
        z_hat = (z_src - mu) / sd
        dz = self.delta(e_age.to(z_src.dtype), eta, z_src)
        z_age = (sd + self.gamma(dz)) * z_hat + (mu + self.beta(dz))
        if self.cfg.shift_subspace:
            basis = self.shift_basis.to(z_age.dtype)
            z_age = z_src + ((z_age - z_src) @ basis.T) @ basis
        return bound_shift(z_src, z_age, self.cfg.max_shift)


@functools.lru_cache(maxsize=8)
def _spread_projection(d: int, m: int, seed: int = 4111) -> torch.Tensor:
    """R (m, D): m orthonormal rows drawn from a fixed seed, the same in every run (the draw spread's map
    from a PAE draw's noise η (D,) to the subspace coordinates c = R·η ~ N(0, I_m))."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, m, generator=g, dtype=torch.float64))
    return q.T.float()


def bound_shift(z_src: torch.Tensor, z_age: torch.Tensor, max_shift: float) -> torch.Tensor:
    """Smoothly limit the relative shift r = ‖z_age − z_src‖ / ‖z_src‖ to ``max_shift`` (0 = no limit).

    The shift is rescaled to length ‖z_src‖·m·tanh(r/m): unchanged for small r, never beyond m·‖z_src‖,
    differentiable everywhere (PadaConfig.max_shift).
    """
    if max_shift <= 0:
        return z_age
    d = z_age - z_src
    ref = z_src.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    r = d.norm(dim=-1, keepdim=True) / ref
    scale = max_shift * torch.tanh(r / max_shift) / r.clamp_min(1e-8)
    return z_src + d * torch.where(r > 1e-8, scale, torch.ones_like(scale))


@torch.no_grad()
def compute_latent_stats(encode: Callable[[torch.Tensor], torch.Tensor], batches: Iterable,
                         image_key: str = "source", max_batches: int | None = None,
                         device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (S,) of ``encode(images)`` over a data loader (float64 accumulation).

    ``batches`` yields image tensors (B, 3, H, W) in [-1, 1] or dicts holding them under ``image_key``.
    """
    n = 0
    s1 = s2 = None
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        x = batch[image_key] if isinstance(batch, dict) else batch
        if device is not None:
            x = x.to(device)
        z = encode(x).double()
        s1 = z.sum(0) if s1 is None else s1 + z.sum(0)
        s2 = (z * z).sum(0) if s2 is None else s2 + (z * z).sum(0)
        n += z.shape[0]
    if n < 2:
        raise ValueError("compute_latent_stats needs at least two images")
    mean = s1 / n
    var = (s2 / n - mean * mean).clamp_min(0) * n / (n - 1)
    return mean.float().cpu(), var.sqrt().float().cpu()
