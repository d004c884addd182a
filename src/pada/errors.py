"""User-facing errors.

Every error a user can cause (bad file, missing weights, wrong checkpoint, ...) is raised as a
:class:`PadaError` whose message is one readable line that names the file and the problem. The CLI
prints ``error: <message>`` and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations


class PadaError(Exception):
    """An error caused by user input or the environment, printed as one line by the CLI."""


class BadImageError(PadaError):
    """An input file is not a readable image (corrupt, truncated, unsupported, too small)."""


class NoFaceError(PadaError):
    """No face was found in an image."""


class CheckpointError(PadaError):
    """A checkpoint cannot be loaded (unsafe pickle, wrong preset, missing keys)."""


class MissingWeightsError(PadaError):
    """A weight file is not on this machine; the message says how to get it."""


def one_line(text: str) -> str:
    """``text`` with line breaks escaped (a file name may hold one), so an error is always a single line."""
    return text.replace("\r", "\\r").replace("\n", "\\n")
