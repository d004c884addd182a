"""Old public names kept importable after a rename, with a :class:`DeprecationWarning`.

A module that renamed a public name keeps the old one working with one line::

    __getattr__ = renamed(__name__, {"TrainConfig": "FaceClipTrainConfig"})

``from module import TrainConfig`` then still works, warns once per call site, and returns the object
under its new name (the same object, so ``isinstance`` checks keep working).

A module that moved keeps its old path as a two-line shim::

    __getattr__ = moved("pada.training.diffae_task", "pada.diffae.train")

Every name of the new module is then served under the old path, with a warning naming the new one. The
new module is imported by name when a name is first used, so the shim adds no import edge between the
layers (tests/test_layers.py lists the shims in ``MOVED`` and checks that they forward and nothing else).
"""

from __future__ import annotations

import importlib
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


def moved(module: str, new_module: str) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for the old path ``module`` of a module now at ``new_module``."""

    def __getattr__(name: str) -> Any:
        target = importlib.import_module(new_module)
        if name.startswith("__") or not hasattr(target, name):
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} is deprecated; it is now {new_module}.{name}", DeprecationWarning,
                      stacklevel=2)
        return getattr(target, name)

    return __getattr__


__all__ = ["moved", "renamed"]
