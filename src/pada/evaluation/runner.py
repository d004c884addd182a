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
  (PAE mean, fresh x_T per output) and both: mean pairwise identity-feature distance, pixel RMS distance
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
from pada.evaluation.metrics import Critic, embed, predict_ages, psnr, ssim

DEFAULT_TARGETS = ("twenties", "forties", "sixties", "eighties")

#: diversity modes: name -> (high_diversity, low_diversity) switches of ``AgingPipeline.age``
DIVERSITY_MODES = {"high": (True, False), "low": (False, True), "both": (True, True)}

FID_FEATURES = ("sface", "dlib-age", "inception", "none")


#: default candidates of the linear baseline's strength (wide, so that one of them can match PADA's ID)
#: (the shipped 64 px model needed strength 16 to come down to PADA's identity similarity)
BASELINE_STRENGTHS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0)


@dataclass
class EvalConfig:
    """Settings of one evaluation run.

    ``main_mode`` picks which diversity mode's outputs give the headline Age MAE / ID / FD (default
    ``"high"``: PAE samples decoded from the inverted x_T of the input, the faithful edit path).
    ``seed``: source ``i`` is aged with seed ``seed + i``. ``max_images``: first K test faces (None: all).
    ``fid_max_real``: at most this many real images per group for the Fréchet distance.
    ``baseline_strengths``: candidates of the linear baseline's strength; the search runs on the first
    ``baseline_search_images`` faces. ``text_eps``: PADA's text-driven sampling intensity ε for the
    runs (None: the model's own, the paper's 1e-3); the baseline has no PAE and ignores it.
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
    baseline_fit_images: int = 512
    fid_max_real: int = 1000
    text_eps: float | None = None

    def __post_init__(self) -> None:
        if self.main_mode not in DIVERSITY_MODES:
            raise PadaError(f"main_mode must be one of {sorted(DIVERSITY_MODES)}, got {self.main_mode!r}")
        if self.n_outputs < 1:
            raise PadaError(f"n_outputs must be >= 1, got {self.n_outputs}")
        for t in self.targets:
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


def load_critics(age: str = "dlib-age", identity: str = "sface", fid: str = "sface", device: str = "cpu",
                 age_weights: str | None = None, inception_weights: str | None = None) -> Critics:
    """Critics from the registry. ``fid``: ``sface`` (identity embeddings), ``dlib-age`` (penultimate
    features of the age network), ``inception`` (TF-FID Inception-v3, weights supplied by the user) or
    ``none``."""
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
    return Critics(age_c, id_c, fid_fn, {"age": age, "identity": identity, "fid_features": fid})


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
    idx = list(range(len(ds)))[: max_images or None]
    items = [ds[i] for i in idx]
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
                    source=f"{root} ({split} split, {len(items)} faces)")


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


class _Accumulator:
    """Per (target, mode) sums of the metrics over sources."""

    def __init__(self) -> None:
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
        if self.div_id:
            out.update(diversity_id=_mean(self.div_id), diversity_pixel=_mean(self.div_px),
                       diversity_age_std=_mean(self.age_std))
        return out


def _measure(acc: _Accumulator, critics: Critics, source: torch.Tensor, outs: torch.Tensor,
             target_age: float, bs: int, with_fid: bool) -> None:
    """Add the metrics of ``outs (N, 3, S, S)``, the outputs for one ``source (1, 3, S, S)``."""
    ages = predict_ages(critics.age, outs, bs)
    acc.ages.append(ages)
    acc.abs_err.append((ages - target_age).abs())
    e = embed(critics.identity, torch.cat([source, outs]), bs)  # (1 + N, D) unit
    acc.id_sim.append(e[1:] @ e[0])
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
                      fid_cache: dict[int, torch.Tensor] | None = None) -> dict[str, Any]:
    """Age every test face to every target and measure (see module docstring).

    ``pipeline``: anything with ``age(image (1,3,S,S), *, text, n, seed, high_diversity, low_diversity,
    steps, **age_kwargs)`` returning an object with ``images (n, 3, S, S)``. ``modes``: which diversity
    modes to run (default: only ``cfg.main_mode``, or all three when ``cfg.diversity``).

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
    for word in cfg.targets:
        g = group_by_word(word)
        accs = {m: _Accumulator() for m in modes}
        for i in range(data.images.shape[0]):
            x = data.images[i:i + 1]
            text = description(g, data.genders[i])
            for m in modes:
                hi, lo = DIVERSITY_MODES[m]
                res = pipeline.age(x, text=text, n=n, seed=cfg.seed + i, high_diversity=hi, low_diversity=lo,
                                   steps=cfg.steps, **(age_kwargs or {}))
                _measure(accs[m], critics, x, _images_of(res), g.center, cfg.batch_size,
                         with_fid=m == cfg.main_mode)
        main = accs[cfg.main_mode]
        entry: dict[str, Any] = {"target_age": g.center, "group": g.name,
                                 "description_example": description(g, data.genders[0])}
        entry.update(main.summary())
        entry.update(_frechet(critics, data, g, main.feats, cfg, fid_cache))
        entry["modes"] = {m: a.summary() for m, a in accs.items()}
        per_target[word] = entry
        _log(f"  {word}: age MAE {entry['age_mae']:.2f}, ID {entry['id_similarity']:.4f}", verbose)
    overall = {k: _mean([per_target[w][k] for w in cfg.targets])
               for k in ("age_mae", "id_similarity", "fd")}
    overall["modes"] = {m: {k: _mean([per_target[w]["modes"][m].get(k) for w in cfg.targets])
                            for k in ("age_mae", "id_similarity", "diversity_id", "diversity_pixel",
                                      "diversity_age_std")} for m in modes}
    return {"per_target": per_target, "overall": overall, "n_outputs": n,
            "seconds": time.perf_counter() - t_start}


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
    """The strength from ``cfg.baseline_strengths`` whose mean ID (over the first
    ``baseline_search_images`` faces and all targets, one output each) is closest to ``target_id``."""
    k = min(cfg.baseline_search_images, data.images.shape[0])
    table = []
    for s in cfg.baseline_strengths:
        sims = []
        for word in cfg.targets:
            g = group_by_word(word)
            for i in range(k):
                x = data.images[i:i + 1]
                res = baseline.age(x, text=description(g, data.genders[i]), n=1, seed=cfg.seed + i,
                                   high_diversity=False, low_diversity=False, steps=cfg.steps, strength=s)
                e = embed(critics.identity, torch.cat([x, _images_of(res)]), cfg.batch_size)
                sims.append(float(e[1] @ e[0]))
        table.append({"strength": float(s), "id_similarity": _mean(sims)})
    best = min(table, key=lambda r: abs(r["id_similarity"] - target_id))
    return best["strength"], table


# --------------------------------------------------------------------------------------------------
# whole runs
# --------------------------------------------------------------------------------------------------
def run_evaluation(models: dict[str, Any], data: EvalData, critics: Critics, cfg: EvalConfig, *,
                   baseline: Any = None, baseline_note: str = "", verbose: bool = False,
                   training_critics: dict[str, str] | None = None) -> dict[str, Any]:
    """Evaluate one or more pipelines (``models``: name -> pipeline; several = ablation table) and,
    when ``baseline`` is given and ``cfg.baseline``, the linear baseline at the first model's ID.

    Reconstruction and diversity are measured for the first model only (they depend on the DiffAE and
    on sampling, not on the ablated loss); the other models get the main metrics.
    """
    if not models:
        raise PadaError("no model to evaluate")
    report: dict[str, Any] = {
        "protocol": "PADA §4 (Tables 1 and 3), offline evaluators; see docs/evaluation.md",
        "config": asdict(cfg), "critics": critics.names, "data": data.source,
        "n_faces": int(data.images.shape[0]), "models": {}, "notes": [],
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
    for name, pipe in models.items():
        _log(f"evaluating {name}", verbose)
        is_first = name == first
        sub = evaluate_pipeline(pipe, data, critics, cfg, verbose=verbose, fid_cache=fid_cache,
                                modes=None if is_first else [cfg.main_mode],
                                age_kwargs=None if cfg.text_eps is None else {"eps": cfg.text_eps})
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
                                fid_cache=fid_cache, age_kwargs={"strength": strength})
        sub.update(strength=strength, strength_search=table, matched_to=first, note=baseline_note)
        report["baseline"] = sub
    return report


def _fmt(v: Any, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def to_markdown(report: dict[str, Any]) -> str:
    """Markdown tables of a report: per model and target, then the overall / ablation table."""
    lines = [f"Data: {report['data']}; critics: {report['critics']}; N = {report['config']['n_outputs']}", ""]
    rows = dict(report["models"])
    if "baseline" in report:
        rows[f"DiffAE linear (strength {report['baseline']['strength']:g})"] = report["baseline"]
    lines += ["| model | target | Age MAE ↓ | mean age | ID ↑ | FD ↓ | div-ID (high/low/both) | div-px |",
              "|---|---|---|---|---|---|---|---|"]
    for name, sub in rows.items():
        for word, e in sub["per_target"].items():
            modes = e.get("modes", {})
            div = "/".join(_fmt(modes.get(m, {}).get("diversity_id"), 4) for m in DIVERSITY_MODES)
            px = "/".join(_fmt(modes.get(m, {}).get("diversity_pixel"), 3) for m in DIVERSITY_MODES)
            lines.append(f"| {name} | {word} ({e['target_age']:g}) | {_fmt(e['age_mae'])} | "
                         f"{_fmt(e['age_mean'], 1)} | {_fmt(e['id_similarity'], 4)} | {_fmt(e.get('fd'))} | "
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
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into folder ``out`` (atomically). Returns both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (("report.json", json.dumps(report, indent=1, default=float)),
                       ("report.md", to_markdown(report))):
        p = out / name
        tmp = p.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(p)
        paths.append(p)
    return paths[0], paths[1]


__all__ = ["AGE_GROUPS", "Critics", "DIVERSITY_MODES", "EvalConfig", "EvalData", "evaluate_pipeline",
           "fit_baseline_direction", "load_critics", "load_eval_data", "reconstruction_metrics",
           "run_evaluation", "search_baseline_strength", "to_markdown", "write_report"]
