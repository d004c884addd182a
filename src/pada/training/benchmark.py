"""Moved to :mod:`pada.diffae.benchmark` (``python -m pada.diffae.benchmark``). The old path still works,
with a :class:`DeprecationWarning`."""

import sys

from pada.deprecation import moved

__getattr__ = moved("pada.training.benchmark", "pada.diffae.benchmark")  # also under -m

if __name__ == "__main__":
    sys.exit(__getattr__("main")())
