"""Writing output files safely: all or nothing, with the user's umask, and one-line errors.

Every file pada writes for a user (images, GIFs, safetensors, CSV, JSON) goes through :func:`atomic_path`
(or :func:`atomic_open` / :func:`write_text` built on it):

* the data is written to a temporary file in the same folder (``.NAME.XXXXXXXX.tmp.EXT``, hidden from
  folder scans), then renamed over the target with :func:`os.replace`: an interrupted or failed write never
  leaves a half-written file and never touches the previous version of the target;
* the file gets the mode ``0o666 & ~umask`` like any file a program creates (temporary-file helpers and
  some writers, e.g. safetensors, use 0600);
* an :class:`OSError` (target is a folder, read-only folder, full disk, file too large) becomes one
  :class:`~pada.errors.PadaError` line naming the file, and the temporary file is removed.

:func:`check_output_path` refuses a bad target before any work is done, and :class:`StagedOutputs` lets a
command that writes several files (grid + GIF + pasted photos) publish all of them or none.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from pada.errors import PadaError

_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this file system or process limit",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "is a folder",
    errno.ENOTDIR: "a parent is not a folder",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOENT: "folder does not exist",
}


def file_mode() -> int:
    """Mode of a newly created file under the current umask (``0o666 & ~umask``)."""
    try:
        with open("/proc/self/status") as fh:  # reading it does not change the umask (thread-safe)
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_error(path: str | os.PathLike, exc: OSError, verb: str = "cannot write") -> PadaError:
    """One-line :class:`PadaError` for an OSError hit while writing ``path``."""
    reason = _REASONS.get(exc.errno or -1) or exc.strerror or type(exc).__name__
    return PadaError(f"{os.fspath(path)}: {verb} ({reason})")


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")


def _prepare_parent(path: Path) -> None:
    if path.is_dir():
        raise PadaError(f"{path}: is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise PadaError(f"{path}: cannot write ({path.parent} is a file, not a folder)") from None
    except OSError as exc:
        raise write_error(path, exc, "cannot create the folder of") from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same extension) for a writer that wants a file name; on a
    clean exit give it the umask mode and rename it onto ``path``, else remove it.

    OSErrors inside the block or during the rename become one-line :class:`PadaError` naming ``path``.
    """
    path = Path(path)
    _prepare_parent(path)
    tmp = _temp_name(path)
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None,
                fsync: bool = False) -> Iterator[IO[Any]]:
    """``open(path, mode)`` that writes all or nothing (see :func:`atomic_path`). ``mode``: "w" or "wb"."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path, fsync=False) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        kw = {"encoding": encoding or "utf-8", "newline": ""} if mode == "w" else {}
        with os.fdopen(fd, mode, **kw) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())


def write_text(path: str | os.PathLike, text: str, *, fsync: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically with the umask mode."""
    with atomic_open(path, "w", fsync=fsync) as fh:
        fh.write(text)
    return Path(path)


def print_json(data: object, path: str | os.PathLike | None = None) -> str:
    """Print ``data`` as indented JSON (what the benchmark scripts report) and, given ``path``, also write
    it there atomically. Returns the text."""
    import json

    text = json.dumps(data, indent=2)
    print(text)
    if path:
        write_text(path, text + "\n")
    return text


def write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> Path:
    with atomic_open(path, "wb", fsync=fsync) as fh:
        fh.write(data)
    return Path(path)


def check_output_path(path: str | os.PathLike, *, extensions: Iterable[str] | None = None,
                      option: str = "--out") -> Path:
    """Refuse an output target before any work is done: a folder, an unknown extension, a parent that is a
    file, or a folder this process cannot write into (one-line :class:`PadaError` naming ``option``)."""
    p = Path(path)
    name = f"{option} {p}" if option else str(p)
    if p.is_dir():
        raise PadaError(f"{name}: is a folder; give a file name")
    if extensions is not None:
        exts = tuple(e.lower() for e in extensions)
        if p.suffix.lower() not in exts:
            raise PadaError(f"{name}: unknown extension {p.suffix or '(none)'!r}; "
                            f"use one of {', '.join(exts)}")
    parent = p.parent if str(p.parent) else Path(".")
    ancestor = parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise PadaError(f"{name}: cannot write ({ancestor} is a file, not a folder)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PadaError(f"{name}: cannot write into {ancestor} (permission denied)")
    return p


class StagedOutputs:
    """Write several files, then publish all of them or none.

    ``stage(path)`` returns a temporary path beside ``path`` to write to; :meth:`commit` renames every
    staged file onto its target (umask mode); leaving the ``with`` block by an exception, or without a
    commit, removes the temporary files. Targets that existed before keep their old content until the commit.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def __enter__(self) -> StagedOutputs:
        return self

    def stage(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        _prepare_parent(path)
        tmp = _temp_name(path)
        self._staged.append((tmp, path))
        return tmp

    def commit(self) -> list[Path]:
        done = []
        try:
            mode = file_mode()
            for tmp, path in self._staged:
                os.chmod(tmp, mode)
                os.replace(tmp, path)
                done.append(path)
        except OSError as exc:
            raise write_error(self._staged[len(done)][1], exc) from None
        finally:
            self.discard()
        return done

    def discard(self) -> None:
        for tmp, _ in self._staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._staged = []

    def __exit__(self, exc_type, exc, tb) -> None:
        staged = list(self._staged)
        self.discard()
        if exc is None or not staged:
            return
        # Errors name the file the user asked for, not its temporary stand-in.
        if isinstance(exc, OSError):
            target = next((p for t, p in staged if exc.filename and os.fspath(exc.filename) == os.fspath(t)),
                          staged[-1][1])
            raise write_error(target, exc) from None
        if isinstance(exc, PadaError):
            msg = str(exc)
            for tmp, target in staged:
                msg = msg.replace(str(tmp), str(target))
            if msg != str(exc):
                raise type(exc)(msg) from None
