"""``pada evaluate --model PADA.safetensors --data DIR [options]``: the paper's §4 metrics.

See docs/evaluation.md for the protocol and what differs from the paper.

Ages the test split of a folder of aligned, labelled faces to each target group and reports Age MAE,
identity similarity, a Fréchet distance to real faces of that group, diversity (high-level / low-level /
both), DiffAE reconstruction PSNR/SSIM and the DiffAE linear baseline at matched identity. With
``--ablation NAME=PATH`` (repeatable) several checkpoints are compared side by side (Table 3).
Scores that catch broken outputs: YuNet face-found rate and high-frequency energy ratio per target,
lifespan monotonicity (Spearman), reference-guided aging (``--ref`` moves toward the reference's age?),
and the issue-15 acceptance checks. ``--quick``: a few faces, minutes on 2 CPU cores.

Writes ``report.json`` and ``report.md`` to ``--out`` and prints the markdown table, ending with a
one-screen summary.
"""

from __future__ import annotations

import argparse
import json
import sys

from pada.cli.age import DEFAULT_MODEL, SAMPLER_CHOICES
from pada.errors import PadaError
from pada.validation import LIMITS, float_option, floats_option, int_option, key_value_option


def _words(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split(",") if w.strip())


_ablation = key_value_option("NAME=PATH")
_option = key_value_option("NAME=VALUE", literal=True)  # VALUE: JSON (numbers, true/false) or else text


def _run(args: argparse.Namespace) -> int:
    import torch

    from pada.app.service import image_size_of
    from pada.evaluation.runner import load_critics, load_eval_data, run_evaluation

    cfg = _eval_config(args)  # also fills args' --quick defaults
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    from pada.diffusion.samplers import get_sampler

    steps = args.steps or get_sampler(args.sampler).default_steps
    models = _load_models(args, device, steps)
    main = models[args.name]
    if args.max_shift is not None:  # an inference-time bound on the latent shift, for every PADA model
        from pada.evaluation.runner import apply_max_shift

        trained = {name: apply_max_shift(pipe, args.max_shift) for name, pipe in models.items()}
    size = image_size_of(main)
    data = load_eval_data(args.data, size, labels=args.labels, split=args.split,
                          test_fraction=args.test_fraction, max_images=args.max_images)
    critics = load_critics(args.age_critic, args.id_critic, args.fid_features, device=device,
                           age_weights=args.age_weights, inception_weights=args.inception_weights,
                           faces=not args.no_face_check)
    baseline, note = _baseline(args, cfg, main, data, size, device, steps) if cfg.baseline else (None, "")
    training = {"age": main.model.cfg.age_critic, "identity": main.model.cfg.id_critic}
    examples: dict = {}
    report = run_evaluation(models, data, critics, cfg, baseline=baseline, baseline_note=note,
                            verbose=not args.quiet, training_critics=training, examples=examples)
    report["model_paths"] = {args.name: str(args.model), **{n: p for n, p in args.ablation}}
    if args.max_shift is not None:
        report["max_shift"] = {"inference": args.max_shift, "trained": trained}
        report["notes"].append(f"evaluated with an inference-time latent-shift bound max_shift = "
                               f"{args.max_shift:g} (trained with {trained})")
    _write_and_print(args, report, examples, data)
    return 0


# The steps of _run.
def _eval_config(args: argparse.Namespace):
    """The :class:`~pada.evaluation.runner.EvalConfig` of the options (an explicit option wins over
    ``--quick``'s preset; the preset's ``max_images``, ``steps`` and ``fid_features`` are written to args)."""
    from pada.evaluation.runner import BASELINE_STRENGTHS, DEFAULT_TARGETS, QUICK_PRESET, EvalConfig

    quick = QUICK_PRESET if args.quick else {}

    def pick(given, key, default):
        return given if given is not None else quick.get(key, default)

    args.max_images = pick(args.max_images, "max_images", None)
    args.steps = pick(args.steps, "steps", None)
    args.fid_features = pick(args.fid_features, "fid_features", "sface")
    return EvalConfig(targets=pick(args.targets, "targets", DEFAULT_TARGETS),
                      n_outputs=pick(args.n, "n_outputs", 4), seed=args.seed, steps=args.steps,
                      max_images=args.max_images, batch_size=args.batch_size, main_mode=args.main_mode,
                      diversity=not args.no_diversity,
                      reconstruction=not args.no_reconstruction and quick.get("reconstruction", True),
                      baseline=not args.no_baseline and quick.get("baseline", True),
                      baseline_strengths=args.baseline_strengths or BASELINE_STRENGTHS,
                      baseline_search_images=args.baseline_search_images,
                      baseline_refine=args.baseline_refine, fid_max_real=args.fid_max_real,
                      text_eps=args.eps, lifespan=not args.no_lifespan and quick.get("lifespan", True),
                      reference=not args.no_reference,
                      diversity_targets=pick(args.diversity_targets, "diversity_targets", None),
                      pipeline_options=dict(args.pipeline_option))


def _load_models(args: argparse.Namespace, device: str, steps: int) -> dict:
    """``{name: AgingPipeline}``: the main model, then each ``--ablation`` (sharing the main model's frozen
    DiffAE and vision-language model when they are the same)."""
    from pada.aging.model import PadaModel
    from pada.aging.pipeline import AgingPipeline, resolve_model

    main = AgingPipeline.from_pretrained(args.model, device=device, steps=steps,
                                         trust_pickle=args.trust_pickle, sampler=args.sampler)
    models = {args.name: main}
    for name, path in args.ablation:
        if name in models:
            raise PadaError(f"--ablation {name}={path}: the name {name!r} is used twice")
        pcfg = PadaModel.read_config(resolve_model(path))
        same = (pcfg.diffae, pcfg.vl) == (main.model.cfg.diffae, main.model.cfg.vl)
        shared = {"diffae": main.diffae, "vl": main.vl} if same else {}  # load the frozen models once
        models[name] = AgingPipeline.from_pretrained(path, device=device, steps=steps, sampler=args.sampler,
                                                     trust_pickle=args.trust_pickle, **shared)
    return models


def _baseline(args: argparse.Namespace, cfg, main, data, size: int, device: str, steps: int):
    """(the DiffAE linear baseline pipeline, a note on where its direction came from)."""
    from pada.aging.baseline import LinearAgeDirection, LinearBaselinePipeline
    from pada.evaluation.runner import fit_baseline_direction

    if args.baseline_direction:
        direction = LinearAgeDirection.load(args.baseline_direction)
        note = f"loaded {args.baseline_direction}"
    else:
        direction, note = fit_baseline_direction(main, args.data, size, cfg, labels=args.labels,
                                                 test_fraction=args.test_fraction, eval_data=data)
    # the baseline samples as PADA does: the same sampler, steps and guards (the model's or the option's)
    options, pcfg = dict(args.pipeline_option), main.model.cfg
    pipe = LinearBaselinePipeline(main.diffae, direction, device=device, steps=steps, sampler=main.sampler,
                                  tone_guard=options.get("tone_guard", pcfg.tone_guard),
                                  background_guard=options.get("background_guard", pcfg.background_guard),
                                  saturation_guard=options.get("saturation_guard", pcfg.saturation_guard),
                                  blotch_guard=options.get("blotch_guard", pcfg.blotch_guard),
                                  structure_guard=options.get("structure_guard", pcfg.structure_guard),
                                  contrast_bound=options.get("contrast_bound", pcfg.contrast_bound),
                                  low_noise=options.get("low_noise", pcfg.low_noise))
    return pipe, note


def _write_and_print(args: argparse.Namespace, report: dict, examples: dict, data) -> None:
    from pada.evaluation.runner import summary_table, to_markdown, write_report

    if args.out:
        js, md = write_report(report, args.out, examples=examples, sources=data.images)
        print(f"wrote {js} and {md}", file=sys.stderr)
    print(json.dumps(report, indent=1, default=float) + "\n" if args.json else to_markdown(report), end="")
    if args.json and not args.quiet:  # the markdown ends with the summary; keep JSON on stdout clean
        print(summary_table(report), file=sys.stderr, end="")


def add_parser(sub) -> None:
    from pada.evaluation.runner import DEFAULT_TARGETS, DIVERSITY_MODES, FID_FEATURES

    p = sub.add_parser("evaluate", help="age MAE, identity, Fréchet distance, diversity, baseline, ablations",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"PADA model file (.safetensors) or registry name (default {DEFAULT_MODEL})")
    p.add_argument("--name", default="PADA", help="name of --model in the tables (default PADA)")
    p.add_argument("--ablation", action="append", type=_ablation, default=[], metavar="NAME=PATH",
                   help="another checkpoint to compare (repeat; e.g. 'w/o L_id=runs/no_id/pada.safetensors')")
    p.add_argument("--data", required=True, help="folder of aligned faces with labels.csv, or a demo set")
    p.add_argument("--labels", help="labels table (default: DIR/labels.csv)")
    p.add_argument("--split", choices=("test", "all"), default="test", help="which faces (default test)")
    p.add_argument("--test-fraction", type=float_option(0.0, 1.0, lo_open=True, hi_open=True), default=0.05,
                   help="test split fraction used in training")
    p.add_argument("--targets", type=_words, default=None,
                   help=f"comma-separated age-group words (default all: {','.join(DEFAULT_TARGETS)})")
    p.add_argument("--n", type=int_option(1, LIMITS["n"]), default=None,
                   help="outputs per face and target (default 4)")
    p.add_argument("--seed", type=int_option(0, LIMITS["seed"]), default=0)
    p.add_argument("--sampler", choices=SAMPLER_CHOICES, default="ddim",
                   help="ddim (default: the paper's protocol, which the numbers in docs/ use) or multistep "
                        "(what `pada age` runs by default)")
    p.add_argument("--steps", type=int_option(1, LIMITS["steps"]), default=None,
                   help="sampler steps T (default: the sampler's, ddim 25 / multistep 8; --quick: 10)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow a DiffAE checkpoint that needs unpickling (only files you trust)")
    p.add_argument("--max-images", type=int_option(1, LIMITS["images"]), default=None,
                   help="evaluate only the first K test faces")
    p.add_argument("--batch-size", type=int_option(1, LIMITS["batch_size"]), default=16,
                   help="critic batch size")
    p.add_argument("--main-mode", choices=sorted(DIVERSITY_MODES), default="high",
                   help="diversity mode of the headline metrics (default high: PAE samples, inverted x_T)")
    p.add_argument("--age-critic", default="dlib-age", help="age estimator for Age MAE (dlib-age, dex)")
    p.add_argument("--age-weights", help="explicit weight file of the age estimator")
    p.add_argument("--id-critic", default="sface", help="identity network for ID (default sface)")
    p.add_argument("--fid-features", choices=FID_FEATURES, default=None,
                   help="features of the Fréchet distance (inception needs the pytorch-fid weight file)")
    p.add_argument("--inception-weights", help="path of pt_inception-2015-12-05-6726825d.pth")
    p.add_argument("--fid-max-real", type=int_option(2, LIMITS["images"]), default=1000,
                   help="real images per group for the distance")
    p.add_argument("--no-diversity", action="store_true", help="skip the low-level / both diversity runs")
    p.add_argument("--no-reconstruction", action="store_true", help="skip reconstruction PSNR/SSIM")
    p.add_argument("--no-baseline", action="store_true", help="skip the DiffAE linear baseline")
    p.add_argument("--baseline-direction", help="LinearAgeDirection file (default: fit on train split)")
    p.add_argument("--baseline-strengths", type=floats_option(0.0, 1000.0), default=None,
                   help="strengths searched to match PADA's identity similarity "
                        "(default 0.5,1,2,4,8,12,16,24)")
    p.add_argument("--eps", type=float_option(0.0, LIMITS["eps"]), default=None,
                   help="PADA's text-driven sampling intensity ε (default: the model's, the paper's 1e-3)")
    p.add_argument("--baseline-search-images", type=int_option(1, LIMITS["images"]), default=8)
    p.add_argument("--baseline-refine", type=int_option(0, 20), default=3, metavar="N",
                   help="bisection steps after the strength grid, toward the model's ID (default 3)")
    p.add_argument("--quick", action="store_true",
                   help="fast model comparison: 4 faces, N 2, 10 DDIM steps, all targets, diversity on "
                        "'sixties' only, no lifespan sweep / baseline / reconstruction / FD (explicit "
                        "options win)")
    p.add_argument("--no-lifespan", action="store_true", help="skip the lifespan monotonicity sweeps")
    p.add_argument("--no-reference", action="store_true", help="skip the reference-guided (--ref) check")
    p.add_argument("--no-face-check", action="store_true", help="skip the YuNet face-found rate")
    p.add_argument("--diversity-targets", type=_words, default=None,
                   help="targets of the low/both diversity runs (default: every target)")
    p.add_argument("--max-shift", type=float_option(0.0, 100.0, hi_open=True), default=None,
                   help="evaluate with this inference-time bound on the latent shift: ||z_age - z_src|| "
                        "saturates at MAX_SHIFT * ||z_src|| (0 = no bound; default: the model's own)")
    p.add_argument("--pipeline-option", action="append", type=_option, default=[], metavar="NAME=VALUE",
                   help="extra keyword for the PADA pipeline's age()/lifespan() (repeat), e.g. eta=0.5; "
                        "an unknown name is an error")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="folder for report.json and report.md")
    p.add_argument("--json", action="store_true", help="print the JSON report instead of markdown")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=_run)
