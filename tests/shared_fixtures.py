"""Location of the read-only shared material (``../shared`` beside the repo, or ``$PADA_SHARED``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def official_fixtures() -> Path:
    """``shared/fixtures/diffae_official``; skips the calling test with the reason when it is absent."""
    root = Path(os.environ.get("PADA_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    path = root / "fixtures" / "diffae_official"
    if not path.is_dir():
        pytest.skip(f"official DiffAE fixtures not found at {path} (set PADA_SHARED)")
    return path
