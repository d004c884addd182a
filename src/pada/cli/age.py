"""``pada age PHOTO --text "man's face in his sixties" -n 8 --out out.png``: pluralistic face aging.

Detects and FFHQ-aligns the largest face of PHOTO (``--aligned`` when PHOTO already is an aligned crop),
ages it with a trained PADA model (:class:`pada.aging.pipeline.AgingPipeline`) from a target text, a
reference face (``--ref``) or both, and writes one grid: the input, then N futures. ``--lifespan`` writes a
child-to-old row (grid + GIF) instead. ``--paste-back`` also writes each future warped back into the photo.

Diversity: the PAE is sampled per output (high-level variation: face shape, skin; ``--no-high-diversity``
uses its mean); ``--low-diversity`` starts every output from fresh noise instead of the input's inverted
x_T (low-level variation: wrinkle types and places). Every output is reproducible from ``--seed``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pada.errors import PadaError
from pada.validation import LIMITS, float_option, int_option

DEFAULT_MODEL = "pada-demo64"  # registry name of the shipped small default model (64x64, demo faces)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("age", help="age a face photo (text and/or reference face; N results)",
                              description=__doc__.split("\n\n", 1)[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photo", type=Path, help="photo with a face (or an aligned crop with --aligned)")
    p.add_argument("--text", default=None,
                   help="target age description, e.g. \"woman's face in her forties\"")
    p.add_argument("--ref", type=Path, default=None, help="reference face photo giving the target age")
    p.add_argument("-n", "--num", type=int_option(1, LIMITS["n"]), default=4,
                   help=f"number of results (default 4, at most {LIMITS['n']})")
    p.add_argument("--out", type=Path, default=Path("aged.png"), help="output grid (default aged.png)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="trained PADA model: .safetensors path or registry name")
    p.add_argument("--seed", type=int_option(0, LIMITS["seed"]), default=0,
                   help="seed of the request (output i uses its own stream)")
    p.add_argument("--steps", type=int_option(1, LIMITS["steps"]), default=25,
                   help="DDIM steps T (paper: 25)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow a DiffAE checkpoint that needs unpickling (only files you trust)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-high-diversity", action="store_true", help="use the PAE mean instead of samples")
    p.add_argument("--low-diversity", action="store_true",
                   help="fresh x_T noise per result (not the inversion)")
    p.add_argument("--eps", type=float_option(0.0, LIMITS["eps"]), default=None,
                   help="text-driven PAE sampling intensity ε (default: the model's; the paper's 1e-3). "
                        "Larger = more high-level variety, less text fidelity")
    p.add_argument("--text-weight", type=float_option(0.0, 1.0), default=0.5,
                   help="with --text and --ref: how far the PAE mean moves toward the text (0..1)")
    p.add_argument("--lifespan", action="store_true", help="child-to-old sweep: grid + GIF (see --gif)")
    p.add_argument("--gender", choices=("female", "male"), default=None,
                   help="lifespan anchors (default: guessed)")
    p.add_argument("--frames", type=int_option(1, LIMITS["frames"]), default=3,
                   help="lifespan frames per age gap (default 3)")
    p.add_argument("--gif", type=Path, default=None, help="lifespan GIF path (default: --out with .gif)")
    p.add_argument("--paste-back", action="store_true", help="also write each result pasted into the photo")
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


def load_pipeline(model: str, device, steps: int, trust_pickle: bool = False):
    """The pipeline for ``--model`` (tests replace this function)."""
    from pada.aging.pipeline import AgingPipeline, resolve_model

    try:
        path = resolve_model(model)
    except PadaError:
        if model == DEFAULT_MODEL:
            raise PadaError(f"no trained PADA model is available (the default {DEFAULT_MODEL!r} is missing "
                            "from this install); train one with `pada train pada --data DIR --diffae DIFFAE` "
                            "and pass --model runs/pada/pada.safetensors") from None
        raise
    return AgingPipeline.from_pretrained(path, device=device, steps=steps, trust_pickle=trust_pickle)


def _load_face(path: Path, size: int, aligned: bool):
    """(aligned tensor (3, S, S), AlignedFace or None, original uint8 photo or None)."""
    from pada.faces.io import load_image, to_tensor

    if aligned:
        import cv2

        img = load_image(path)
        if img.shape[0] != img.shape[1]:
            raise PadaError(f"{path}: --aligned expects a square crop, got {img.shape[1]}x{img.shape[0]}")
        if img.shape[0] != size:
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if img.shape[0] > size
                             else cv2.INTER_CUBIC)
        return to_tensor(img)[0], None, None
    from pada.errors import NoFaceError
    from pada.faces.align import align_image

    original = load_image(path)
    try:
        face = align_image(original, size)[0]
    except NoFaceError:
        raise NoFaceError(f"{path}: no face found") from None
    face.source = str(path)
    return to_tensor(face.image)[0], face, original


def _gif_path(args: argparse.Namespace) -> Path:
    return args.gif or args.out.with_suffix(".gif")


def _pasted_path(out: Path, i: int) -> Path:
    return out.with_name(f"{out.stem}_pasted_{i}{out.suffix}")


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse unusable output paths before the model is loaded (one line naming the option)."""
    from pada.faces.io import IMAGE_SAVE_EXTENSIONS
    from pada.outputs import check_output_path

    check_output_path(args.out, extensions=IMAGE_SAVE_EXTENSIONS, option="--out")
    if args.lifespan:
        check_output_path(_gif_path(args), extensions=(".gif",), option="--gif")
    if args.paste_back:
        check_output_path(_pasted_path(args.out, 0), option="--out (pasted photos)")


def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    if args.text is None and args.ref is None and not args.lifespan:
        raise PadaError("give a target: --text \"man's face in his sixties\", --ref FACE.jpg, or --lifespan")
    if args.num < 1:
        raise PadaError(f"-n must be >= 1, got {args.num}")
    if not args.photo.is_file():
        raise PadaError(f"{args.photo}: no such file")
    if args.paste_back and args.aligned:
        raise PadaError("--paste-back needs the original photo (not --aligned)")
    _check_outputs(args)  # a bad --out fails now, not after minutes of work
    device = pick_device(args.device)
    pipe = load_pipeline(args.model, device, args.steps, trust_pickle=args.trust_pickle)
    size = int(pipe.diffae.unet.config.image_size)
    x, face, original = _load_face(args.photo, size, args.aligned)
    ref = _load_face(args.ref, size, args.aligned)[0] if args.ref is not None else None

    import torch

    from pada.aging.pipeline import save_gif, save_grid
    from pada.faces.io import save_image, to_uint8
    from pada.outputs import StagedOutputs
    from pada.validation import require_finite

    if args.lifespan:
        res = pipe.lifespan(x, gender=args.gender, frames_per_segment=args.frames, steps=args.steps,
                            batch_size=args.batch_size, ref=ref, text_weight=args.text_weight, progress=True)
    else:
        res = pipe.age(x, text=args.text, ref=ref, n=args.num, high_diversity=not args.no_high_diversity,
                       low_diversity=args.low_diversity, seed=args.seed, steps=args.steps,
                       text_weight=args.text_weight, eps=args.eps, batch_size=args.batch_size, progress=True)
    images = res.images
    require_finite(images, str(args.out))  # never a black grid with exit status 0
    with StagedOutputs() as staged:  # every output file, or none (earlier files stay as they were)
        if args.lifespan:
            save_grid(images, staged.stage(args.out), nrow=len(images))
            save_gif(images, staged.stage(_gif_path(args)))
        else:
            row = [x[None]] + ([ref[None]] if ref is not None else []) + [images]
            save_grid(torch.cat(row), staged.stage(args.out))
        if args.paste_back:
            from pada.faces.align import paste_back

            for i, img in enumerate(to_uint8(images)):
                save_image(staged.stage(_pasted_path(args.out, i)), paste_back(original, face, img))
        written = staged.commit()
    for p in written:
        print(f"wrote {p}")
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in res.timings.items())
    print(f"done in {time.perf_counter() - t_start:.1f}s ({stages}) on {device}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from pada.cli.main import main

    sys.exit(main(["age", *sys.argv[1:]]))
