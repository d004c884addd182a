"""What the detail transfer (``pada age --out-size``) changes in the critics' readings, as one JSON document.

Ages the evaluation's held-out faces (test split of ``--data``, as ``pada evaluate``) toward the 7 group
descriptions with ``--n`` results each, giving the pipeline the data set's sharper crop of each face
(``aligned/<S>/`` next to the model-size crops, as ``pada data demo`` builds them), and scores three views
of the same results with the evaluation's critics (dlib-age, SFace, dlib-gender, YuNet):

* ``model``: the results at the model's size against the model-size inputs (what ``pada evaluate`` scores);
* ``upsampled``: the results enlarged to S (bicubic) against the S px inputs (what a user saw before);
* ``transfer``: the detail-transferred results against the S px inputs (what ``pada age`` writes now).

Per view and target: Age MAE to the group centre, mean estimated age, identity (SFace cosine to the input),
the share of outputs read as the input's gender, the share in which YuNet finds a face, the share
whose high-frequency energy is within 1.5x the input's, and the shares without colour patchwork, without a
colour cast, without blotches and without a pale haze (``patch ok``, ``cast ok``, ``blotch ok``, ``haze
ok``: docs/evaluation.md).

    python benchmarks/bench_detail_transfer.py --model pada-demo64 --data data/demo   # ~8 min, 2 cores
    python benchmarks/bench_detail_transfer.py --model pada-demo64 --data data/demo --max-images 2 --n 1

``--grid FILE.png`` also writes what the scores cannot show (session 39 found a pale haze on a dark cap
by eye): one row per face (up to ``--grid-faces``), the sharp input and then each target's first
transferred result, toddler to eighty.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="pada-demo64")
    ap.add_argument("--data", default="data/demo")
    ap.add_argument("--out-size", type=int, default=256)
    ap.add_argument("--max-images", type=int, default=16)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sampler", default="multistep")
    ap.add_argument("--keep-background", action=argparse.BooleanOptionalAction, default=True,
                    help="the edit on the head only (default, as pada age) or on the whole crop")
    ap.add_argument("--relative-detail", action=argparse.BooleanOptionalAction, default=True,
                    help="the crop's fine detail scaled by the edit's brightness ratio (default, as pada age)"
                         " or kept at its amplitude (before session 39)")
    ap.add_argument("--grid", default="", help="write a PNG: each face's input and first result per target")
    ap.add_argument("--grid-faces", type=int, default=8, help="faces (rows) in --grid")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from pada.aging.pipeline import AgingPipeline
    from pada.data.groups import AGE_GROUPS, description
    from pada.evaluation.metrics import embed, predict_ages
    from pada.evaluation.runner import load_critics, load_eval_data
    from pada.evaluation.scores import (
        BLOTCH_LIMIT,
        CAST_LIMIT,
        HAZE_LIMIT,
        HF_RATIO_LIMIT,
        PATCH_LIMIT,
        blotch,
        colour_cast,
        face_found_rate,
        gender_kept,
        haze,
        hf_energy_ratio,
        patch_change,
    )
    from pada.faces.align import aligned_crop
    from pada.faces.io import load_image, to_tensor

    t0 = time.perf_counter()
    pipe = AgingPipeline.from_pretrained(args.model, sampler=args.sampler)
    size = int(pipe.diffae.unet.config.image_size)
    data = load_eval_data(args.data, size, max_images=args.max_images)
    sharp_dir = Path(args.data) / "aligned" / str(args.out_size)
    if not sharp_dir.is_dir():
        print(f"error: {sharp_dir}: no {args.out_size} px crops "
              f"(pada data demo --sizes {size},{args.out_size})", file=sys.stderr)
        return 1
    src_hr = torch.cat([to_tensor(aligned_crop(load_image(sharp_dir / f), args.out_size))
                        for f in data.files])
    critics = load_critics(fid="none")
    views: dict[str, dict[str, dict[str, float]]] = {"model": {}, "upsampled": {}, "transfer": {}}
    rows = min(args.grid_faces, len(data.files)) if args.grid else 0
    tiles = [[src_hr[i]] for i in range(rows)]  # per face: the input, then each target's first result
    for group in AGE_GROUPS:
        outs, outs_hr = [], []
        for i in range(len(data.files)):
            res = pipe.age(data.images[i], text=description(group, data.genders[i]), n=args.n, seed=i,
                           image_hr=src_hr[i], keep_background=args.keep_background,
                           relative_detail=args.relative_detail)
            outs.append(res.images)
            outs_hr.append(res.images_hr)
            if i < rows:
                tiles[i].append(res.images_hr[0])
        model = torch.stack(outs)
        up = F.interpolate(model.flatten(0, 1), size=args.out_size, mode="bicubic",
                           align_corners=False).clamp(-1, 1).view(*model.shape[:2], 3, args.out_size, -1)
        for name, o, x in (("model", model, data.images), ("upsampled", up, src_hr),
                           ("transfer", torch.stack(outs_hr), src_hr)):
            flat = o.flatten(0, 1)
            xs = x[:, None].expand_as(o).flatten(0, 1)
            ages = predict_ages(critics.age, flat)
            ident = []
            for i in range(o.shape[0]):
                e = embed(critics.identity, torch.cat([x[i:i + 1], o[i]]))
                ident.append(float((e[1:] @ e[0]).mean()))
            views[name][group.word] = {
                "age_mae": round(float((ages - group.center).abs().mean()), 3),
                "mean_age": round(float(ages.mean()), 2),
                "identity": round(sum(ident) / len(ident), 4),
                "gender_kept": round(float(gender_kept(critics.gender, flat, xs).float().mean()), 4),
                "face_found": round(face_found_rate(critics.faces, flat), 4),
                "hf_ok": round(float((hf_energy_ratio(flat, xs) <= HF_RATIO_LIMIT).float().mean()), 4),
                "patch_ok": round(float((patch_change(flat, xs) <= PATCH_LIMIT).float().mean()), 4),
                "cast_ok": round(float((colour_cast(flat, xs) <= CAST_LIMIT).float().mean()), 4),
                "blotch_ok": round(float((blotch(flat, xs) <= BLOTCH_LIMIT).float().mean()), 4),
                "haze_ok": round(float((haze(flat, xs) <= HAZE_LIMIT).float().mean()), 4)}
        print(f"{group.word}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    if rows:
        from pada.faces.grid import save_grid

        save_grid(torch.stack([t for face in tiles for t in face]), args.grid, nrow=1 + len(AGE_GROUPS))
    summary = {name: {k: round(sum(t[k] for t in per.values()) / len(per), 4)
                      for k in next(iter(per.values()))} for name, per in views.items()}
    print(json.dumps({"benchmark": "detail_transfer", "model": args.model, "data": data.source,
                      "out_size": args.out_size, "keep_background": args.keep_background,
                      "relative_detail": args.relative_detail, "n": args.n,
                      "sampler": args.sampler, "grid": args.grid or None, "mean": summary,
                      "per_target": views, "seconds": round(time.perf_counter() - t0, 1)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
