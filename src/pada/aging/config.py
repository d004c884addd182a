"""Configuration dataclasses of PADA (paper §3.2–§3.3 and §4 "Implementation Details").

Two small, typed configs:

* :class:`PadaConfig` describes the trainable networks (the CLIP-guided age encoder ``E_age`` of §3.2.1
  and the adaptive modulation of §3.2.2) and the names of the frozen models they were trained with. It is
  stored in the metadata of every exported model, so a model file rebuilds itself.
* :class:`LossConfig` holds the loss weights λ1..λ5 of Eq. 12, the triplet margin of Eq. 8 and the switches
  used for the ablations of Table 3.

Unknown keys are rejected loudly by :func:`from_dict`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from pada.aging.gain import parse_shift_gain, young_cap_value
from pada.aging.pattern import pattern_value
from pada.errors import PadaError

LOSS_NAMES = ("L_age", "L_clip", "L_tKL", "L_id", "L_norm", "L_rec")
STATS_MODES = ("instance", "dataset")


@dataclass
class PadaConfig:
    """Shapes and choices of ``E_age`` (PAE, Eq. 5) and the adaptive modulation (Eq. 6).

    ``e_dim``: dimension D of the vision-language (CLIP) space; ``z_dim``: dimension S of the DiffAE
    semantic code ``z_sem``. ``sigma_param``: how the σ head's output becomes a positive σ: ``"softplus"``
    (σ = softplus(h) + 1e-4, default, gradients stay bounded) or ``"exp"`` (σ = exp(log σ)).
    ``sigma_init``: σ at initialisation (set through the head's bias). ``eps``: the text-driven sampling
    intensity ε of §3.2.1 (paper: 1e-3). ``normalize_e_age``: L2-normalise every sampled e_age back onto the
    unit sphere of the CLIP space before the modulation (see docs/pada_method.md).
    ``stats``: which "channel-wise statistics" of z_src Eq. 6 uses: ``"instance"`` (mean/std over the S
    entries of each z, AdaIN-style; default) or ``"dataset"`` (per-channel mean/std over a data set, stored
    as buffers, see :func:`pada.aging.modulation.compute_latent_stats`). ``init_gain``: scale of the random
    initial weights of the last layer of γ and β; 0 makes the modulation exactly the identity at
    initialisation (z_age = z_src), a small value keeps it close while letting gradients reach every layer
    from the first step.
    ``max_shift``: pada-only bound on how far the modulation may move a code, relative to its norm:
    the shift d = z_age − z_src is smoothly saturated to ‖d‖ ≤ max_shift·‖z_src‖ (``d·m·tanh(r/m)/r`` with
    r = ‖d‖/‖z_src‖, m = max_shift), in training and at inference, so z_age stays among real codes where
    the decoder draws faces (docs/pada_method.md, "Guards against critic-fooling texture"). 0 = no bound
    (paper).
    ``shift_subspace``: pada-only; m > 0 projects the shift d onto the m leading principal directions of the
    frozen DiffAE's codes of the training faces (buffer ``modulation.shift_basis``, fitted once when
    training starts), before the bound: z_age may then only move the ways real faces differ, not along
    directions no face varies in, where a critic can be fooled by a code the decoder renders as a
    blotch. 0 = no projection (paper).
    ``shift_age_direction``: pada-only; True adds one row to the shift basis: the frozen DiffAE's linear age
    direction (the one L_dir aims along, fitted on the training codes and age labels when training starts),
    made orthogonal to the m principal directions. Measured on ``diffae-demo64``: the 16 leading
    directions hold 91 % of that direction's energy, yet walking only their part of it renders far less age
    (docs/pada_history.md, v7): the missing 9 % lies in directions real faces vary little in overall but
    that change with age. Needs ``shift_subspace`` > 0. False = the principal directions only.
    ``draw_hidden``: pada-only; h > 0 gives the modulation a second input, the PAE draw's standard-normal
    noise η (B, D) (e_age = μ + σ⊙η, or e_txt + ε·η), through a small head Linear(D, h) → LeakyReLU →
    Linear(h, S), no biases, whose output is added to Δz (last layer zero at initialisation, so a fresh
    head changes nothing; η = 0, the PAE mean, adds nothing). Without it two draws reach the modulation
    only as e_age's that differ by O(σ) or O(ε) (ε = 1e-3 in the paper), which it learns to ignore; with it
    they differ by O(1). 0 = Δz from e_age alone (paper).
    ``draw_gain``: pada-only; a fixed factor on the draw head's output. With Adam the head's output then moves
    ``draw_gain`` times faster per step (the optimiser's steps do not scale with the gradient), so a short
    run can learn draws that differ as much as L_div / ``dir_spread`` ask (at 1, after 400 steps v7's draws
    differed by 0.02–0.03 ‖z_src‖ where L_div asked for 0.16). 1 = the plain head.
    ``source_input``: pada-only; True lets Δz depend on the source face: the modulation MLP's first layer
    also reads z_src's coordinates in the shift subspace (standardised with the training codes' mean and
    std, buffers ``modulation.source_mean`` / ``source_std``; needs ``shift_subspace`` > 0), through a
    bias-free Linear that starts at zero (a fresh model behaves as without it). Eq. 6 alone gives nearly the
    same shift to every face for one target (its γ acts per channel), so a 20-year-old and a 70-year-old
    asked for "eighties" move alike; with the source input the shift can depend on how old the face
    already looks. False = Δz from e_age alone (paper).
    ``draw_spread``: pada-only, a sampling choice applied at inference (``AgingPipeline``; the training
    losses see it only with ``LossConfig.train_spread``): s > 0 moves each PAE draw's z_age further by
    about s·‖z_src‖, in a direction read off the draw's noise η through a fixed, seeded projection onto
    the shift subspace's principal directions with the age direction and the age read-out of the training
    codes taken out (buffer ``modulation.spread_basis``, fitted with the subspace), and with the draw's own
    edit taken out. So the N results of one request differ in more than how far they age; the PAE mean
    (η = 0) moves nothing. The learned draw head alone kept v7's draws within 0.02–0.03 ‖z_src‖ (the
    identity and age losses pull every draw back to one shift). 0 = off (paper); ``--draw-spread``
    overrides it per request.
    ``draw_pattern``: pada-only, a sampling choice applied at inference (``AgingPipeline``; training never
    sees it): τ > 0 scales the part of each PAE draw's edit that changes the hair by 1 + t, t ~ N(0, τ²)
    clipped to [−1, 1] and read off the draw's noise η (:mod:`pada.aging.pattern`), so the N results differ
    in how far the hair ages, by an amount that grows with the edit; the face's part is left alone. Needs a
    DiffAE with an eigenface coarse code (``coarse_pca``). Applied after ``draw_spread``, before the contrast
    bound. 0 = off (paper); ``pada age --draw-pattern`` overrides it per request.
    ``spread_basis``: pada-only; True makes the model carry that basis even with ``draw_spread`` = 0, so a
    request can still ask for a spread (implied by ``draw_spread`` > 0).
    ``shift_gain``: pada-only, applied at inference (``AgingPipeline``; training never sees it): a
    piecewise-linear gain on the shift by target age, ``"AGE:GAIN,..."`` (:mod:`pada.aging.gain`): the
    pipeline renders z_src + g(a)·(z_age − z_src), a = the target age read off the PAE embedding (the
    nearest age group's text prototype). "" = off (paper); ``--shift-gain`` overrides it per request.
    ``calibrate``: pada-only, applied at inference (``AgingPipeline.calibrate``; training never sees it):
    True picks each request's edit length for the face first: the PAE-mean edit rendered at 0.5–1.5× its
    length, the one whose age read by the VL model is nearest the target (lengthening charged 8 years per
    unit), then every output's edit is scaled by it (:mod:`pada.aging.gain`). False = the modulation's edit
    as is (paper); ``pada age --calibrate`` / ``--no-calibrate`` override it per request.
    ``tone_guard``: pada-only, applied at inference (:class:`pada.aging.guard.ToneGuard`; training never
    sees it): m > 0 keeps the smoothed brightness of the skin region within m (0-1 scale) of the input
    face's at every sampler step, against darkened eye sockets and washed-out or blotched faces. 0 = off
    (paper); ``pada age --tone-guard`` overrides it per request.
    ``background_guard``: pada-only, applied at inference (the same :class:`~pada.aging.guard.ToneGuard`;
    training never sees it): m > 0 keeps the smoothed colour of the crop outside the head (backdrop,
    shoulders, clothes) within m (0-1 scale) of the input's at every sampler step: the age critics reward
    a whitened or darkened backdrop at old targets. 0 = off (paper); ``pada age --background-guard``
    overrides it per request.
    ``saturation_guard``: pada-only, applied at inference (the same :class:`~pada.aging.guard.ToneGuard`;
    training never sees it): m > 0 keeps the smoothed colour strength (chroma length) of the head within
    m (0-1 scale) above the input's at every sampler step, so colour can fade (greying hair) but not
    intensify: the age critics reward orange hair and a warmed face at old targets. 0 = off (paper);
    ``pada age --saturation-guard`` overrides it per request.
    ``patch_guard``: pada-only, applied at inference by the calibration (needs ``calibrate``; training never
    sees it): g > 0 leaves out edit lengths whose render's skin colour changed unevenly, a
    :func:`~pada.evaluation.scores.patch_change` above g (a patchwork of pale, red or grey regions, which the
    age critic reads as old and a person as broken). 0 = off; ``pada age --patch-guard`` overrides it per
    request.
    ``blotch_guard``: pada-only, applied at inference after the decode (:func:`pada.aging.backoff.back_off`;
    training never sees it): b > 0 renders every output whose skin brightness changed unevenly (a
    :func:`~pada.evaluation.scores.blotch` above b: pale blobs, grey smears, hollow eye sockets) again with
    the edit its request's draws share shortened to 0.75, then 0.5 of its length (each draw keeping its own
    offset), keeping the first render within b (else the least blotched). 0 = off (paper; 0.06 in the
    shipped ``pada-demo64`` since v7h); ``pada age --blotch-guard`` overrides it per request.
    ``structure_guard``: pada-only, the same back-off for every output whose skin lost more than s of its
    local structure against the input (:func:`~pada.evaluation.scores.structure_change` above s: a pale or
    grey mask over the skin, smeared eyes and mouth, mottled texture), trying 0.25 of the shared edit after
    0.5 and then the whole edit (the draw's own offset too) at 0.5 and 0.25; with ``blotch_guard`` too, an
    output must pass both. 0 = off (paper; 0.13 in the shipped ``pada-demo64`` since v7k);
    ``pada age --structure-guard`` overrides it per request.
    ``contrast_bound``: pada-only, applied at inference to every code that is rendered (the outputs, the
    calibration's candidate lengths, the lifespan's anchors; :func:`pada.aging.backoff.bound_contrast`;
    training sees it only with ``LossConfig.train_bound``): r > 0 shortens each edit z − z_src so that the
    change it makes to the DiffAE's coarse image, ‖coarse(z) − coarse(z_src)‖, is at most r × the input's
    own coarse-image contrast ‖coarse(z_src) − its mean‖ (needs a DiffAE with a coarse image path).
    0 = off (paper); 0.5 in the shipped ``pada-demo64`` since v7i; ``pada age --contrast-bound``
    overrides it per request.
    ``hold_gender``: pada-only, applied at inference (``AgingPipeline.modulate``; training sees it only with
    ``LossConfig.train_hold``): True takes the part along the gender direction out of every shift
    z_age − z_src (the unit difference of the training codes' mean man and mean woman, fitted with the
    other code priors when training starts and stored as the modulation's ``held_directions``). In a data
    set where the old are mostly men and the young mostly women (the demo set: 69 % of the faces over 50
    are men, 79 % of those under 26 women), the age direction carries gender, and aging a woman toward
    eighty makes her a man. False = off (paper); ``pada age --no-hold-gender`` turns it off per request.
    ``space_lifespan``: pada-only, read by the lifespan sweep alone (``AgingPipeline.lifespan``; neither
    ``age`` nor training reads it): True shortens the sweep's anchors so that, on each side of the input's
    own age (read by the VL model), each changes the face in proportion to its distance from that age and
    no more than the next anchor out (:func:`pada.aging.backoff.space_anchors`): the sweep then ages step
    by step instead of rendering "sixties" and "eighties" alike at the contrast bound. Its "sixties" frame
    is then milder than ``pada age --text`` "sixties". False = off (paper); True in the shipped
    ``pada-demo64`` since v7j; ``pada age --lifespan --no-space-lifespan`` turns it off per request.
    ``low_noise``: pada-only, read by low-level diversity alone (``AgingPipeline.age(low_diversity=True)``,
    ``pada age --low-diversity``; training never reads it): each output starts from
    √(1 − s²)·x_T + s·ε, the input's inverted start noise x_T mixed with a fresh draw ε of its own, so s
    sets how much of the input's layout and fine detail is drawn anew. 1 = fresh noise alone (default, as
    up to v7k: the face is drawn anew, which on a DiffAE whose z carries only part of the face is often
    someone else); 0.3 in the shipped ``pada-demo64`` since v7l; ``pada age --low-noise`` overrides it per
    request.
    ``spread_cap``: pada-only, a sampling choice applied with ``draw_spread`` (at inference, and for the
    losses only where they see the spread, ``LossConfig.train_spread``): c > 0 shortens each draw's spread
    offset to at most c × the length of the draw's own edit (:func:`pada.aging.modulation.cap_spread`), so
    results asked for little change differ little and those asked for much differ as before. 0 = off
    (default, as up to v7l: the offset is ``draw_spread`` · ‖z_src‖ whatever the edit); 0.5 in the shipped
    ``pada-demo64`` since v7m; ``pada age --spread-cap`` overrides it per request.
    ``young_cap``: pada-only, applied at inference by the calibration (needs ``calibrate``; training never
    sees it): c > 0 gives a request whose target is younger than the face (as the VL model reads it) the
    candidate lengths 0.5c, 0.75c and c instead of 0.5–1.5× (:func:`pada.aging.gain.calibration_factors`):
    the young edits of the demo DiffAE darken the eyes and brows step by step, which the VL read-out takes
    for youth, so uncapped the calibration picks the long, broken lengths. 0 = off (default, as up to v7m);
    0.5 in the shipped ``pada-demo64`` since v7n; ``pada age --young-cap`` overrides it per request. The
    lifespan sweep does not read it (its young frames would read closer together): ``pada age --lifespan
    --young-cap C`` caps its anchors when asked.
    """

    e_dim: int = 512
    z_dim: int = 512
    enc_hidden: int = 512
    enc_layers: int = 2
    sigma_param: str = "softplus"
    sigma_init: float = 0.1
    eps: float = 1e-3
    normalize_e_age: bool = True
    mod_hidden: int = 512
    mod_layers: int = 2
    stats: str = "instance"
    stats_eps: float = 1e-5
    init_gain: float = 1e-3
    max_shift: float = 0.0
    shift_subspace: int = 0
    shift_age_direction: bool = False
    draw_hidden: int = 0
    draw_gain: float = 1.0
    source_input: bool = False
    draw_spread: float = 0.0
    draw_pattern: float = 0.0
    spread_basis: bool = False
    shift_gain: str = ""
    calibrate: bool = False
    tone_guard: float = 0.0
    background_guard: float = 0.0
    saturation_guard: float = 0.0
    patch_guard: float = 0.0
    blotch_guard: float = 0.0
    structure_guard: float = 0.0
    contrast_bound: float = 0.0
    hold_gender: bool = False
    space_lifespan: bool = False
    low_noise: float = 1.0
    spread_cap: float = 0.0
    young_cap: float = 0.0
    # Names (or paths) of the frozen models this PADA was trained with; informative + used by loaders.
    diffae: str = ""
    diffae_preset: str = ""  # network preset of an official DiffAE checkpoint (it carries no config)
    vl: str = ""
    age_critic: str = ""
    id_critic: str = ""

    def __post_init__(self) -> None:
        if self.sigma_param not in ("softplus", "exp"):
            raise PadaError(f"sigma_param must be 'softplus' or 'exp', got {self.sigma_param!r}")
        if self.stats not in STATS_MODES:
            raise PadaError(f"stats must be one of {STATS_MODES}, got {self.stats!r}")
        if min(self.e_dim, self.z_dim, self.enc_hidden, self.mod_hidden) <= 0:
            raise PadaError("PadaConfig dimensions must be positive")
        if self.enc_layers < 1 or self.mod_layers < 1:
            raise PadaError("PadaConfig needs at least one hidden layer in E_age and in the modulation MLP")
        if self.sigma_init <= 0 or self.eps < 0:
            raise PadaError("sigma_init must be > 0 and eps >= 0")
        if not 0.0 <= self.max_shift < 100.0:
            raise PadaError(f"max_shift must be in [0, 100), got {self.max_shift}")
        if not 0 <= self.shift_subspace <= self.z_dim:
            raise PadaError(f"shift_subspace must be in [0, z_dim={self.z_dim}], got {self.shift_subspace}")
        if not 0 <= self.draw_hidden <= 8192:
            raise PadaError(f"draw_hidden must be in [0, 8192], got {self.draw_hidden}")
        if not 0.0 < self.draw_gain <= 1000.0:
            raise PadaError(f"draw_gain must be in (0, 1000], got {self.draw_gain}")
        if self.shift_age_direction and not self.shift_subspace:
            raise PadaError("shift_age_direction=true adds a row to the shift subspace: "
                            "needs shift_subspace > 0")
        if not 0.0 <= self.tone_guard < 1.0:
            raise PadaError(f"tone_guard must be in [0, 1), got {self.tone_guard}")
        if not 0.0 <= self.background_guard < 1.0:
            raise PadaError(f"background_guard must be in [0, 1), got {self.background_guard}")
        if not 0.0 <= self.saturation_guard < 1.0:
            raise PadaError(f"saturation_guard must be in [0, 1), got {self.saturation_guard}")
        if not 0.0 <= self.patch_guard < 1.0:
            raise PadaError(f"patch_guard must be in [0, 1), got {self.patch_guard}")
        if not 0.0 <= self.blotch_guard < 1.0:
            raise PadaError(f"blotch_guard must be in [0, 1), got {self.blotch_guard}")
        if not 0.0 <= self.structure_guard < 1.0:
            raise PadaError(f"structure_guard must be in [0, 1), got {self.structure_guard}")
        if not 0.0 <= self.contrast_bound <= 10.0:
            raise PadaError(f"contrast_bound must be in [0, 10], got {self.contrast_bound}")
        if not 0.0 <= self.draw_spread <= 1.0:
            raise PadaError(f"draw_spread must be in [0, 1], got {self.draw_spread}")
        if not 0.0 < self.low_noise <= 1.0:
            raise PadaError(f"low_noise must be in (0, 1], got {self.low_noise}")
        if not 0.0 <= self.spread_cap <= 10.0:
            raise PadaError(f"spread_cap must be in [0, 10], got {self.spread_cap}")
        pattern_value(self.draw_pattern, "draw_pattern")  # PadaError naming the bad value
        young_cap_value(self.young_cap)
        if self.has_spread_basis and self.shift_subspace < 3:
            raise PadaError("draw_spread / spread_basis spread the draws over the shift subspace without its "
                            "age directions: needs shift_subspace >= 3")
        parse_shift_gain(self.shift_gain)  # PadaError naming the bad knot
        if self.source_input and not self.shift_subspace:
            raise PadaError("source_input=true reads z_src in the shift subspace: needs shift_subspace > 0")

    @property
    def has_spread_basis(self) -> bool:
        """Whether the modulation carries ``spread_basis`` (``spread_basis`` or ``draw_spread`` > 0)."""
        return self.spread_basis or self.draw_spread > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PadaConfig:
        return from_dict(cls, d)


@dataclass
class LossConfig:
    """Weights and switches of the PADA objective (Eq. 7–12).

    Total (Eq. 12): ``L = w_age·L_age + λ1·L_clip + λ2·L_tKL + λ3·L_id + λ4·L_norm + λ5·L_rec`` with the
    paper's λ = (0.6, 0.01, 0.2, 0.01, 0.1) and w_age = 1. ``disabled`` lists loss names (see
    :data:`LOSS_NAMES`) that are switched off (Table 3 ablations): they are neither computed nor added.

    Choices the paper leaves open (documented in docs/pada_method.md):
    ``kl_sigma_reduction``: Eq. 7 sums the σ terms over the D channels (``"sum"``); the default ``"mean"``
    divides by D (with the sum, σ is driven to 1 in every channel, where ‖σ⊙η‖ ≈ √D ≫ ‖μ‖ = 1).
    ``norm_reduction``: Eq. 10 is ‖z_age‖² (``"sum"``); default ``"mean"`` divides by S so the term does
    not scale with the latent size. ``rec_reduction``: Eq. 11 as a per-pixel mean (``"mean"``,
    default) or a per-image sum. ``ref_features``: f_ref of Eq. 8 from x̂0 of the reference (``"x0hat"``,
    paper; one extra frozen UNet pass) or from the clean reference image (``"real"``).
    ``t_min``/``t_max``: range of the random timestep of the losses (original steps, max exclusive).
    ``clip_x0``: clamp x̂0 (Eq. 3) to [-1, 1] before the critics.

    pada additions against critic-fooling texture (docs/pada_method.md; defaults = the paper):
    ``norm_target``: what L_norm penalises: ``"z_age"`` (Eq. 10) or ``"shift"``, the relative move
    ‖z_age − z_src‖² / ‖z_src‖² (keeps z_age near the real code it came from instead of near 0).
    ``augment``: strength in [0, 1] of random, differentiable views of every x̂0 the critics score
    (down-and-up resizing, blur, a small shift, noise; the same view for the source, target and reference of
    a row), so a pattern that fools one exact pixel grid earns nothing. 0 = off.
    ``skip_same_group``: no L_age / L_clip on rows whose target age group is the source's own (the triplet
    there asks for a change without an age change).
    ``lambda_div`` / ``div_target``: mode-seeking diversity term: a second PAE draw per row gives z_age';
    L_div = mean(relu(div_target − ‖z_age − z_age'‖ / ‖z_src‖)), so different draws must give different codes.
    ``div_across``: L_div measures only the part of z_age − z_age' orthogonal to the age direction w (needs
    ``lambda_dir`` > 0), so the draws are asked to differ in something other than how far they age.
    ``train_text_eps``: sampling intensity ε of text rows during training (None: the model's ``eps``).
    ``lambda_dir``: weight of L_dir, a data prior on the shift: L_dir = ‖(z_age − z_src) − Δa·w‖² / ‖z_src‖²
    with w the frozen DiffAE's linear age direction per year (:class:`pada.aging.baseline.LinearAgeDirection`,
    fitted on the training faces' codes and ages when training starts) and Δa the target group's centre
    minus the source group's. It tells the modulation from the first step *which way* real faces age in z;
    the critics and the PAE then shape and spread the shift around it. 0 = off (paper). ``dir_gain``
    multiplies w: a ridge/regression direction fitted on noisy age labels is shorter than the real change
    (attenuation), and the demo DiffAE renders a visible age change only at about twice its length.
    ``dir_mode``: what L_dir holds. ``"full"``: the whole shift (every PAE draw of a row must give the same
    shift, which leaves L_div nothing to move); ``"along"``: only its length along w,
    ((z_age − z_src)·ŵ − Δa·g‖w‖)² / ‖z_src‖², so the amount of aging is held while the part of the shift
    orthogonal to w is left to the critics and to L_div (visible pluralism). ``"mean"``: the whole shift of
    the row's PAE *mean* (η = 0) as in ``"full"``, and of each draw only how far its deviation from that mean
    goes along w, ((z_age − z_age(η=0))·ŵ − (Δa_draw − Δa)·g‖w‖)² / ‖z_src‖²: the typical edit stays on the
    data prior while the draws may differ across w (and L_div can push them apart there).
    ``dir_target``: the years Δa of L_dir. ``"group"``: target group centre − source group centre;
    ``"label"``: from the source's age label to the reference's label (image rows) or to the target group's
    centre (text rows), so references of one group but different ages ask for different shifts and the
    modulation must read the reference's own age from its embedding.
    ``dir_spread``: κ in [0, 1). With κ > 0 each PAE draw asks L_dir for its own amount of aging,
    Δa·(1 + κ·r) with r in [-1, 1] read off one fixed direction of the draw's noise η, so different
    samples of one request age by visibly different amounts (people age at different rates) and the
    modulation has to respond to the sample, not only to its mean (pluralism; 0 = every draw alike).
    ``train_spread``: the critics' losses (L_age, L_clip, L_id, L_rec) and L_div see each draw with the
    model's draw spread added (``PadaConfig.draw_spread``, as inference renders it), so the learned edit
    adapts to the spread draws; L_dir and L_norm still hold the modulation's own shift. Needs
    ``draw_spread`` > 0. False = the losses see the modulation's output only.
    ``lambda_tone`` / ``tone_margin``: weight of L_tone, which holds the shading of the skin: over the skin
    region of an aligned face (:data:`pada.evaluation.scores.SKIN_ELLIPSE`) the smoothed luma of x̂0_tar may
    move away from x̂0_src's by ``tone_margin`` (0-1 scale) freely, beyond that quadratically
    (:func:`pada.aging.losses.tone_loss`). The age critics reward darkened eye sockets (young targets) and a
    washed-out face (old ones); a person reads both as a broken image. 0 = off.
    ``lambda_blotch`` / ``blotch_margin``: weight of L_blotch, which asks the skin's brightness to change
    evenly: the spread over the skin region of x̂0_tar's smoothed-luma change against x̂0_src (the
    evaluation's ``blotch`` score) is free up to ``blotch_margin``, beyond that quadratic
    (:func:`pada.aging.losses.blotch_loss`). Unlike L_tone it lets the whole face lighten or darken; it
    costs the pale forehead blob and the dark eye sockets the inference back-off catches. 0 = off.
    ``train_hold``: training sees what ``PadaConfig.hold_gender`` renders: every loss gets each edit with its
    part along the gender direction taken out, and the linear age direction (of L_dir, of
    ``shift_age_direction`` and of the spread basis) is fitted with gender as a covariate — the change of z
    per year among faces of one gender, not the age-gender mix of the data. Needs ``hold_gender``.
    False = training as before (the age direction fitted on age alone).
    ``train_guard``: training sees what the model's guards render (``PadaConfig.tone_guard`` and
    ``background_guard``, :class:`pada.aging.guard.ToneGuard`): every loss gets x̂0_tar with the skin's
    smoothed luma and the smoothed colour outside the head held near x̂0_src's (the same row and timestep,
    unedited), so an edit earns nothing from re-toning the skin or the backdrop, and the critics' gradients
    reach only what the guards let through. Needs a guard > 0. False = the losses see x̂0_tar as rendered.
    ``train_bound``: training sees the contrast bound (``PadaConfig.contrast_bound``,
    :func:`pada.aging.backoff.bound_contrast`): every loss but L_dir and L_norm gets each draw's code (after
    the spread, with ``train_spread``) with its edit shortened so that its change to the DiffAE's coarse
    image is at most this many times the source's coarse-image contrast. The scale factor stays in the
    graph, so where the bound holds an edit the critics can turn it (toward directions that age more per
    unit of coarse change) but not lengthen it; L_dir and L_norm still hold the modulation's own shift.
    Needs a DiffAE with a coarse image path. 0 = off (the losses see the unbounded edit).
    """

    w_age: float = 1.0
    lambda_clip: float = 0.6
    lambda_tkl: float = 0.01
    lambda_id: float = 0.2
    lambda_norm: float = 0.01
    lambda_rec: float = 0.1
    margin: float = 0.15
    disabled: tuple[str, ...] = field(default_factory=tuple)
    kl_sigma_reduction: str = "mean"
    norm_reduction: str = "mean"
    rec_reduction: str = "mean"
    ref_features: str = "x0hat"
    t_min: int = 0
    t_max: int = 1000
    clip_x0: bool = True
    norm_target: str = "z_age"
    augment: float = 0.0
    skip_same_group: bool = False
    lambda_div: float = 0.0
    div_target: float = 0.1
    div_across: bool = False
    train_text_eps: float | None = None
    lambda_dir: float = 0.0
    dir_gain: float = 1.0
    dir_mode: str = "full"
    dir_target: str = "group"
    dir_spread: float = 0.0
    train_spread: bool = False
    lambda_tone: float = 0.0
    tone_margin: float = 0.08
    lambda_blotch: float = 0.0
    blotch_margin: float = 0.04
    train_hold: bool = False
    train_guard: bool = False
    train_bound: float = 0.0

    def __post_init__(self) -> None:
        self.disabled = tuple(self.disabled)
        if self.norm_target not in ("z_age", "shift"):
            raise PadaError(f"norm_target must be 'z_age' or 'shift', got {self.norm_target!r}")
        if not 0.0 <= self.augment <= 1.0:
            raise PadaError(f"augment must be in [0, 1], got {self.augment}")
        if self.lambda_div < 0 or self.div_target < 0:
            raise PadaError("lambda_div and div_target must be >= 0")
        if self.div_across and self.lambda_dir <= 0:
            raise PadaError("div_across=true needs lambda_dir > 0 (the age direction L_dir fits)")
        if self.lambda_tone < 0 or not 0.0 <= self.tone_margin < 1.0:
            raise PadaError(f"need lambda_tone >= 0 and tone_margin in [0, 1), got {self.lambda_tone}, "
                            f"{self.tone_margin}")
        if self.lambda_blotch < 0 or not 0.0 <= self.blotch_margin < 1.0:
            raise PadaError(f"need lambda_blotch >= 0 and blotch_margin in [0, 1), got {self.lambda_blotch}, "
                            f"{self.blotch_margin}")
        if self.lambda_dir < 0:
            raise PadaError(f"lambda_dir must be >= 0, got {self.lambda_dir}")
        if not 0.0 < self.dir_gain <= 10.0:
            raise PadaError(f"dir_gain must be in (0, 10], got {self.dir_gain}")
        if self.dir_mode not in ("full", "along", "mean"):
            raise PadaError(f"dir_mode must be 'full', 'along' or 'mean', got {self.dir_mode!r}")
        if not 0.0 <= self.dir_spread < 1.0:
            raise PadaError(f"dir_spread must be in [0, 1), got {self.dir_spread}")
        if self.dir_target not in ("group", "label"):
            raise PadaError(f"dir_target must be 'group' or 'label', got {self.dir_target!r}")
        if not 0.0 <= self.train_bound <= 10.0:  # also rejects NaN
            raise PadaError(f"train_bound must be in [0, 10], got {self.train_bound}")
        if self.train_text_eps is not None and not 0.0 <= self.train_text_eps <= 1.0:
            raise PadaError(f"train_text_eps must be in [0, 1], got {self.train_text_eps}")
        bad = [n for n in self.disabled if n not in LOSS_NAMES]
        if bad:
            raise PadaError(f"unknown loss name(s) {bad}; known: {', '.join(LOSS_NAMES)}")
        for name, value in (("kl_sigma_reduction", self.kl_sigma_reduction),
                            ("norm_reduction", self.norm_reduction), ("rec_reduction", self.rec_reduction)):
            if value not in ("sum", "mean"):
                raise PadaError(f"{name} must be 'sum' or 'mean', got {value!r}")
        if self.ref_features not in ("x0hat", "real"):
            raise PadaError(f"ref_features must be 'x0hat' or 'real', got {self.ref_features!r}")
        if not 0 <= self.t_min < self.t_max:
            raise PadaError(f"need 0 <= t_min < t_max, got {self.t_min}, {self.t_max}")

    def enabled(self, name: str) -> bool:
        return name not in self.disabled

    def weight(self, name: str) -> float:
        return {"L_age": self.w_age, "L_clip": self.lambda_clip, "L_tKL": self.lambda_tkl,
                "L_id": self.lambda_id, "L_norm": self.lambda_norm, "L_rec": self.lambda_rec,
                "L_div": self.lambda_div, "L_dir": self.lambda_dir, "L_tone": self.lambda_tone,
                "L_blotch": self.lambda_blotch}[name]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["disabled"] = list(self.disabled)
        return d


def from_dict(cls, d: dict[str, Any]):
    """Build dataclass ``cls`` from ``d``, rejecting unknown keys with a readable error."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise PadaError(f"{cls.__name__}: unknown keys {unknown}")
    return cls(**d)
