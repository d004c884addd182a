"""The evaluation protocol of PADA §4 for ``pada evaluate`` and ``benchmarks/bench_aging_quality.py``.

For every target age group (default twenties, forties, sixties, eighties) and every test face, the
pipeline ages the face with the paper's description of that group for the face's gender ("woman's face
in her sixties") into ``N`` outputs, and the runner measures

* **Age MAE** (Table 1): ``|age(output) − center(group)|`` with an age estimator chosen by the caller
  (paper: Face++, because DEX trained the model; offline default: ``dlib-age``);
* **ID** (Table 1): cosine similarity of identity embeddings of output and source (paper and default:
  SFace, because ArcFace trained the model);
* **FD** (Table 1's FID column, in another feature space by default): Fréchet distance between the
  outputs and the real images of that age group (see :mod:`pada.evaluation.fid`);
* **diversity** (§4.2, Fig. 7) with high-level diversity only (PAE samples, inverted x_T), low-level only
  (PAE mean, each output's own start: the inverted x_T mixed with fresh noise at the model's share,
  ``PadaConfig.low_noise``) and both: mean pairwise identity-feature distance, pixel RMS distance
  and the spread (std) of estimated ages among the N outputs of one face;
* **reconstruction** of the DiffAE stage: PSNR / SSIM of encode → stochastic encode → render;
* the **DiffAE linear baseline** (Fig. 6) at the strength whose mean ID is closest to PADA's (a small
  search), with the same metrics, so Age MAE is compared at equal identity preservation;
* **ablations** (Table 3): several PADA checkpoints side by side.

All randomness comes from ``seed`` (the pipeline derives one generator per output).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from pada.data.groups import AGE_GROUPS, AgeGroup, description, group_by_word
from pada.errors import PadaError
from pada.evaluation.diversity import mean_pairwise_distance
from pada.evaluation.fid import (
    CriticFeatures,
    GaussianStats,
    InceptionFeatures,
    features_of,
    frechet_distance,
)
from pada.evaluation.metrics import (
    Critic,
    bootstrap_interval,
    embed,
    paired_bootstrap,
    predict_ages,
    psnr,
    ssim,
)
from pada.evaluation.scores import (
    BACKGROUND_AREA_LIMIT,
    BLOTCH_LIMIT,
    CAST_LIMIT,
    DIVERSITY_MARGIN,
    FACE_FOUND_TARGET,
    HF_BLUR_LIMIT,
    HF_OK_TARGET,
    HF_RATIO_LIMIT,
    ID_TARGET,
    PATCH_LIMIT,
    SPEARMAN_TARGET,
    STRUCTURE_LIMIT,
    STRUCTURE_OK_TARGET,
    TONE_AREA_LIMIT,
    background_change,
    blotch,
    colour_cast,
    gender_kept,
    hf_energy_ratio,
    patch_change,
    reference_shift,
    spearman,
    structure_change,
    tone_change,
)
from pada.outputs import write_text

#: every age group, "a toddler's face" (0-5) and "in her tens" (6-15, a child) to "eighties" (70+)
DEFAULT_TARGETS = tuple(g.word for g in AGE_GROUPS)

#: ``--quick``: a few faces, fewer steps, no baseline / reconstruction / Fréchet distance, diversity on one
#: target, no separate lifespan sweep (monotonicity from the seven targets' outputs instead): to compare
#: models fast on 2 CPU cores (the acceptance numbers need a full run)
QUICK_PRESET: dict[str, Any] = {"max_images": 4, "n_outputs": 2, "steps": 10, "targets": DEFAULT_TARGETS,
                                "diversity_targets": ("sixties",), "baseline": False,
                                "reconstruction": False, "fid_features": "none", "lifespan": False}

#: diversity modes: name -> (high_diversity, low_diversity) switches of ``AgingPipeline.age``
DIVERSITY_MODES = {"high": (True, False), "low": (False, True), "both": (True, True)}

FID_FEATURES = ("sface", "dlib-age", "inception", "none")

#: faces of the split loaded as candidate references for the reference-guided check
REF_POOL = 64

#: faces shown in the contact sheet ``outputs_<model>.png`` of a report folder
EXAMPLE_FACES = 8


#: default candidates of the linear baseline's strength (wide, so that one of them can match PADA's ID)
#: (the shipped 64 px model needed strength 16 to come down to PADA's identity similarity)
BASELINE_STRENGTHS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0)

#: the strength is matched on the first ``baseline_search_images`` faces; when, over all evaluated faces,
#: PADA's mean ID and the baseline's differ by more than this, the Age-MAE check is not "at equal
#: identity" and the summary says so (v7i on 32 faces, matched on 8: PADA 0.832, baseline 0.816)
ID_MATCH_TOLERANCE = 0.005


@dataclass
class EvalConfig:
    """Settings of one evaluation run.

    ``main_mode`` picks which diversity mode's outputs give the headline Age MAE / ID / FD (default
    ``"high"``: PAE samples decoded from the inverted x_T of the input, the faithful edit path).
    ``seed``: source ``i`` is aged with seed ``seed + i``. ``max_images``: first K test faces (None: all).
    ``fid_max_real``: at most this many real images per group for the Fréchet distance.
    ``baseline_strengths``: candidates of the linear baseline's strength; the search runs on the first
    ``baseline_search_images`` faces, then ``baseline_refine`` bisection steps (geometric mean of the two
    strengths whose IDs bracket the model's) bring the baseline to the model's ID. ``text_eps``: PADA's
    text-driven sampling intensity ε for the runs (None: the model's own, the paper's 1e-3); the baseline
    has no PAE and ignores it.
    ``lifespan``: score the child-to-old sweep of each face (monotonicity); ``reference``: age each face
    with a reference face about ``ref_gap`` years older (even faces) or younger (odd faces), at least
    ``ref_min_gap`` apart, and check the estimated age moves toward the reference's.
    ``pipeline_options``: extra keyword arguments for the PADA pipeline's ``age`` / ``lifespan`` (e.g. an
    inference-time bound on the latent shift, when the pipeline has one); the baseline does not get them
    (``pada evaluate`` builds it with the same sampler, steps, guards, bound and low-level share).
    """

    targets: tuple[str, ...] = DEFAULT_TARGETS
    n_outputs: int = 4
    seed: int = 0
    steps: int | None = None
    max_images: int | None = None
    batch_size: int = 16
    main_mode: str = "high"
    diversity: bool = True
    reconstruction: bool = True
    baseline: bool = True
    baseline_strengths: tuple[float, ...] = BASELINE_STRENGTHS
    baseline_search_images: int = 8
    baseline_refine: int = 3
    baseline_fit_images: int = 512
    diversity_targets: tuple[str, ...] | None = None
    fid_max_real: int = 1000
    text_eps: float | None = None
    lifespan: bool = True
    reference: bool = True
    ref_gap: float = 20.0
    ref_min_gap: float = 10.0
    pipeline_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.main_mode not in DIVERSITY_MODES:
            raise PadaError(f"main_mode must be one of {sorted(DIVERSITY_MODES)}, got {self.main_mode!r}")
        if self.n_outputs < 1:
            raise PadaError(f"n_outputs must be >= 1, got {self.n_outputs}")
        for t in (*self.targets, *(self.diversity_targets or ())):
            try:
                group_by_word(t)
            except ValueError as exc:
                raise PadaError(str(exc)) from None


@dataclass
class Critics:
    """The evaluators. ``fid``: feature extractor ``images -> (B, D)`` or None to skip the distance."""

    age: Critic
    identity: Critic
    fid: Callable[[torch.Tensor], torch.Tensor] | None
    names: dict[str, str] = field(default_factory=dict)
    #: face detector for the face-found rate: images (B, 3, S, S) -> (B,) bool (None: not measured)
    faces: Callable[[torch.Tensor], torch.Tensor] | None = None
    #: gender critic for the gender-kept rate: images -> probs (B, 2) (None: not measured)
    gender: Critic | None = None


def load_critics(age: str = "dlib-age", identity: str = "sface", fid: str = "sface", device: str = "cpu",
                 age_weights: str | None = None, inception_weights: str | None = None,
                 faces: bool = True, gender: bool = True) -> Critics:
    """Critics from the registry. ``fid``: ``sface`` (identity embeddings), ``dlib-age`` (penultimate
    features of the age network), ``inception`` (TF-FID Inception-v3, weights supplied by the user) or
    ``none``. ``faces``: also load YuNet for the face-found rate
    (:class:`~pada.evaluation.scores.FaceFinder`). ``gender``: also load ``dlib-gender`` for the share of
    outputs read as the input's gender (:func:`~pada.evaluation.scores.gender_kept`)."""
    from pada.critics.registry import load_critic

    if fid not in FID_FEATURES:
        raise PadaError(f"--fid-features must be one of {', '.join(FID_FEATURES)}, got {fid!r}")
    age_c = load_critic(age, age_weights, device=device)
    id_c = load_critic(identity, device=device)
    fid_fn: Any = None
    if fid == "sface":
        fid_fn = CriticFeatures(id_c if identity == "sface" else load_critic("sface", device=device),
                                field="embedding", name="sface")
    elif fid == "dlib-age":
        fid_fn = CriticFeatures(load_critic("dlib-age", device=device, feature_layer="penultimate"),
                                field="features", name="dlib-age-penultimate")
    elif fid == "inception":
        fid_fn = InceptionFeatures(inception_weights).to(device)
    finder = None
    if faces:
        from pada.evaluation.scores import FaceFinder

        finder = FaceFinder()
    return Critics(age_c, id_c, fid_fn, {"age": age, "identity": identity, "fid_features": fid,
                                         "faces": "yunet" if faces else "none",
                                         "gender": "dlib-gender" if gender else "none"}, faces=finder,
                   gender=load_critic("dlib-gender", device=device) if gender else None)


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------
@dataclass
class EvalData:
    """Test faces ``images (M, 3, S, S)`` with labels, and a loader of real images per age group."""

    images: torch.Tensor
    files: list[str]
    ages: torch.Tensor
    genders: list[str]
    groups: torch.Tensor
    # (group index, max n) -> images (K, 3, S, S) or an iterable of such batches
    real_loader: Callable[[int, int], Any] | None = None
    source: str = ""
    #: candidate reference faces for the reference-guided check (None: the test faces themselves)
    pool_images: torch.Tensor | None = None
    pool_files: list[str] | None = None


def _dataset(root: Path, labels: Path, size: int, split: str, test_fraction: float):
    from pada.data.datasets import AlignedFaceDataset

    return AlignedFaceDataset(root, labels, size=size, split=split, test_fraction=test_fraction)


def locate_data(data: str | os.PathLike, size: int,
                labels: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(image folder, labels table) for a folder of aligned faces or a demo set (``aligned/<size>/``)."""
    d = Path(data)
    if not d.is_dir():
        raise PadaError(f"{d}: no such folder of aligned test faces")
    if (d / "aligned").is_dir() and labels is None and (d / "labels.csv").is_file():
        from pada.data.demo import aligned_dir

        return Path(aligned_dir(d, size)), d / "labels.csv"
    from pada.data.labels import find_table

    return d, Path(labels) if labels is not None else find_table(d)


def load_eval_data(data: str | os.PathLike, size: int, labels: str | os.PathLike | None = None,
                   split: str = "test", test_fraction: float = 0.05,
                   max_images: int | None = None) -> EvalData:
    """Load the test faces (``split`` of the deterministic hash split, as in training) at ``size``."""
    root, table = locate_data(data, size, labels)
    ds = _dataset(root, table, size, split, test_fraction)
    # also load up to REF_POOL faces beyond the first max_images: candidate references of the --ref check
    n_load = len(ds) if max_images is None else min(len(ds), max(max_images, REF_POOL))
    items = [ds[i] for i in range(n_load)]
    pool = torch.stack([it["image"] for it in items]) if items else None
    pool_files = [it["file"] for it in items]
    items = items[: max_images or None]
    everything = _dataset(root, table, size, "all", test_fraction)
    by_group: dict[int, list[int]] = {}
    for j, f in enumerate(everything.files):
        by_group.setdefault(int(everything.labels[f]["group"]), []).append(j)

    def real(group: int, n: int, chunk: int = 64):
        """Real faces of ``group`` (at most ``n``), in batches, so a large set never sits in memory."""
        js = by_group.get(group, [])[:n]
        for k in range(0, len(js), chunk):
            yield torch.stack([everything.load(j) for j in js[k:k + chunk]])

    return EvalData(images=torch.stack([it["image"] for it in items]), files=[it["file"] for it in items],
                    ages=torch.tensor([it["age"] for it in items]), genders=[it["gender"] for it in items],
                    groups=torch.tensor([it["group"] for it in items]), real_loader=real,
                    source=f"{root} ({split} split, {len(items)} faces)", pool_images=pool,
                    pool_files=pool_files)


def training_faces(data: str | os.PathLike, size: int, n: int, seed: int = 0,
                   test_fraction: float = 0.05) -> list[dict[str, Any]]:
    """``n`` faces of the training split of ``data`` (a seeded choice, the same for every run with ``seed``):
    the dataset items (``image`` (3, S, S), ``file``, ``age``, ``gender``, ...). For benchmarks that tune an
    inference setting on faces the evaluation does not score. No training face is a :class:`PadaError`."""
    root, table = locate_data(data, size)
    faces = _dataset(root, table, size, "train", test_fraction)
    pick = torch.randperm(len(faces), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    return [faces[i] for i in pick]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _mean(xs: Sequence[float]) -> float | None:
    v = [x for x in xs if x is not None and not math.isnan(x)]
    return float(sum(v) / len(v)) if v else None


def _log(msg: str, verbose: bool) -> None:
    if verbose:
        print(msg, file=sys.stderr, flush=True)


def _images_of(result: Any) -> torch.Tensor:
    out = result.images if hasattr(result, "images") else result
    return out.detach().float().cpu().clamp(-1, 1)


class _OutputChecks:
    """The checks on outputs that catch broken images (face found, high-frequency ratio, skin tone, colour
    patches, colour cast, blotches, skin structure, background, gender kept), gathered over sources and
    summarised by :meth:`scores`."""

    def __init__(self) -> None:
        self.found: list[torch.Tensor] = []
        self.hf: list[torch.Tensor] = []
        self.tone: list[torch.Tensor] = []
        self.patch: list[torch.Tensor] = []
        self.cast: list[torch.Tensor] = []
        self.blotch: list[torch.Tensor] = []
        self.structure: list[torch.Tensor] = []
        self.background: list[torch.Tensor] = []
        self.gender: list[torch.Tensor] = []

    def add(self, critics: Critics, outs: torch.Tensor, source: torch.Tensor) -> None:
        """Check ``outs (N, 3, S, S)``, the outputs for one ``source (1, 3, S, S)``."""
        self.hf.append(hf_energy_ratio(outs, source))
        self.tone.append(tone_change(outs, source))
        self.patch.append(patch_change(outs, source))
        self.cast.append(colour_cast(outs, source))
        self.blotch.append(blotch(outs, source))
        self.structure.append(structure_change(outs, source))
        self.background.append(background_change(outs, source))
        if critics.gender is not None:
            self.gender.append(gender_kept(critics.gender, outs, source))
        if critics.faces is not None:
            self.found.append(critics.faces(outs).reshape(-1).bool())

    def extend(self, other: _OutputChecks) -> None:
        for name in ("found", "hf", "tone", "patch", "cast", "blotch", "structure", "background", "gender"):
            getattr(self, name).extend(getattr(other, name))

    def scores(self) -> dict[str, Any]:
        """Face-found rate, high-frequency ratio, skin-tone, colour-patch, colour-cast, blotch and
        background statistics and gender-kept rate (None when not measured)."""
        k = torch.cat(self.gender) if self.gender else torch.zeros(0, dtype=torch.bool)
        f = torch.cat(self.found) if self.found else torch.zeros(0, dtype=torch.bool)
        r = torch.cat(self.hf) if self.hf else torch.zeros(0)
        c = torch.cat(self.tone) if self.tone else torch.zeros(0)
        b = torch.cat(self.background) if self.background else torch.zeros(0)
        q = torch.cat(self.patch) if self.patch else torch.zeros(0)
        v = torch.cat(self.cast) if self.cast else torch.zeros(0)
        u = torch.cat(self.blotch) if self.blotch else torch.zeros(0)
        s = torch.cat(self.structure) if self.structure else torch.zeros(0)
        return {
            "background_ok": float((b <= BACKGROUND_AREA_LIMIT).float().mean()) if b.numel() else None,
            "background_change_mean": float(b.mean()) if b.numel() else None,
            "tone_ok": float((c <= TONE_AREA_LIMIT).float().mean()) if c.numel() else None,
            "tone_change_mean": float(c.mean()) if c.numel() else None,
            "patch_ok": float((q <= PATCH_LIMIT).float().mean()) if q.numel() else None,
            "patch_change_median": float(q.median()) if q.numel() else None,
            "cast_ok": float((v <= CAST_LIMIT).float().mean()) if v.numel() else None,
            "colour_cast_median": float(v.median()) if v.numel() else None,
            "blotch_ok": float((u <= BLOTCH_LIMIT).float().mean()) if u.numel() else None,
            "blotch_median": float(u.median()) if u.numel() else None,
            "structure_ok": float((s <= STRUCTURE_LIMIT).float().mean()) if s.numel() else None,
            "structure_change_median": float(s.median()) if s.numel() else None,
            "gender_kept": float(k.float().mean()) if k.numel() else None,
            "face_found_rate": float(f.float().mean()) if f.numel() else None,
            "hf_ratio_median": float(r.median()) if r.numel() else None,
            "hf_ratio_max": float(r.max()) if r.numel() else None,
            "hf_ratio_ok": float((r <= HF_RATIO_LIMIT).float().mean()) if r.numel() else None,
            "hf_ratio_blurred": float((r < HF_BLUR_LIMIT).float().mean()) if r.numel() else None,
        }


class _Accumulator(_OutputChecks):
    """Per (target, mode) sums of the metrics over sources."""

    def __init__(self) -> None:
        super().__init__()
        self.abs_err: list[torch.Tensor] = []
        self.ages: list[torch.Tensor] = []
        self.id_sim: list[torch.Tensor] = []
        self.feats: list[torch.Tensor] = []
        self.div_id: list[float] = []
        self.div_px: list[float] = []
        self.age_std: list[float] = []

    def summary(self) -> dict[str, Any]:
        err = torch.cat(self.abs_err) if self.abs_err else torch.zeros(0)
        ages = torch.cat(self.ages) if self.ages else torch.zeros(0)
        ids = torch.cat(self.id_sim) if self.id_sim else torch.zeros(0)
        out: dict[str, Any] = {
            "n_images": int(err.numel()),
            "age_mae": float(err.mean()) if err.numel() else None,
            "age_mean": float(ages.mean()) if ages.numel() else None,
            "id_similarity": float(ids.mean()) if ids.numel() else None,
        }
        out.update(self.scores())
        if self.div_id:
            out.update(diversity_id=_mean(self.div_id), diversity_pixel=_mean(self.div_px),
                       diversity_age_std=_mean(self.age_std), diversity_id_per_face=list(self.div_id))
        return out


def _measure(acc: _Accumulator, critics: Critics, source: torch.Tensor, outs: torch.Tensor,
             target_age: float, bs: int, with_fid: bool) -> None:
    """Add the metrics of ``outs (N, 3, S, S)``, the outputs for one ``source (1, 3, S, S)``."""
    ages = predict_ages(critics.age, outs, bs)
    acc.ages.append(ages)
    acc.abs_err.append((ages - target_age).abs())
    e = embed(critics.identity, torch.cat([source, outs]), bs)  # (1 + N, D) unit
    acc.id_sim.append(e[1:] @ e[0])
    acc.add(critics, outs, source)
    if outs.shape[0] > 1:
        acc.div_id.append(mean_pairwise_distance(e[1:], "cosine"))
        acc.div_px.append(mean_pairwise_distance(outs.flatten(1), "rms"))
        acc.age_std.append(float(ages.double().std()))
    if with_fid and critics.fid is not None:
        acc.feats.append(features_of(critics.fid, outs, bs))


def _frechet(critics: Critics, data: EvalData, group: AgeGroup, feats: list[torch.Tensor], cfg: EvalConfig,
             cache: dict[int, torch.Tensor]) -> dict[str, Any]:
    if critics.fid is None:
        return {"fd": None, "fd_note": "skipped (--fid-features none)"}
    if data.real_loader is None:
        return {"fd": None, "fd_note": "no real images given"}
    if group.index not in cache:
        real = data.real_loader(group.index, cfg.fid_max_real)
        batches = [real] if torch.is_tensor(real) else real
        feats_real = [features_of(critics.fid, b, cfg.batch_size) for b in batches if b.shape[0]]
        cache[group.index] = torch.cat(feats_real) if feats_real else torch.zeros(0)
    fr = cache[group.index]
    fg = torch.cat(feats) if feats else torch.zeros(0)
    if fr.shape[0] < 2 or fg.shape[0] < 2:
        return {"fd": None, "fd_note": f"needs >= 2 real and generated images (real {fr.shape[0]}, "
                                       f"generated {fg.shape[0]})", "fd_n_real": int(fr.shape[0])}
    fd = frechet_distance(GaussianStats.from_features(fg), GaussianStats.from_features(fr))
    return {"fd": fd, "fd_n_real": int(fr.shape[0]), "fd_n_generated": int(fg.shape[0])}


# --------------------------------------------------------------------------------------------------
# one model
# --------------------------------------------------------------------------------------------------
def evaluate_pipeline(pipeline: Any, data: EvalData, critics: Critics, cfg: EvalConfig, *,
                      modes: Sequence[str] | None = None, n_outputs: int | None = None,
                      age_kwargs: dict[str, Any] | None = None, verbose: bool = False,
                      fid_cache: dict[int, torch.Tensor] | None = None,
                      examples: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Age every test face to every target and measure (see module docstring).

    ``pipeline``: anything with ``age(image (1,3,S,S), *, text, n, seed, high_diversity, low_diversity,
    steps, **age_kwargs)`` returning an object with ``images (n, 3, S, S)``. ``modes``: which diversity
    modes to run (default: only ``cfg.main_mode``, or all three when ``cfg.diversity``); modes other than
    the main one run only on ``cfg.diversity_targets`` (None: every target).

    ``examples``: filled with ``{word: (K, 3, S, S)}``, the first main-mode output of each of the first
    ``EXAMPLE_FACES`` faces per target (for the contact sheet of :func:`write_report`).

    Returns ``{"per_target": {word: {"target_age", "description_example", <main metrics>, "fd", ...,
    "modes": {mode: metrics}}}, "overall": {...}, "seconds": ...}``.
    """
    t_start = time.perf_counter()
    if modes is None:
        modes = list(DIVERSITY_MODES) if cfg.diversity else [cfg.main_mode]
    if cfg.main_mode not in modes:
        modes = [cfg.main_mode, *modes]
    n = n_outputs or cfg.n_outputs
    fid_cache = {} if fid_cache is None else fid_cache
    per_target: dict[str, Any] = {}
    pooled = _Accumulator()  # main-mode outputs of every target
    face_ages: list[list[float]] = []  # [target][face]
    for word in cfg.targets:
        g = group_by_word(word)
        div_here = cfg.diversity_targets is None or word in cfg.diversity_targets
        accs = {m: _Accumulator() for m in modes if m == cfg.main_mode or div_here}
        for i in range(data.images.shape[0]):
            x = data.images[i:i + 1]
            text = description(g, data.genders[i])
            for m in accs:
                hi, lo = DIVERSITY_MODES[m]
                res = pipeline.age(x, text=text, n=n, seed=cfg.seed + i, high_diversity=hi, low_diversity=lo,
                                   steps=cfg.steps, **(age_kwargs or {}))
                outs = _images_of(res)
                _measure(accs[m], critics, x, outs, g.center, cfg.batch_size, with_fid=m == cfg.main_mode)
                if examples is not None and m == cfg.main_mode and i < EXAMPLE_FACES:
                    examples[word] = torch.cat([examples.get(word, outs[:0]), outs[:1]])
        main = accs[cfg.main_mode]
        pooled.extend(main)
        face_ages.append([float(a.mean()) for a in main.ages])  # per face: mean age of its N outputs
        entry: dict[str, Any] = {"target_age": g.center, "group": g.name,
                                 "description_example": description(g, data.genders[0])}
        entry.update(main.summary())
        # per face: mean absolute age error of its N outputs (the paired bootstrap of done_when)
        entry["age_mae_per_face"] = [float(e.double().mean()) for e in main.abs_err]
        entry.update(_frechet(critics, data, g, main.feats, cfg, fid_cache))
        entry["modes"] = {m: a.summary() for m, a in accs.items()}
        per_target[word] = entry
        _log(f"  {word}: age MAE {entry['age_mae']:.2f}, ID {entry['id_similarity']:.4f}, face found "
             f"{_pct(entry.get('face_found_rate'))}, HF ratio <= {HF_RATIO_LIMIT:g} "
             f"{_pct(entry.get('hf_ratio_ok'))}, tone ok {_pct(entry.get('tone_ok'))}, patch ok "
             f"{_pct(entry.get('patch_ok'))}, cast ok {_pct(entry.get('cast_ok'))}, blotch ok "
             f"{_pct(entry.get('blotch_ok'))}, structure ok {_pct(entry.get('structure_ok'))}", verbose)
    overall = {k: _mean([per_target[w][k] for w in cfg.targets])
               for k in ("age_mae", "id_similarity", "fd")}
    overall.update(pooled.scores())
    rates = [per_target[w]["face_found_rate"] for w in cfg.targets]
    overall["face_found_min"] = min(rates) if rates and None not in rates else None
    kept = [per_target[w].get("structure_ok") for w in cfg.targets]
    overall["structure_ok_min"] = min(kept) if kept and None not in kept else None
    # monotonicity across the targets (a sweep at the main mode's outputs; needs >= 3 targets)
    centres = [group_by_word(w).center for w in cfg.targets]
    overall["target_spearman"] = (_mean([spearman(centres, [face_ages[t][i] for t in range(len(centres))])
                                         for i in range(data.images.shape[0])])
                                  if len(centres) >= 3 else None)
    overall["modes"] = {m: {k: _mean([per_target[w]["modes"].get(m, {}).get(k) for w in cfg.targets])
                            for k in ("age_mae", "id_similarity", "diversity_id", "diversity_pixel",
                                      "diversity_age_std")} for m in modes}
    overall["high_level_diversity"] = _high_level(overall["modes"])
    return {"per_target": per_target, "overall": overall, "n_outputs": n,
            "seconds": time.perf_counter() - t_start}


def _high_level(modes: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """PAE sampling on vs off, both with low-level diversity (each output's own start noise): modes
    ``both`` vs ``low`` (and ``high`` alone, whose 'off' is the deterministic edit with zero diversity by
    construction)."""
    if "both" not in modes or "low" not in modes:
        return None
    out: dict[str, Any] = {}
    for k, short in (("diversity_id", "id"), ("diversity_pixel", "pixel"), ("diversity_age_std", "age_std")):
        on, off = modes["both"].get(k), modes["low"].get(k)
        out[short] = {"on": on, "off": off, "high_only": modes.get("high", {}).get(k),
                      "gain": None if on is None or off is None else on - off}
    return out


def reconstruction_metrics(pipeline: Any, images: torch.Tensor, steps: int | None = None) -> dict[str, Any]:
    """PSNR / SSIM of the DiffAE round trip x → z = E_sem(x) → x_T = stochastic encode(x, z) → render(x_T, z).

    Uses the pipeline's ``encode``, ``invert`` and ``decode`` (one face at a time).
    """
    ps, ss = [], []
    for i in range(images.shape[0]):
        x = images[i:i + 1]
        z = pipeline.encode(x)
        x_t = pipeline.invert(x, z, steps)
        rec = pipeline.decode(x_t, z, steps).detach().float().cpu().clamp(-1, 1)
        ps.append(float(psnr(x, rec)[0]))
        ss.append(float(ssim(x, rec)[0]))
    return {"psnr": _mean(ps), "ssim": _mean(ss), "n_images": len(ps)}


# --------------------------------------------------------------------------------------------------
# lifespan monotonicity and reference-guided aging
# --------------------------------------------------------------------------------------------------
class InversionCache:
    """Memoise ``pipeline.invert`` while evaluating (``with InversionCache(pipeline): ...``).

    The DDIM inversion x_T of a face is deterministic and does not depend on the target, so the runner
    computes it once per face and step count instead of once per target, mode and sweep (it costs as much
    as decoding one output). Pipelines without an ``invert`` method are left alone.
    """

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.cache: dict[tuple, torch.Tensor] = {}
        self.active = False

    @staticmethod
    def _key(t: torch.Tensor) -> tuple:
        t = t.detach().float().cpu().contiguous()
        return tuple(t.shape), hash(t.numpy().tobytes())

    def __enter__(self) -> InversionCache:
        inv = getattr(self.pipeline, "invert", None)
        if inv is None or not callable(inv) or "invert" in vars(self.pipeline):
            return self

        def cached(image, z_src, steps=None, **kw):
            key = (self._key(image), self._key(z_src), steps)
            if key not in self.cache:
                self.cache[key] = inv(image, z_src, steps, **kw)
            return self.cache[key]

        self.pipeline.invert = cached
        self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            del self.pipeline.invert
            self.active = False
        self.cache.clear()


def _accepted(fn: Callable, options: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``options`` that ``fn`` accepts as keyword arguments."""
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return dict(options)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params}


def apply_max_shift(pipeline: Any, max_shift: float) -> float:
    """Evaluate a PADA pipeline with an inference-time bound on its latent shift: sets the model's
    ``max_shift`` (``PadaConfig``: ‖z_age − z_src‖ smoothly saturated at ``max_shift``·‖z_src‖; 0 = no
    bound) for every later ``age`` / ``lifespan`` call. Returns the value the model had before."""
    import dataclasses

    model = getattr(pipeline, "model", None)
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(cfg, "max_shift"):
        raise PadaError("--max-shift: this pipeline's PADA model has no latent-shift bound (max_shift)")
    try:
        new = dataclasses.replace(cfg, max_shift=float(max_shift))  # validated by PadaConfig
    except PadaError as exc:
        raise PadaError(f"--max-shift {max_shift}: {exc}") from None
    old = float(cfg.max_shift)
    model.cfg = new
    if hasattr(model, "modulation"):
        model.modulation.cfg = new
    return old


def check_pipeline_options(pipeline: Any, options: dict[str, Any]) -> None:
    """One clear error when the pipeline's ``age`` does not take one of ``options``."""
    missing = sorted(set(options) - set(_accepted(pipeline.age, options)))
    if missing:
        raise PadaError(f"--pipeline-option {missing[0]}: this pipeline's age() has no such option")


def lifespan_scores(pipeline: Any, data: EvalData, critics: Critics, cfg: EvalConfig, *,
                    options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Child-to-old sweep of each test face at the seven group descriptions (PAE mean, inverted x_T):
    Spearman correlation of the estimated ages with the group centres (1 = ages rise monotonically),
    averaged over faces (each face's read ages and its input's are kept: ``ages_per_face``,
    ``input_age_per_face``), and the face-found rate, high-frequency ratio and ID of the sweep's tiles.

    Uses ``pipeline.lifespan(..., frames_per_segment=1)`` when it exists, else one ``age`` call per group
    (the linear baseline).
    """
    options = options or {}
    centres = [g.center for g in AGE_GROUPS]
    rhos, ages_all, inputs, ids, checks = [], [], [], [], _OutputChecks()
    for i in range(data.images.shape[0]):
        x, gender = data.images[i:i + 1], data.genders[i]
        if hasattr(pipeline, "lifespan"):
            kw = _accepted(pipeline.lifespan, options)
            res = pipeline.lifespan(x, gender=gender, frames_per_segment=1, steps=cfg.steps, **kw)
            tiles = _images_of(res)
        else:
            tiles = torch.cat([_images_of(pipeline.age(x, text=description(g, gender), n=1, seed=cfg.seed + i,
                                                       high_diversity=False, low_diversity=False,
                                                       steps=cfg.steps, **options)) for g in AGE_GROUPS])
        ages = predict_ages(critics.age, torch.cat([x, tiles]), cfg.batch_size)
        inputs.append(float(ages[0]))
        ages = ages[1:]
        ages_all.append(ages)
        rhos.append(spearman(centres, ages))
        checks.add(critics, tiles, x)
        e = embed(critics.identity, torch.cat([x, tiles]), cfg.batch_size)
        ids.append(e[1:] @ e[0])
    a = torch.stack(ages_all) if ages_all else torch.zeros(0, len(centres))
    out: dict[str, Any] = {
        "n_faces": len(rhos), "spearman": _mean(rhos), "spearman_per_face": rhos,
        "age_mean_per_group": {g.word: float(a[:, k].mean()) if a.numel() else None
                               for k, g in enumerate(AGE_GROUPS)},
        "id_similarity": float(torch.cat(ids).mean()) if ids else None,
        # each face's input and tiles as read, to see where a sweep's order breaks
        "input_age_per_face": [round(a, 2) for a in inputs],
        "ages_per_face": [[round(float(v), 2) for v in row] for row in a],
    }
    out.update(checks.scores())
    return out


def pick_references(ages: torch.Tensor, pool_ages: torch.Tensor, gap: float, min_gap: float,
                    exclude: Sequence[int | None] = ()) -> list[int | None]:
    """For each input age, the index of a pool face about ``gap`` years older (even inputs) or younger
    (odd inputs), at least ``min_gap`` apart; the other direction when none qualifies; None when no pool
    face is ``min_gap`` away. ``exclude[i]``: pool index of input i itself (never its own reference)."""
    picks: list[int | None] = []
    for i, a in enumerate(ages.tolist()):
        d = pool_ages.double() - a
        own = exclude[i] if i < len(exclude) else None
        choice = None
        for sign in ((1, -1) if i % 2 == 0 else (-1, 1)):
            ok = [(abs(float(d[j]) - sign * gap), j) for j in range(d.numel())
                  if j != own and sign * float(d[j]) >= min_gap]
            if ok:
                choice = min(ok)[1]
                break
        picks.append(choice)
    return picks


def reference_scores(pipeline: Any, data: EvalData, critics: Critics, cfg: EvalConfig, *,
                     options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Reference-guided aging (``age(x, ref=r)``, no text): does the estimated age of the outputs move
    from the input's toward the reference's? References come from ``data.pool_images`` (the test split)
    by estimated age (:func:`pick_references`); all ages are from ``critics.age``."""
    pool = data.pool_images if data.pool_images is not None else data.images
    pool_files = data.pool_files if data.pool_images is not None else data.files
    bs = cfg.batch_size
    pool_ages = predict_ages(critics.age, pool, bs)
    in_ages = predict_ages(critics.age, data.images, bs)
    own = [pool_files.index(f) if pool_files and f in pool_files else None for f in data.files]
    refs = pick_references(in_ages, pool_ages, cfg.ref_gap, cfg.ref_min_gap, own)
    pairs, ids, checks = [], [], _OutputChecks()
    for i, j in enumerate(refs):
        if j is None:
            continue
        x = data.images[i:i + 1]
        res = pipeline.age(x, ref=pool[j:j + 1], n=cfg.n_outputs, seed=cfg.seed + i, high_diversity=True,
                           low_diversity=False, steps=cfg.steps, **(options or {}))
        outs = _images_of(res)
        ages = predict_ages(critics.age, outs, bs)
        r = reference_shift(float(in_ages[i]), float(pool_ages[j]), ages)
        pairs.append({"file": data.files[i], "reference": pool_files[j], "age_input": float(in_ages[i]),
                      "age_reference": float(pool_ages[j]), "age_outputs": ages.tolist(), **r})
        checks.add(critics, outs, x)
        e = embed(critics.identity, torch.cat([x, outs]), bs)
        ids.append(e[1:] @ e[0])

    def agg(ps: list[dict[str, Any]]) -> dict[str, Any]:
        return {"n_pairs": len(ps), "toward": _mean([p["toward"] for p in ps]),
                "fraction": _mean([p["fraction"] for p in ps]), "shift": _mean([p["shift"] for p in ps])}

    out = agg(pairs)
    out["older_reference"] = agg([p for p in pairs if p["gap"] > 0])
    out["younger_reference"] = agg([p for p in pairs if p["gap"] < 0])
    out["id_similarity"] = float(torch.cat(ids).mean()) if ids else None
    out.update(checks.scores())
    out["pairs"] = pairs
    if len(pairs) < len(refs):
        out["note"] = (f"{len(refs) - len(pairs)} faces had no reference at least {cfg.ref_min_gap:g} years "
                       "apart in the pool")
    return out


# --------------------------------------------------------------------------------------------------
# the linear baseline at matched identity
# --------------------------------------------------------------------------------------------------
def fit_baseline_direction(pipeline: Any, data: str | os.PathLike | None, size: int, cfg: EvalConfig,
                           labels: str | os.PathLike | None = None, test_fraction: float = 0.05,
                           eval_data: EvalData | None = None):
    """Fit the DiffAE linear age direction on the train split (first ``baseline_fit_images``), falling
    back to the evaluation faces themselves when there is no train split. Returns (direction, note)."""
    from pada.aging.baseline import LinearAgeDirection

    zs, ages, note = [], [], ""
    if data is not None:
        root, table = locate_data(data, size, labels)
        try:
            ds = _dataset(root, table, size, "train", test_fraction)
        except PadaError:
            ds = None
        if ds is not None:
            for j in range(min(len(ds), cfg.baseline_fit_images)):
                item = ds[j]
                zs.append(pipeline.encode(item["image"][None]).float().cpu())
                ages.append(float(item["age"]))
            note = f"fitted on {len(zs)} train-split faces"
    if len(zs) < 2 and eval_data is not None:
        zs = [pipeline.encode(eval_data.images[i:i + 1]).float().cpu()
              for i in range(eval_data.images.shape[0])]
        ages = eval_data.ages.tolist()
        note = f"fitted on the {len(zs)} evaluation faces themselves (no train split available)"
    if len(zs) < 2:
        raise PadaError("cannot fit the linear baseline: fewer than 2 labelled faces")
    return LinearAgeDirection.fit(torch.cat(zs), torch.tensor(ages)), note


def search_baseline_strength(baseline: Any, data: EvalData, critics: Critics, cfg: EvalConfig,
                             target_id: float) -> tuple[float, list[dict[str, float]]]:
    """The linear baseline's strength whose mean ID (over the first ``baseline_search_images`` faces and all
    targets, one output each) is closest to ``target_id``: the ``cfg.baseline_strengths`` grid, then up to
    ``cfg.baseline_refine`` bisection steps between the two neighbouring strengths whose IDs bracket the
    target (a coarse grid leaves the baseline up to half a grid step from "equal identity"; rows added by
    the bisection carry ``"refined": True``)."""
    k = min(cfg.baseline_search_images, data.images.shape[0])

    def mean_id(s: float) -> float | None:
        sims = []
        for word in cfg.targets:
            g = group_by_word(word)
            for i in range(k):
                x = data.images[i:i + 1]
                res = baseline.age(x, text=description(g, data.genders[i]), n=1, seed=cfg.seed + i,
                                   high_diversity=False, low_diversity=False, steps=cfg.steps, strength=s)
                e = embed(critics.identity, torch.cat([x, _images_of(res)]), cfg.batch_size)
                sims.append(float(e[1] @ e[0]))
        return _mean(sims)

    table: list[dict[str, Any]] = [{"strength": float(s), "id_similarity": mean_id(s)}
                                   for s in cfg.baseline_strengths]
    for _ in range(cfg.baseline_refine):
        rows = sorted((r for r in table if r["id_similarity"] is not None), key=lambda r: r["strength"])
        pair = next(((a, b) for a, b in zip(rows, rows[1:], strict=False)
                     if (a["id_similarity"] - target_id) * (b["id_similarity"] - target_id) < 0), None)
        if pair is None:
            break
        lo, hi = pair[0]["strength"], pair[1]["strength"]
        s = math.sqrt(lo * hi) if lo > 0 else (lo + hi) / 2
        table.append({"strength": s, "id_similarity": mean_id(s), "refined": True})
    best = min((r for r in table if r["id_similarity"] is not None),
               key=lambda r: abs(r["id_similarity"] - target_id))
    return best["strength"], table


# --------------------------------------------------------------------------------------------------
# whole runs
# --------------------------------------------------------------------------------------------------
def run_evaluation(models: dict[str, Any], data: EvalData, critics: Critics, cfg: EvalConfig, *,
                   baseline: Any = None, baseline_note: str = "", verbose: bool = False,
                   training_critics: dict[str, str] | None = None,
                   examples: dict[str, dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
    """Evaluate one or more pipelines (``models``: name -> pipeline; several = ablation table) and,
    when ``baseline`` is given and ``cfg.baseline``, the linear baseline at the first model's ID.

    Reconstruction and diversity are measured for the first model only (they depend on the DiffAE and
    on sampling, not on the ablated loss); the other models get the main metrics. ``examples``: filled
    per model name (and ``"baseline"``) as in :func:`evaluate_pipeline`.
    """
    if not models:
        raise PadaError("no model to evaluate")
    report: dict[str, Any] = {
        "protocol": "PADA §4 (Tables 1 and 3), offline evaluators; see docs/evaluation.md",
        "config": asdict(cfg), "critics": critics.names, "data": data.source,
        "n_faces": int(data.images.shape[0]), "models": {}, "notes": [],
        "sampling": {name: {"sampler": getattr(p, "sampler", "ddim"),
                            "steps": cfg.steps or getattr(p, "steps", None)} for name, p in models.items()},
    }
    fd_kind = critics.names.get("fid_features", "")
    if fd_kind and fd_kind != "inception":
        report["notes"].append(f"FD is a Fréchet distance on {fd_kind} features, not Inception-FID: not "
                               "comparable with the paper's FID numbers")
    for role, used in (training_critics or {}).items():
        if used and used == critics.names.get(role):
            report["notes"].append(f"the {role} evaluator {used!r} was also used in training: its numbers "
                                   "favour the model (the paper uses independent evaluators)")
    fid_cache: dict[int, torch.Tensor] = {}
    first = next(iter(models))
    options = dict(cfg.pipeline_options)
    if options:
        guards = {k: getattr(baseline, k) for k in ("tone_guard", "background_guard", "saturation_guard",
                                                    "blotch_guard", "structure_guard", "contrast_bound",
                                                    "low_noise") if hasattr(baseline, k)}
        report["notes"].append(f"PADA pipelines run with options {options}; the baseline is not given them "
                               "and samples under its own guards, bound and low-level share: "
                               f"{guards or 'none'}")
    for pipe in models.values():
        check_pipeline_options(pipe, options)
    age_kwargs = {**({} if cfg.text_eps is None else {"eps": cfg.text_eps}), **options}
    for name, pipe in models.items():
        _log(f"evaluating {name}", verbose)
        is_first = name == first
        with InversionCache(pipe):
            sub = evaluate_pipeline(pipe, data, critics, cfg, verbose=verbose, fid_cache=fid_cache,
                                    modes=None if is_first else [cfg.main_mode],
                                    age_kwargs=age_kwargs or None,
                                    examples=None if examples is None else examples.setdefault(name, {}))
            if cfg.lifespan:
                _log(f"  lifespan sweeps of {name}", verbose)
                sub["lifespan"] = lifespan_scores(pipe, data, critics, cfg, options=age_kwargs)
            if cfg.reference:
                _log(f"  reference-guided aging of {name}", verbose)
                sub["reference"] = reference_scores(pipe, data, critics, cfg, options=age_kwargs)
            if is_first and cfg.reconstruction:
                sub["reconstruction"] = reconstruction_metrics(pipe, data.images, cfg.steps)
        report["models"][name] = sub
    if baseline is not None and cfg.baseline:
        target_id = report["models"][first]["overall"]["id_similarity"]
        strength, table = search_baseline_strength(baseline, data, critics, cfg, target_id)
        _log(f"evaluating the linear baseline at strength {strength}", verbose)
        # the baseline ignores high_diversity: its "high" mode shows it has no high-level variety
        modes = ["high", "low"] if cfg.diversity else None
        sub = evaluate_pipeline(baseline, data, critics, cfg, modes=modes, verbose=verbose,
                                fid_cache=fid_cache, age_kwargs={"strength": strength},
                                examples=None if examples is None else examples.setdefault("baseline", {}))
        if cfg.lifespan:
            sub["lifespan"] = lifespan_scores(baseline, data, critics, cfg, options={"strength": strength})
        sub.update(strength=strength, strength_search=table, matched_to=first, note=baseline_note)
        report["baseline"] = sub
    for name, sub in report["models"].items():
        sub["done_when"] = done_when(sub, report.get("baseline") if name == first else None)
    return report


#: what the lifespan check's target says when no sweep ran and it read the targets' Spearman instead
NO_SWEEP = " (no sweep run: the Spearman across the targets' outputs)"


def _lifespan_rho(sub: dict[str, Any]) -> float | None:
    """The lifespan sweep's mean Spearman, else the one across the evaluated targets' outputs."""
    ls = sub.get("lifespan") or {}
    return ls["spearman"] if ls.get("spearman") is not None else sub["overall"].get("target_spearman")


def _per_face(sub: dict[str, Any], key: str, mode: str | None = None) -> dict[str, list[float]]:
    """{target: per-face list} of ``key`` in a report's per-target entries (of diversity ``mode``)."""
    out = {}
    for word, e in sub.get("per_target", {}).items():
        v = (e.get("modes", {}).get(mode, {}) if mode else e).get(key)
        if v is not None:
            out[word] = v
    return out


def _faces_table(*columns: dict[str, list[float]]) -> list[list[list[float]]] | None:
    """The targets every mapping has, as one (T, F) table per mapping; None when there are none or the
    face counts differ (e.g. a report written before per-face values were stored)."""
    words = [w for w in columns[0] if all(w in c for c in columns[1:])]
    tables = [[c[w] for w in words] for c in columns]
    sizes = {len(row) for t in tables for row in t}
    return tables if words and len(sizes) == 1 and sizes.pop() >= 2 else None


def bootstrap_checks(sub: dict[str, Any],
                     baseline: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """The faces resampled (:func:`pada.evaluation.metrics.bootstrap_interval`) for the checks whose
    margins a different set of test faces could flip: ``age_mae_below_baseline`` (PADA's per-face error
    minus the baseline's, paired), ``lifespan_spearman`` (mean of the per-face sweep correlations) and
    ``high_level_diversity`` (relative div-ID gain of mode ``both`` over ``low``). Each value gets its
    interval, ``threshold`` (the check's limit) and ``pass_share``: the share of resamples that pass.
    Checks without per-face values (older reports, or not measured) are left out."""
    out: dict[str, dict[str, float]] = {}
    if baseline:
        t = _faces_table(_per_face(sub, "age_mae_per_face"), _per_face(baseline, "age_mae_per_face"))
        if t:
            r = paired_bootstrap(*t)
            out["age_mae_below_baseline"] = {**r, "pass_share": r["share_below"]}
    rhos = [r for r in (sub.get("lifespan") or {}).get("spearman_per_face") or []
            if r is not None and not math.isnan(r)]
    if len(rhos) >= 2:
        r = bootstrap_interval(lambda a: a.mean((-2, -1)), rhos, threshold=SPEARMAN_TARGET)
        out["lifespan_spearman"] = {**r, "pass_share": 1.0 - r["share_below"]}
    t = _faces_table(*(_per_face(sub, "diversity_id_per_face", m) for m in ("both", "low")))
    if t:
        r = bootstrap_interval(lambda on, off: on.mean((-2, -1)) / off.mean((-2, -1)) - 1.0, *t,
                               threshold=DIVERSITY_MARGIN)
        out["high_level_diversity"] = {**r, "pass_share": 1.0 - r["share_below"]}
    return out


def done_when(sub: dict[str, Any], baseline: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The issue's acceptance checks on one model's report, plus pada's structure check (the share of
    each target's outputs whose skin kept its structure, :data:`STRUCTURE_OK_TARGET`): name -> {"value",
    "target", "pass"} ("pass" None when the score was not measured). The checks with per-face values (Age
    MAE against the baseline, lifespan ρ, PAE diversity) also carry ``"bootstrap"``
    (:func:`bootstrap_checks`): how the value varies with the choice of test faces; the checks themselves
    pass on the measured values, as the issue words them."""
    o = sub["overall"]

    def check(value: Any, target: str, ok: Callable[[Any], bool]) -> dict[str, Any]:
        return {"value": value, "target": target, "pass": None if value is None else bool(ok(value))}

    out = {
        "face_found_every_target": check(o.get("face_found_min"), f">= {FACE_FOUND_TARGET:g} (worst target)",
                                         lambda v: v >= FACE_FOUND_TARGET),
        "hf_ratio_ok": check(o.get("hf_ratio_ok"), f">= {HF_OK_TARGET:g} of outputs at ratio <= "
                                                   f"{HF_RATIO_LIMIT:g}", lambda v: v >= HF_OK_TARGET),
        "structure_ok_every_target": check(o.get("structure_ok_min"),
                                           f">= {STRUCTURE_OK_TARGET:g} of outputs at structure change <= "
                                           f"{STRUCTURE_LIMIT:g} (worst target; pada's)",
                                           lambda v: v >= STRUCTURE_OK_TARGET),
        "lifespan_spearman": check(_lifespan_rho(sub), f">= {SPEARMAN_TARGET:g}" + (
            "" if (sub.get("lifespan") or {}).get("spearman") is not None else NO_SWEEP),
            lambda v: v >= SPEARMAN_TARGET),
        "id_similarity": check(o.get("id_similarity"), f">= {ID_TARGET:g}", lambda v: v >= ID_TARGET),
    }
    b = (baseline or {}).get("overall", {})
    mae, bmae = o.get("age_mae"), b.get("age_mae")
    out["age_mae_below_baseline"] = check(None if mae is None or bmae is None else mae - bmae,
                                          "< 0 (PADA minus linear baseline at matched ID)", lambda v: v < 0)
    if o.get("id_similarity") is not None and b.get("id_similarity") is not None:
        # how far the match made on the search faces is from equal identity on all evaluated faces
        out["age_mae_below_baseline"]["id_gap"] = o["id_similarity"] - b["id_similarity"]
    hl = (o.get("high_level_diversity") or {}).get("id") or {}
    rel = None if hl.get("gain") is None or not hl.get("off") else hl["gain"] / hl["off"]
    out["high_level_diversity"] = check(rel, f">= {DIVERSITY_MARGIN:g} (relative div-ID gain of PAE "
                                             "sampling, own x_T per output)", lambda v: v >= DIVERSITY_MARGIN)
    ref = sub.get("reference") or {}
    fr = [ref.get(k, {}).get("fraction") for k in ("older_reference", "younger_reference")]
    fr = [f for f in fr if f is not None]
    out["reference_toward"] = check(min(fr) if fr else None, "> 0 (share of the input→reference age gap "
                                                             "covered, worse of older / younger references)",
                                    lambda v: v > 0)
    for name, interval in bootstrap_checks(sub, baseline).items():
        out[name]["bootstrap"] = interval
    return out


def _fmt(v: Any, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def to_markdown(report: dict[str, Any]) -> str:
    """Markdown tables of a report: per model and target, then the overall / ablation table."""
    lines = [f"Data: {report['data']}; critics: {report['critics']}; N = {report['config']['n_outputs']}", ""]
    rows = dict(report["models"])
    if "baseline" in report:
        rows[f"DiffAE linear (strength {report['baseline']['strength']:g})"] = report["baseline"]
    lines += ["| model | target | Age MAE ↓ | mean age | ID ↑ | face found ↑ | HF ratio ≤ 1.5 ↑ | "
              "tone ok ↑ | patch ok ↑ | cast ok ↑ | blotch ok ↑ | structure ok ↑ | bg kept ↑ | "
              "gender kept ↑ | FD ↓ | div-ID (high/low/both) | div-px |", "|---" * 17 + "|"]
    for name, sub in rows.items():
        for word, e in sub["per_target"].items():
            modes = e.get("modes", {})
            div = "/".join(_fmt(modes.get(m, {}).get("diversity_id"), 4) for m in DIVERSITY_MODES)
            px = "/".join(_fmt(modes.get(m, {}).get("diversity_pixel"), 3) for m in DIVERSITY_MODES)
            lines.append(f"| {name} | {word} ({e['target_age']:g}) | {_fmt(e['age_mae'])} | "
                         f"{_fmt(e['age_mean'], 1)} | {_fmt(e['id_similarity'], 4)} | "
                         f"{_pct(e.get('face_found_rate'))} | {_pct(e.get('hf_ratio_ok'))} | "
                         f"{_pct(e.get('tone_ok'))} | {_pct(e.get('patch_ok'))} | "
                         f"{_pct(e.get('cast_ok'))} | {_pct(e.get('blotch_ok'))} | "
                         f"{_pct(e.get('structure_ok'))} | {_pct(e.get('background_ok'))} | "
                         f"{_pct(e.get('gender_kept'))} | {_fmt(e.get('fd'))} | "
                         f"{div} | {px} |")
    lines += ["", "| model | Age MAE ↓ | ID ↑ | FD ↓ |", "|---|---|---|---|"]
    for name, sub in rows.items():
        o = sub["overall"]
        lines.append(f"| {name} | {_fmt(o['age_mae'])} | {_fmt(o['id_similarity'], 4)} | {_fmt(o['fd'])} |")
    for name, sub in report["models"].items():
        if "reconstruction" in sub:
            r = sub["reconstruction"]
            lines += ["", f"Reconstruction ({name}, {r['n_images']} faces): PSNR {_fmt(r['psnr'])} dB, "
                          f"SSIM {_fmt(r['ssim'], 4)}"]
    if report.get("notes"):
        lines += [""] + [f"Note: {n}" for n in report["notes"]]
    lines += ["", "Summary (failure scores, lifespan, diversity, --ref, acceptance checks):", "", "```",
              summary_table(report).rstrip("\n"), "```"]
    return "\n".join(lines) + "\n"


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


_CHECK_LABELS = {
    "face_found_every_target": "face found", "hf_ratio_ok": "HF ok",
    "structure_ok_every_target": "structure ok", "lifespan_spearman": "lifespan ρ",
    "id_similarity": "ID", "age_mae_below_baseline": "MAE<baseline", "high_level_diversity": "PAE diversity",
    "reference_toward": "--ref toward",
}


#: the checks :func:`bootstrap_checks` resamples, as the summary shows them
_RESAMPLED = (("age_mae_below_baseline", "MAE−baseline", lambda v: f"{v:+.2f}"),
              ("lifespan_spearman", "lifespan ρ", lambda v: f"{v:.3f}"),
              ("high_level_diversity", "PAE diversity", lambda v: f"{100 * v:+.1f} %"))


def _done_when_lines(dw: dict[str, Any] | None, cfg: dict[str, Any]) -> list[str]:
    """The summary's lines for one model's acceptance checks: pass/fail marks, the baseline's identity gap
    when it is not small, and the resampled intervals of the checks with thin margins."""
    if not dw:
        return []
    marks = [f"{'–' if c['pass'] is None else 'PASS' if c['pass'] else 'FAIL'} "
             f"{_CHECK_LABELS.get(k, k)}{' (targets)' if str(c.get('target')).endswith(NO_SWEEP) else ''}"
             for k, c in dw.items()]
    lines = ["   done when: " + ", ".join(marks[:4]), "              " + ", ".join(marks[4:])]
    gap = (dw.get("age_mae_below_baseline") or {}).get("id_gap")
    if gap is not None and abs(gap) > ID_MATCH_TOLERANCE:
        lines.append(f"   MAE<baseline not at equal ID: ID minus the baseline's {gap:+.3f} "
                     f"(matched on {cfg.get('baseline_search_images', '?')} faces: --baseline-search-images)")
    resampled = [(label, fmt, dw[key]["bootstrap"]) for key, label, fmt in _RESAMPLED
                 if (dw.get(key) or {}).get("bootstrap")]
    if resampled:
        bs = resampled[0][2]
        lines.append(f"   faces resampled ({bs['draws']} draws, {100 * bs['level']:.0f} % interval, "
                     "share of draws that pass):")
        lines += [f"     {label:<14}{fmt(bs['value'])} [{fmt(bs['low'])}, {fmt(bs['high'])}], passes "
                  f"{_pct(bs['pass_share'])}" for label, fmt, bs in resampled]
    return lines


def summary_table(report: dict[str, Any]) -> str:
    """A one-screen text summary (lines <= 110 characters): per model, per target the failure scores
    (face found, share of outputs with high-frequency ratio <= 1.5, its median, share blurred, share whose
    skin keeps its shading: ``tone ok``, share whose skin colour changed evenly: ``patch``, share whose
    head's colour did not grow more vivid: ``cast``, share whose skin brightness changed evenly: ``blot``,
    share whose background stays: ``bg ok``, share read
    as the input's
    gender: ``gender``), ID and Age MAE; then
    lifespan monotonicity, diversity, reference-guided aging and the issue's acceptance checks
    (PASS / FAIL / – not measured)."""
    cfg = report["config"]
    critics = ", ".join(f"{k} {v}" for k, v in report["critics"].items())
    lines = [f"== {report['data']}", f"   N = {cfg['n_outputs']}, DDIM steps {cfg['steps'] or 'default'}, "
                                     f"seed {cfg['seed']}; {critics}"]
    if report.get("max_shift"):
        lines.append(f"   inference-time latent-shift bound max_shift = {report['max_shift']['inference']:g}")
    if cfg.get("pipeline_options"):
        lines.append(f"   pipeline options {cfg['pipeline_options']}")
    rows = dict(report["models"])
    if "baseline" in report:
        rows[f"linear baseline (strength {report['baseline']['strength']:g})"] = report["baseline"]
    for name, sub in rows.items():
        lines += [f"-- {name}",
                  f"   {'target':<17}{'face':>10}{'HF ok':>7}{'HF med':>7}{'blur':>6}{'tone ok':>8}"
                  f"{'patch':>6}{'cast':>6}{'blot':>6}{'struct':>7}{'bg ok':>6}{'gender':>7}{'ID':>7}"
                  f"{'MAE':>7}{'age':>6}"]
        o = sub["overall"]
        for word, e in [*sub["per_target"].items(), ("all", o)]:
            label = "all (worst)" if word == "all" else f"{word} ({e['target_age']:g})"
            face = _pct(e.get("face_found_rate"))
            if word == "all" and o.get("face_found_min") is not None:
                face = f"{face} ({_pct(o['face_found_min'])})"
            lines.append(f"   {label:<17}{face:>10}{_pct(e.get('hf_ratio_ok')):>7}"
                         f"{_fmt(e.get('hf_ratio_median')):>7}{_pct(e.get('hf_ratio_blurred')):>6}"
                         f"{_pct(e.get('tone_ok')):>8}{_pct(e.get('patch_ok')):>6}"
                         f"{_pct(e.get('cast_ok')):>6}{_pct(e.get('blotch_ok')):>6}"
                         f"{_pct(e.get('structure_ok')):>7}{_pct(e.get('background_ok')):>6}"
                         f"{_pct(e.get('gender_kept')):>7}"
                         f"{_fmt(e.get('id_similarity'), 3):>7}"
                         f"{_fmt(e.get('age_mae'), 1):>7}{_fmt(e.get('age_mean'), 1):>6}")
        if o.get("target_spearman") is not None:
            lines.append("   monotonicity across the targets' outputs: Spearman "
                         f"{_fmt(o['target_spearman'], 3)}")
        ls = sub.get("lifespan")
        if ls:
            ages = " ".join(_fmt(v, 0) for v in ls["age_mean_per_group"].values())
            lines.append(f"   lifespan: Spearman {_fmt(ls['spearman'], 3)} ({ls['n_faces']} faces), ID "
                         f"{_fmt(ls.get('id_similarity'), 3)}; face {_pct(ls.get('face_found_rate'))}, "
                         f"HF ok {_pct(ls.get('hf_ratio_ok'))}, tone ok {_pct(ls.get('tone_ok'))}")
            lines.append(f"   lifespan: patch {_pct(ls.get('patch_ok'))}, cast {_pct(ls.get('cast_ok'))}, "
                         f"blotch {_pct(ls.get('blotch_ok'))}, structure {_pct(ls.get('structure_ok'))}, "
                         f"bg ok {_pct(ls.get('background_ok'))}, "
                         f"gender {_pct(ls.get('gender_kept'))}")
            lines.append(f"   lifespan ages by group: {ages}")
        hl = o.get("high_level_diversity")
        if hl:
            d, px, sd = hl["id"], hl["pixel"], hl["age_std"]
            modes = o.get("modes", {})  # their identity: is the person still there when x_T is redrawn?
            lines.append(f"   diversity, PAE sampling on/off (own x_T): div-ID {_fmt(d['on'], 4)}/"
                         f"{_fmt(d['off'], 4)}, px {_fmt(px['on'], 3)}/{_fmt(px['off'], 3)}, "
                         f"age std {_fmt(sd['on'], 1)}/{_fmt(sd['off'], 1)}; ID "
                         f"{_fmt(modes.get('both', {}).get('id_similarity'), 3)}/"
                         f"{_fmt(modes.get('low', {}).get('id_similarity'), 3)}")
            lines.append(f"   diversity, PAE sampling only (inverted x_T): div-ID {_fmt(d['high_only'], 4)}, "
                         f"px {_fmt(px['high_only'], 3)}, age std {_fmt(sd['high_only'], 1)}")
        ref = sub.get("reference")
        if ref:
            lines.append(f"   --ref: gap covered {_fmt(ref['fraction'])} (older refs "
                         f"{_fmt(ref['older_reference']['fraction'])}, younger "
                         f"{_fmt(ref['younger_reference']['fraction'])}), toward {_pct(ref['toward'])} of "
                         f"outputs, {ref['n_pairs']} pairs; face {_pct(ref.get('face_found_rate'))}, "
                         f"ID {_fmt(ref.get('id_similarity'), 3)}")
        lines += _done_when_lines(sub.get("done_when"), cfg)
    n, nout = report.get("n_faces", 0), cfg["n_outputs"]
    if n < 16 or nout < 4:
        lines.append(f"   ({n} faces, N = {nout}: the issue's acceptance needs >= 16 faces and N >= 4)")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: str | os.PathLike,
                 examples: dict[str, dict[str, torch.Tensor]] | None = None,
                 sources: torch.Tensor | None = None) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into folder ``out`` (atomically). Returns both paths.

    With ``examples`` (from :func:`run_evaluation`) and the test faces ``sources``, also a contact sheet
    per model, ``outputs_<model>.png``: one row per face (at most ``EXAMPLE_FACES``), the input then the
    first output for each target, left to right.
    """
    out = Path(out)
    paths = []
    for name, text in (("report.json", json.dumps(report, indent=1, default=float)),
                       ("report.md", to_markdown(report))):
        paths.append(write_text(out / name, text))
    for name, per_target in (examples or {}).items():
        if not per_target or sources is None:
            continue
        from pada.faces.grid import save_grid

        k = min(min(v.shape[0] for v in per_target.values()), sources.shape[0])
        cols = [sources[:k].float().cpu(), *(v[:k] for v in per_target.values())]
        tiles = torch.stack(cols, 1).flatten(0, 1)  # row-major: face by face
        slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        save_grid(tiles, out / f"outputs_{slug}.png", nrow=len(cols))
    return paths[0], paths[1]


__all__ = ["AGE_GROUPS", "Critics", "DIVERSITY_MODES", "EvalConfig", "EvalData", "InversionCache",
           "apply_max_shift", "bootstrap_checks", "check_pipeline_options", "done_when", "evaluate_pipeline",
           "fit_baseline_direction", "lifespan_scores", "load_critics", "load_eval_data", "pick_references",
           "reconstruction_metrics", "reference_scores", "run_evaluation", "search_baseline_strength",
           "summary_table", "to_markdown", "training_faces", "write_report"]
