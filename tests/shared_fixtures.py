"""Location of the fixture files kept in the repository (``tests/fixtures``, see its PROVENANCE.md)."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def official_fixtures() -> Path:
    """``tests/fixtures/diffae_official``: golden tensors made with the official DiffAE code."""
    return FIXTURES / "diffae_official"


def face_expert_fixtures() -> Path:
    """``tests/fixtures/face_experts``: key lists and golden numbers of the full-size critics."""
    return FIXTURES / "face_experts"
