"""``pada age PHOTO --age 70 -n 4 --out aged.png``: pluralistic face aging of a photo or a folder.

Detects and FFHQ-aligns the largest face of PHOTO (every face with ``--all-faces``; ``--aligned`` when PHOTO
already is an aligned crop), ages it with a trained PADA model (:class:`pada.aging.pipeline.AgingPipeline`;
default: the shipped ``pada-demo64``) towards each target and writes a labelled grid: one row per target,
the input (then the reference), then N results, each captioned with its estimated age. Targets: ``--age 65``
(or ``--age 10,30,50,70``: a number of years becomes its age group's description for the face's gender),
``--text "woman's face in her forties"`` (repeatable), ``--ref FACE.jpg``, or text and reference together.
``--lifespan`` writes a child-to-old row (grid + GIF) instead. ``--paste-back`` also writes the whole photo
with every aged face blended in (feathered face mask, colour-matched). ``--example`` ages the shipped
public-domain portrait of Grace Hopper.

PHOTO may be a folder: every image in it is aged into OUTDIR (``--out``, default ``aged/``) with a CSV of
results (file, face, target, estimated output age, identity score); files already in the CSV are skipped,
so an interrupted run resumes; a bad file gets one line on stderr and the run goes on (exit status 1 at the
end if any failed).

Diversity: the PAE is sampled per output (high-level variation: face shape, skin; ``--no-high-diversity``
uses its mean; ``--draw-spread`` sets how far the draws spread across age, ``--spread-cap`` bounds that
spread by each draw's own edit, ``--draw-pattern`` how far each one's hair ages against the edit's);
``--low-diversity`` starts
every output from the input's inverted x_T mixed with fresh noise of its own (low-level variation: fine
lines and strands; ``--low-noise`` sets the share, 1 = fresh noise alone). Every output is reproducible
from ``--seed``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pada.errors import PadaError
from pada.validation import LIMITS, float_option, int_option

DEFAULT_MODEL = "pada-demo64"  # registry name of the shipped small default model (64x64, demo faces)
# The named samplers, default first. Written out so that parsing options needs no torch; a test checks them
# against pada.diffusion.samplers (SAMPLERS, AGING_SAMPLER, default_steps).
SAMPLER_CHOICES = ("multistep", "ddim")
SAMPLER_HELP = ("multistep (default: 2nd-order ODE solver on even log-SNR steps, near the exact ODE result "
                "in 8 steps) or ddim (the paper's, 25 steps); docs/speed.md")


def _gain_spec(text: str) -> str:
    """argparse ``type=`` of ``--shift-gain``: a valid "AGE:GAIN,..." spec ("" = off)."""
    from pada.aging.gain import parse_shift_gain

    try:
        parse_shift_gain(text)
    except PadaError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def _add_edit_options(p: argparse.ArgumentParser) -> None:
    """The options of how each result's edit is made (PAE sampling, spread, gain, length, guards); each
    defaults to the model's own setting."""
    p.add_argument("--eps", type=float_option(0.0, LIMITS["eps"]), default=None,
                   help="text-driven PAE sampling intensity ε (default: the model's; the paper's 1e-3). "
                        "Larger = more high-level variety, less text fidelity")
    p.add_argument("--draw-spread", type=float_option(0.0, 1.0), default=None, metavar="S",
                   help="spread the N results across the shift subspace by about S*|z| (default: the "
                        "model's; 0.14 for pada-demo64: visibly different results at a cost in identity; "
                        "0 = only the learned draws; docs/pada_method.md)")
    p.add_argument("--spread-cap", type=float_option(0.0, 10.0), default=None, metavar="C",
                   help="shorten each result's spread to at most C times the length of its own edit, so "
                        "results asked for little change (a target near the face's age) differ little and "
                        "keep the face (default: the model's; 0.5 for pada-demo64; 0 = no cap; "
                        "docs/pada_method.md)")
    p.add_argument("--draw-pattern", type=float_option(0.0, 10.0), default=None, metavar="T",
                   help="scale each result's change to the hair by 1 + t, t ~ N(0, T^2) clipped to +-1, so "
                        "the N results differ in how far the hair ages (default: the model's; 0 = off; "
                        "needs a DiffAE with an eigenface coarse code, as pada-demo64's; "
                        "docs/pada_method.md)")
    p.add_argument("--shift-gain", type=_gain_spec, default=None, metavar="AGE:GAIN,...",
                   help="scale the edit by target age, piecewise-linear through the knots, e.g. "
                        "\"30.5:1,60.5:1.5\" (default: the model's; \"43:1,60.5:1.3,80:1.6\" for "
                        "pada-demo64; \"\" = off; docs/pada_method.md)")
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=None,
                   help="pick each face's edit length first: the edit rendered at 5 lengths, the one whose "
                        "age (read by the vision-language model) is nearest the target (5 extra renders per "
                        "target, or per anchor of --lifespan; default: the model's, on for pada-demo64; "
                        "docs/pada_method.md)")
    p.add_argument("--tone-guard", type=float_option(0.0, 1.0, hi_open=True), default=None, metavar="M",
                   help="keep the skin's smoothed brightness within M (0-1 scale) of the input's while "
                        "sampling: no darkened eye sockets, no washed-out face (default: the model's, 0.1 "
                        "for pada-demo64; 0 = off; docs/pada_method.md)")
    p.add_argument("--background-guard", type=float_option(0.0, 1.0, hi_open=True), default=None,
                   metavar="M", help="keep the crop's smoothed colour outside the head within M (0-1 scale) "
                   "of the input's while sampling: no whitened or darkened backdrop (default: the model's, "
                   "0.05 for pada-demo64; 0 = off; docs/pada_method.md)")
    p.add_argument("--saturation-guard", type=float_option(0.0, 1.0, hi_open=True), default=None,
                   metavar="M", help="keep the head's smoothed colour strength at most M (0-1 scale) above "
                   "the input's while sampling: hair may grey, but not turn orange, and the skin is not "
                   "warmed (default: the model's, 0.01 for pada-demo64; 0 = off; docs/pada_method.md)")
    p.add_argument("--patch-guard", type=float_option(0.0, 1.0, hi_open=True), default=None, metavar="G",
                   help="with --calibrate, leave out edit lengths whose render's skin colour changed "
                   "unevenly (a patchwork of pale, red or grey regions; the patch score above G, e.g. "
                   "0.02): cleaner old faces that age less (default: the model's, 0 = off; "
                   "docs/pada_method.md)")
    p.add_argument("--young-cap", type=float_option(0.0, 1.5), default=None, metavar="C",
                   help="with --calibrate, a target younger than the face gets edits of at most C times the "
                   "model's own edit: the long young edits darken the eyes and brows (default: the "
                   "model's, 0.5 for pada-demo64; 0 = no cap; a --lifespan is capped only when this is "
                   "given; docs/pada_method.md)")
    p.add_argument("--blotch-guard", type=float_option(0.0, 1.0, hi_open=True), default=None, metavar="B",
                   help="render again, with a shorter edit, every result whose skin brightness changed "
                   "unevenly (a pale blob on the forehead, a grey smear at the mouth, dark eye sockets; "
                   "the blotch score above B): cleaner results that age less (default: the model's, 0.06 "
                   "for pada-demo64; 0 = off; docs/pada_method.md)")
    p.add_argument("--structure-guard", type=float_option(0.0, 1.0, hi_open=True), default=None, metavar="S",
                   help="render again, with a shorter edit, every result whose skin lost its structure (a "
                   "pale or grey mask over the face, smeared eyes or mouth, mottled skin; the structure "
                   "score above S): fewer broken results that age less (default: the model's, 0.13 for "
                   "pada-demo64; 0 = off; docs/pada_method.md)")
    p.add_argument("--contrast-bound", type=float_option(0.0, 10.0), default=None, metavar="R",
                   help="shorten every edit, before it is rendered, so that it changes the model's coarse "
                   "image by at most R times the face's own coarse contrast (e.g. 0.5): a pale, low-contrast "
                   "face is not drowned by the old-age pattern the edit adds (default: the model's, 0.5 for "
                   "pada-demo64; 0 = off; "
                   "needs a DiffAE with a coarse image path; docs/pada_method.md)")
    p.add_argument("--hold-gender", action=argparse.BooleanOptionalAction, default=None,
                   help="take the gender direction out of every edit, so that aging a woman toward eighty "
                        "does not make her a man (default: the model's, on for pada-demo64; needs a model "
                        "that carries the direction; docs/pada_method.md)")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("age", help="age the faces of a photo or folder (age, text or reference face)",
                              description=__doc__.split("\n\n", 1)[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photo", type=Path, nargs="?", default=None,
                   help="photo with faces, a folder of photos, or an aligned crop with --aligned")
    p.add_argument("--example", action="store_true",
                   help="age the shipped sample photo (Grace Hopper, public domain) instead of PHOTO")
    p.add_argument("--age", action="append", default=[], metavar="YEARS",
                   help="target age in years; a comma list (10,30,50,70) or repeated gives one row each")
    p.add_argument("--text", action="append", default=[],
                   help="target age description, e.g. \"woman's face in her forties\" (repeatable)")
    p.add_argument("--ref", type=Path, default=None, help="reference face photo giving the target age")
    p.add_argument("-n", "--num", type=int_option(1, LIMITS["n"]), default=4,
                   help=f"results per face and target (default 4, at most {LIMITS['n']})")
    p.add_argument("--out", type=Path, default=None,
                   help="output grid (default aged.png); with a folder PHOTO: output folder (default aged/)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"trained PADA model: .safetensors path or registry name (default {DEFAULT_MODEL})")
    p.add_argument("--seed", type=int_option(0, LIMITS["seed"]), default=0,
                   help="seed of the request (output i uses its own stream)")
    p.add_argument("--sampler", choices=SAMPLER_CHOICES, default=SAMPLER_CHOICES[0], help=SAMPLER_HELP)
    p.add_argument("--steps", type=int_option(1, LIMITS["steps"]), default=None,
                   help="sampler steps T of the render, and of the inversion unless --inversion-steps "
                        "(default: the sampler's; `--sampler ddim --steps 25` is the paper's setting)")
    p.add_argument("--inversion-steps", type=int_option(1, LIMITS["steps"]), default=None, metavar="N",
                   help="steps of the inversion alone (default: --steps); docs/speed.md measures "
                        "the trade")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow a DiffAE checkpoint that needs unpickling (only files you trust)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-high-diversity", action="store_true", help="use the PAE mean instead of samples")
    p.add_argument("--low-diversity", action="store_true",
                   help="low-level variety: every result starts from the inverted x_T mixed with fresh "
                        "noise of its own (--low-noise), so fine detail (lines, strands) differs between "
                        "results")
    p.add_argument("--low-noise", type=float_option(0.0, 1.0, lo_open=True), default=None, metavar="S",
                   help="the share of fresh noise in each result's start with --low-diversity (which it "
                        "implies), sqrt(1-S^2)*x_T + S*noise (default: the model's; 1 = fresh noise alone, "
                        "which draws the face anew, on the demo DiffAE mottled and often as someone else)")
    _add_edit_options(p)
    p.add_argument("--text-weight", type=float_option(0.0, 1.0), default=0.5,
                   help="with --text and --ref: how far the PAE mean moves toward the text (0..1)")
    p.add_argument("--lifespan", action="store_true", help="child-to-old sweep: grid + GIF (see --gif)")
    p.add_argument("--gender", choices=("female", "male"), default=None,
                   help="gender used to turn --age into text and for lifespan anchors (default: estimated)")
    p.add_argument("--frames", type=int_option(1, LIMITS["frames"]), default=3,
                   help="lifespan frames per age gap (default 3)")
    p.add_argument("--gif", type=Path, default=None, help="lifespan GIF path (default: --out with .gif)")
    p.add_argument("--space-lifespan", action=argparse.BooleanOptionalAction, default=None,
                   help="--lifespan: shorten the anchors so the face changes step by step away from its own "
                        "age (default: the model's)")
    p.add_argument("--out-size", type=int_option(16, LIMITS["out_size"]), default=256, metavar="S",
                   help="side of the written faces in pixels (default 256): the model ages its own size "
                        "(64 for pada-demo64) and the edit is carried onto the photo's S px crop of the "
                        "face, which keeps the photo's sharpness (one more render per target; "
                        "docs/pada_method.md, 'Detail transfer'); an --aligned crop is never enlarged; "
                        "the model's size writes its own outputs")
    p.add_argument("--keep-background", action=argparse.BooleanOptionalAction, default=True,
                   help="with --out-size above the model's: carry the edit onto the head only (face and "
                        "hair), keeping the photo's background and clothes (default: on)")
    p.add_argument("--relative-detail", action=argparse.BooleanOptionalAction, default=True,
                   help="with --out-size above the model's: scale the photo's fine detail with the edit's "
                        "change of tone, so lightened hair keeps its strands instead of a pale haze "
                        "(default: on; --no-relative-detail gives the transfer before session 39)")
    p.add_argument("--paste-back", action="store_true",
                   help="also write the whole photo with the aged faces blended in (per target and result)")
    p.add_argument("--all-faces", action="store_true", help="age every detected face, not only the largest")
    p.add_argument("--max-faces", type=int_option(1, 256), default=8,
                   help="with --all-faces: at most this many (largest first)")
    p.add_argument("--no-estimates", action="store_true",
                   help="skip the age / gender / identity estimates (critics) in captions and the CSV")
    p.add_argument("--aligned", action="store_true", help="PHOTO (and --ref) are already FFHQ-aligned crops")
    p.add_argument("--batch-size", type=int_option(1, LIMITS["batch_size"]), default=None,
                   help="decode at most this many results at once")
    p.set_defaults(func=run)
    return p


def pick_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise PadaError(f"--device {name}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PadaError(f"--device {name}: CUDA is not available on this machine")
    return dev


def load_pipeline(model: str, device, steps: int | None, trust_pickle: bool = False,
                  sampler: str = SAMPLER_CHOICES[0]):
    """The pipeline for ``--model`` (tests replace this function)."""
    from pada.aging.pipeline import AgingPipeline, resolve_model

    try:
        path = resolve_model(model)
    except PadaError as exc:
        if model == DEFAULT_MODEL:  # says why (missing, or a file that fails its checksum) and what to do
            raise PadaError(f"no trained PADA model is available (the default): {exc}") from None
        raise
    return AgingPipeline.from_pretrained(path, device=device, steps=steps, trust_pickle=trust_pickle,
                                         sampler=sampler)


def _load_face(path: Path, size: int, aligned: bool):
    """(aligned tensor (3, S, S), AlignedFace or None, original uint8 photo or None)."""
    from pada.faces.align import face_tensors
    from pada.faces.io import load_image

    original = load_image(path)
    x, face = face_tensors(original, size, aligned=aligned, name=str(path))[0]
    return x, face, None if aligned else original


def _out_size(args: argparse.Namespace, size: int) -> int | None:
    """The sharp crops' side for ``--out-size`` (None: the model's own outputs are written)."""
    if args.out_size < size:
        raise PadaError(f"--out-size {args.out_size}: must be at least the model's face size ({size} px)")
    return None if args.out_size == size else args.out_size


def _targets(args: argparse.Namespace):
    from pada.aging.photo import make_targets, parse_ages

    ages = [a for spec in args.age for a in parse_ages(spec)]
    texts = [t for t in args.text if t is not None]
    for t in texts:
        if not t.strip():
            raise PadaError("--text: the target description is empty")
        if "\n" in t or "\r" in t:
            raise PadaError("--text: the target description must be one line")
    return make_targets(texts, ages, ref=args.ref is not None)


def _photo(args: argparse.Namespace) -> Path:
    if args.example:
        if args.photo is not None:
            raise PadaError(f"give either PHOTO ({args.photo}) or --example, not both")
        from pada.faces.samples import example_photo

        return example_photo()
    if args.photo is None:
        raise PadaError("give a photo: pada age PHOTO --age 70 (or try the shipped sample photo: "
                        "pada age --example --age 70)")
    if not args.photo.exists():
        raise PadaError(f"{args.photo}: no such file")
    return args.photo


def _out_name(out: Path, tag: str) -> Path:
    return out.with_name(f"{out.stem}_{tag}{out.suffix}")


def _pasted_path(out: Path, j: int, i: int, n_targets: int) -> Path:
    return _out_name(out, f"pasted_{i}" if n_targets == 1 else f"pasted_t{j}_{i}")


def _check_outputs(args: argparse.Namespace, out: Path) -> None:
    """Refuse unusable output paths before the model is loaded (one line naming the option)."""
    from pada.faces.io import IMAGE_SAVE_EXTENSIONS
    from pada.outputs import check_output_path

    check_output_path(out, extensions=IMAGE_SAVE_EXTENSIONS, option="--out")
    if args.lifespan:
        check_output_path(args.gif or out.with_suffix(".gif"), extensions=(".gif",), option="--gif")


class _Job:
    """Everything that stays the same across the photos of one run (model, critics, targets, options)."""

    def __init__(self, args: argparse.Namespace, pipe, critics, targets, ref, ref_tile, progress: bool):
        self.args, self.pipe, self.critics, self.targets = args, pipe, critics, targets
        self.gender_noted = False
        self.broken = 0  # results marked '!' (skin structure lost) over the run
        self.ref, self.ref_tile, self.progress = ref, ref_tile, progress
        self.size = int(pipe.diffae.unet.config.image_size)
        self.out_size = _out_size(args, self.size)

    def faces(self, path: Path):
        """(original photo or None, [FaceResult]) of the faces to age in ``path``."""
        from pada.aging.photo import FaceResult, sharp_crop
        from pada.faces.align import align_face, face_tensors
        from pada.faces.io import load_image, to_tensor

        a = self.args
        original = load_image(path)
        found = face_tensors(original, self.size, aligned=a.aligned, name=str(path), all_faces=a.all_faces)
        out = [FaceResult(k, face, x) for k, (x, face) in enumerate(found[: a.max_faces])]
        if self.out_size is not None:
            for fr in out:
                fr.image_hr, fr.face_hr = sharp_crop(original, fr.face, self.out_size, self.size)
        if a.aligned:
            return None, out
        if self.critics is not None:  # estimates on a 256 px crop (sharper than the model's size)
            import torch

            big = torch.cat([fr.image_hr[None] if fr.image_hr is not None and fr.image_hr.shape[-1] == 256
                             else to_tensor(align_face(original, fr.face.face, 256).image) for fr in out])
            for fr, (age, gender) in zip(out, self.critics.describe(big)):
                fr.est_age, fr.est_gender = age, gender
        return original, out

    def age(self, path: Path, out: Path) -> tuple[list[Path], list[dict]]:
        """Age one photo; write its grid(s) and pasted photos next to ``out``. Returns (files, CSV rows)."""
        from pada.aging.photo import age_faces, compose_photo, count_broken, face_grid
        from pada.faces.io import save_image
        from pada.outputs import StagedOutputs

        a = self.args
        original, faces = self.faces(path)
        for fr in faces:
            print(f"{path}: {fr.summary()}")
        if not a.gender and not self.gender_noted and any(t.age is not None for t in self.targets) \
                and any(fr.est_gender for fr in faces):
            self.gender_noted = True  # once per run
            print("note: --age becomes a description for each face's estimated gender, and the small offline "
                  "estimate is often wrong; pass --gender female / male when you know it", file=sys.stderr)
        age_faces(self.pipe, faces, self.targets, n=a.num, ref=self.ref, seed=a.seed, gender=a.gender,
                  critics=self.critics, progress=self.progress, high_diversity=not a.no_high_diversity,
                  low_diversity=a.low_diversity or a.low_noise is not None, low_noise=a.low_noise,
                  steps=a.steps, text_weight=a.text_weight, eps=a.eps,
                  batch_size=a.batch_size, what=str(out), inversion_steps=a.inversion_steps,
                  sampler=a.sampler, draw_spread=a.draw_spread, draw_pattern=a.draw_pattern,
                  spread_cap=a.spread_cap, young_cap=a.young_cap, shift_gain=a.shift_gain,
                  calibrate=a.calibrate, tone_guard=a.tone_guard, hold_gender=a.hold_gender,
                  background_guard=a.background_guard, saturation_guard=a.saturation_guard,
                  patch_guard=a.patch_guard, blotch_guard=a.blotch_guard,
                  structure_guard=a.structure_guard, contrast_bound=a.contrast_bound,
                  **({"keep_background": a.keep_background, "relative_detail": a.relative_detail}
                     if self.out_size else {}))
        with StagedOutputs() as staged:  # every output file of the photo, or none
            if a.paste_back:
                for j in range(len(self.targets)):
                    for i in range(a.num):
                        save_image(staged.stage(_pasted_path(out, j, i, len(self.targets))),
                                   compose_photo(original, faces, j, i))
            for fr in faces:
                dest = _out_name(out, f"face{fr.index}") if a.all_faces else out
                save_image(staged.stage(dest), face_grid(fr, self.targets, self.ref_tile))
            written = staged.commit()
        self.broken += count_broken(faces)
        rows = []
        for fr in faces:
            for j, t in enumerate(self.targets):
                for i in range(a.num):
                    rows.append({
                        "face": fr.index, "target": t.label, "text": fr.texts[j] or "", "result": i,
                        "input_age": _fmt(fr.est_age), "input_gender": fr.est_gender or "",
                        "output_age": _fmt(fr.out_ages[j][i] if fr.out_ages else None),
                        "identity": _fmt(fr.identity[j][i] if fr.identity else None, 3),
                        "structure": _fmt(fr.structure[j][i] if j < len(fr.structure) else None, 3),
                        "box": " ".join(f"{float(v):.0f}" for v in fr.face.face.box) if fr.face else ""})
        return written, rows


def _note_broken(job: _Job) -> None:
    """Say how many results are marked '!' (their skin lost its structure), if any."""
    from pada.aging.photo import BROKEN_NOTE

    if job.broken:
        print(BROKEN_NOTE.format(n=job.broken), file=sys.stderr)


def _fmt(v, digits: int = 1) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    photo = _photo(args)
    targets = _targets(args)
    if not targets and not args.lifespan:
        raise PadaError("give a target: --age 70, --text \"man's face in his sixties\", --ref FACE.jpg, "
                        "or --lifespan")
    if args.num < 1:
        raise PadaError(f"-n must be >= 1, got {args.num}")
    if args.paste_back and args.aligned:
        raise PadaError("--paste-back needs the original photo (not --aligned)")
    folder = photo.is_dir()
    if folder and args.lifespan:
        raise PadaError(f"{photo}: --lifespan takes one photo, not a folder")
    if not folder:
        _check_outputs(args, args.out or Path("aged.png"))  # a bad --out fails now, not after the work
    device = pick_device(args.device)
    pipe = load_pipeline(args.model, device, args.steps, trust_pickle=args.trust_pickle)
    size = int(pipe.diffae.unet.config.image_size)
    if args.lifespan:
        return _lifespan(args, photo, pipe, size, device, t_start)
    critics = None
    if not args.no_estimates:
        from pada.aging.photo import FaceCritics

        critics = FaceCritics.load(device)
    ref = ref_tile = None
    if args.ref is not None:
        from pada.faces.io import to_uint8

        ref = _load_face(args.ref, size, args.aligned)[0]
        ref_tile = to_uint8(ref)
    job = _Job(args, pipe, critics, targets, ref, ref_tile, progress=not folder)
    if folder:
        return _folder(job, photo, args.out or Path("aged"), t_start, device)
    written, _ = job.age(photo, args.out or Path("aged.png"))
    for p in written:
        print(f"wrote {p}")
    _note_broken(job)
    print(f"done in {time.perf_counter() - t_start:.1f}s on {device}")
    return 0


def _lifespan(args, photo: Path, pipe, size: int, device, t_start: float) -> int:
    from pada.aging.photo import lifespan_grid, sharp_crop
    from pada.aging.pipeline import save_gif
    from pada.faces.io import load_image, save_image

    if photo.is_dir():
        raise PadaError(f"{photo}: --lifespan takes one photo, not a folder")
    out_size = _out_size(args, size)
    x, face, original = _load_face(photo, size, args.aligned)
    x_hr = None
    if out_size is not None:
        x_hr = sharp_crop(original if original is not None else load_image(photo), face, out_size, size)[0]
    ref = _load_face(args.ref, size, args.aligned)[0] if args.ref is not None else None
    gender = args.gender or pipe.infer_gender(x)  # the anchors' descriptions need one
    res = pipe.lifespan(x, gender=gender, frames_per_segment=args.frames, steps=args.steps,
                        batch_size=args.batch_size, ref=ref, text_weight=args.text_weight, progress=True,
                        inversion_steps=args.inversion_steps, sampler=args.sampler,
                        shift_gain=args.shift_gain, tone_guard=args.tone_guard,
                        hold_gender=args.hold_gender, calibrate=args.calibrate, image_hr=x_hr,
                        keep_background=args.keep_background, relative_detail=args.relative_detail,
                        background_guard=args.background_guard,
                        saturation_guard=args.saturation_guard, patch_guard=args.patch_guard,
                        blotch_guard=args.blotch_guard, structure_guard=args.structure_guard,
                        contrast_bound=args.contrast_bound, space=args.space_lifespan,
                        young_cap=args.young_cap)
    frames = res.images if res.images_hr is None else res.images_hr
    from pada.aging.photo import BROKEN_NOTE, mark_broken_frames
    from pada.outputs import StagedOutputs
    from pada.validation import require_finite

    out = args.out or Path("aged.png")
    require_finite(frames, str(out))  # never a black grid with exit status 0
    with StagedOutputs() as staged:
        labels, broken = mark_broken_frames(res.labels, res.images, x)  # scored at the model's size
        save_image(staged.stage(out), lifespan_grid(frames, labels))
        save_gif(frames, staged.stage(args.gif or out.with_suffix(".gif")))
        written = staged.commit()
    for p in written:
        print(f"wrote {p}")
    if broken:
        print(BROKEN_NOTE.format(n=broken).replace("result(s)", "frame(s)"), file=sys.stderr)
    if not args.gender:  # said after the files are written: a failure stays one line
        print(f"note: the lifespan's descriptions are for the estimated gender ({gender}), and the small "
              "offline estimate is often wrong; pass --gender female / male when you know it",
              file=sys.stderr)
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in res.timings.items())
    print(f"done in {time.perf_counter() - t_start:.1f}s ({stages}) on {device}")
    return 0


CSV_FIELDS = ("file", "face", "box", "input_age", "input_gender", "target", "text", "result", "output_age",
              "identity", "structure")
#: the results file of earlier versions (no ``structure`` column): resumed with its own columns
CSV_FIELDS_V1 = CSV_FIELDS[:-1]


def _done_files(csv_path: Path) -> tuple[set[str], tuple[str, ...]]:
    """(files already in the results CSV, its columns); a last line cut by an interruption is dropped from
    the file. A file of an earlier version (:data:`CSV_FIELDS_V1`) keeps its columns."""
    import csv

    if not csv_path.is_file():
        return set(), CSV_FIELDS
    raw = csv_path.read_bytes()
    if raw and not raw.endswith(b"\n"):  # killed mid-row: keep the complete rows only
        raw = raw[: raw.rfind(b"\n") + 1]
        csv_path.write_bytes(raw)
    lines = raw.decode("utf-8", errors="replace").splitlines()
    header = lines[0].split(",") if lines else []
    fields = next((f for f in (CSV_FIELDS, CSV_FIELDS_V1) if header[: len(f)] == list(f)), None)
    if fields is None:
        raise PadaError(f"{csv_path}: not a pada results file (unexpected header); choose another --out")
    return {row["file"] for row in csv.DictReader(lines) if row.get("file")}, fields


def _folder(job: _Job, folder: Path, out_dir: Path, t_start: float, device) -> int:
    import csv
    import os

    from tqdm import tqdm

    from pada.faces.io import IMAGE_EXTENSIONS

    if out_dir.suffix.lower() in IMAGE_EXTENSIONS:
        raise PadaError(f"--out {out_dir}: with a folder of photos, --out is a folder (e.g. --out aged)")
    if out_dir.resolve() == folder.resolve():
        raise PadaError(f"--out {out_dir}: choose a folder other than the photos' own (outputs are images)")
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise PadaError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    stems = [f.stem for f in files]
    dest = {f: out_dir / (f"{f.stem}.png" if stems.count(f.stem) == 1 else f"{f.stem}_{f.suffix[1:]}.png")
            for f in files}  # a.jpg and a.png do not overwrite each other
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "results.csv"
    done, fields = _done_files(csv_path)
    todo = [f for f in files if f.name not in done]
    if done:
        print(f"{len(files) - len(todo)} of {len(files)} photos already done in {csv_path}; resuming")
    failed = 0
    new_file = not csv_path.is_file()
    with open(csv_path, "a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        if new_file:
            writer.writeheader()
            fh.flush()
        for f in tqdm(todo, desc="photos", unit="photo", file=sys.stderr, disable=not todo):
            try:
                _, rows = job.age(f, dest[f])
            except PadaError as exc:
                failed += 1
                tqdm.write(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
                continue
            for row in rows:
                writer.writerow({"file": f.name, **row})
            fh.flush()
            os.fsync(fh.fileno())
    ok = len(todo) - failed
    _note_broken(job)
    print(f"{ok} photos aged, {len(files) - len(todo)} skipped (done before), {failed} failed; "
          f"results in {csv_path} ({time.perf_counter() - t_start:.1f}s on {device})")
    if failed:
        print(f"error: {failed} of {len(files)} photos failed (see the lines above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    from pada.cli.main import main

    sys.exit(main(["age", *sys.argv[1:]]))
