"""Moved to :mod:`pada.diffae.train` (the DiffAE family's own package). The old path still works, with a
:class:`DeprecationWarning` for each name used."""

from pada.deprecation import moved

__getattr__ = moved("pada.training.diffae_task", "pada.diffae.train")
