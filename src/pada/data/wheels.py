"""Moved to :mod:`pada.wheels` (a core module, so :mod:`pada.faces.samples` uses the same one). The old
path still works, with a :class:`DeprecationWarning` for each name used."""

from pada.deprecation import moved

__getattr__ = moved("pada.data.wheels", "pada.wheels")
