"""The ``pada`` command line."""
