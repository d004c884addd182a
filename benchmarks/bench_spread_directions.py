"""What each direction of PADA's draw spread does to a face, at equal coarse-image change (JSON).

A model with a draw spread (``PadaConfig.draw_spread``; the shipped ``pada-demo64``) moves each draw's code
by an offset inside the span of ``modulation.spread_basis`` (the leading directions of real codes, the age
directions taken out). Under the contrast bound (``--contrast-bound``) what a draw may change is measured on
the DiffAE's coarse image, so the question for pluralism under the bound is which directions buy the most
visible variation per unit of coarse change, and at what cost to the face's structure.

For ``--faces`` training faces (a seeded choice, not the evaluation's test faces) and one target, this script
takes the PAE-mean edit under ``--contrast-bound`` (the base code), renders it from the face's inverted start
noise, and renders the base code moved along each orthonormal direction of the spread span by the step that
changes the coarse image by ``--budget`` × the input's coarse contrast (the bound's unit). Per direction the
JSON holds the identity change against the base render (1 − SFace cosine; what the evaluation's div-ID
counts), the structure lost against the input (:func:`pada.evaluation.scores.structure_change`) minus the
base render's, and the share of renders whose structure stays ok. ``--grid PATH`` also writes a picture:
per face the input, the base render and, per direction asked in ``--grid-directions``, the step back and
forward (to look at what a direction does before trusting its numbers).

About 1 min for 8 faces on 2 CPU cores.

    python3 benchmarks/bench_spread_directions.py --data data/demo --faces 8
    python3 benchmarks/bench_spread_directions.py --faces 4 --grid dirs.png --grid-directions 2,6,3
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch


def direction_table(id_change: torch.Tensor, structure: torch.Tensor, limit: float) -> list[dict]:
    """Per direction: ``id_change`` (F, K) identity change of face f's render along direction k,
    ``structure`` (F, K + 1) the structure lost by the base render (column 0) and by each direction's
    render, ``limit`` the structure-ok limit. Returns K rows {"direction", "id_change", "structure_added",
    "structure_ok", "id_per_structure"} (the last: identity change per unit of structure added; None when
    the direction adds none)."""
    if id_change.ndim != 2 or structure.shape != (id_change.shape[0], id_change.shape[1] + 1):
        raise ValueError(f"need id_change (F, K) and structure (F, K + 1), got {tuple(id_change.shape)} and "
                         f"{tuple(structure.shape)}")
    added = structure[:, 1:] - structure[:, :1]
    rows = []
    for k in range(id_change.shape[1]):
        idc, add = float(id_change[:, k].mean()), float(added[:, k].mean())
        rows.append({"direction": k, "id_change": round(idc, 5), "structure_added": round(add, 5),
                     "structure_ok": round(float((structure[:, k + 1] <= limit).float().mean()), 4),
                     "id_per_structure": round(idc / add, 3) if add > 1e-4 else None})
    return rows


def spread_directions(modulation) -> torch.Tensor:
    """An orthonormal basis (K, S) of the span of ``modulation.spread_basis``."""
    basis = modulation.spread_basis.double()
    _, s, vh = torch.linalg.svd(basis, full_matrices=False)
    return vh[s > 1e-6 * float(s.max().clamp_min(1e-30))].float()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="pada-demo64", help="PADA model file or registry name")
    ap.add_argument("--data", default="data/demo")
    ap.add_argument("--faces", type=int, default=8, help="training faces (a seeded choice)")
    ap.add_argument("--target", default="eighties", help="age-group word")
    ap.add_argument("--contrast-bound", type=float, default=0.5, help="bound of the base edit (0 = none)")
    ap.add_argument("--budget", type=float, default=0.2,
                    help="coarse change of each direction's step, in the input's coarse contrast")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid", default=None, help="also write a PNG of the directions in --grid-directions")
    ap.add_argument("--grid-directions", default="0,1,2", help="comma-separated direction numbers")
    ap.add_argument("--out", default=None, help="write the JSON here (default: print only)")
    args = ap.parse_args(argv)

    from pada.aging.backoff import coarse_contrast, contrast_bound_value
    from pada.aging.pipeline import AgingPipeline
    from pada.critics.registry import load_critic
    from pada.data.groups import description, group_by_word
    from pada.errors import PadaError
    from pada.evaluation.metrics import embed
    from pada.evaluation.runner import training_faces
    from pada.evaluation.scores import STRUCTURE_LIMIT, structure_change
    from pada.outputs import check_output_path, print_json

    try:
        if args.faces < 1 or not args.budget > 0:
            raise PadaError(f"--faces must be >= 1 and --budget > 0, got {args.faces} and {args.budget}")
        try:
            contrast_bound_value(args.contrast_bound)
        except PadaError as e:
            raise PadaError(f"--contrast-bound: {e}") from None
        for path, option, exts in ((args.out, "--out", (".json",)), (args.grid, "--grid", (".png",))):
            if path:
                check_output_path(path, extensions=exts, option=option)
        group = group_by_word(args.target)
        shown = [int(k) for k in args.grid_directions.split(",") if k.strip()] if args.grid else []
        pipe = AgingPipeline.from_pretrained(args.model, sampler="multistep")
        unet, mod = pipe.diffae.unet, pipe.model.modulation
        if getattr(unet, "coarse", None) is None:
            raise PadaError(f"{args.model}: its DiffAE has no coarse image path; nothing to measure")
        if not hasattr(mod, "spread_basis") or float(mod.spread_basis.square().sum()) < 0.5:
            raise PadaError(f"{args.model}: the model carries no fitted draw-spread basis")
        dirs = spread_directions(mod)
        if any(not 0 <= k < dirs.shape[0] for k in shown):
            raise PadaError(f"--grid-directions: the spread has directions 0-{dirs.shape[0] - 1}, "
                            f"got {shown}")
        items = training_faces(args.data, int(unet.config.image_size), args.faces, args.seed)
    except (PadaError, ValueError, OSError) as e:
        print(f"bench_spread_directions: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    sface = load_critic("sface")
    coarse = unet.coarse_image
    ids, lost, grid, files = [], [], [], []
    with torch.no_grad():
        for item in items:
            x = item["image"][None]
            z_src = pipe.encode(x)
            e_mean = pipe.pae(text=description(group, item["gender"]), n=1, high_diversity=False)
            z_base = pipe.modulate(z_src, e_mean, None, contrast_bound=args.contrast_bound)
            c_src, c_base = coarse(z_src).float(), coarse(z_base).float()
            unit = args.budget * float(coarse_contrast(c_src))
            steps = [unit / float((coarse(z_base + d[None]).float() - c_base).norm().clamp_min(1e-12)) * d
                     for d in dirs]
            codes = [z_base] + [z_base + s[None] for s in steps] + [z_base - steps[k][None] for k in shown]
            renders = pipe.decode(pipe.invert(x, z_src), torch.cat(codes)).cpu()
            f = embed(sface, renders[: 1 + len(steps)], normalize=True)
            ids.append(1.0 - f[1:] @ f[0])
            lost.append(structure_change(renders[: 1 + len(steps)], x))
            files.append(item["file"])
            if shown:
                back = renders[1 + len(steps):]
                grid.append(torch.cat([x, renders[:1]] + [torch.stack([back[j], renders[1 + k]])
                                                          for j, k in enumerate(shown)]))
    rows = direction_table(torch.stack(ids), torch.stack(lost), STRUCTURE_LIMIT)
    out = {"model": args.model, "data": args.data, "faces": files, "target": args.target,
           "contrast_bound": args.contrast_bound, "budget": args.budget,
           "base_structure_mean": round(float(torch.stack(lost)[:, 0].mean()), 5), "directions": rows,
           "seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__,
           "machine": platform.machine()}
    print_json(out, args.out)
    if grid:
        from pada.faces.grid import save_grid

        save_grid(torch.cat(grid), args.grid, nrow=grid[0].shape[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
