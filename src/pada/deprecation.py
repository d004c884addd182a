"""Old public names kept importable after a rename, with a :class:`DeprecationWarning`.

A module that renamed a public name keeps the old one working with one line::

    __getattr__ = renamed(__name__, {"TrainConfig": "FaceClipTrainConfig"})

``from module import TrainConfig`` then still works, warns once per call site, and returns the object
under its new name (the same object, so ``isinstance`` checks keep working).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any


def renamed(module: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` that serves each ``old`` name in ``names`` as ``names[old]``."""

    def __getattr__(name: str) -> Any:
        if name in names:
            new = names[name]
            warnings.warn(f"{module}.{name} is deprecated; it is now {module}.{new}", DeprecationWarning,
                          stacklevel=2)
            return getattr(sys.modules[module], new)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


__all__ = ["renamed"]
