"""The PADA web app (``pada app``): upload a photo, describe the target age, get the aging grid.

:func:`create_app` (Flask) takes any pipeline object with the small interface described in
:mod:`pada.app.service`; see docs/app.md.
"""

from __future__ import annotations

from typing import Any


def create_app(pipeline: Any, **kwargs: Any):
    """Build the Flask app around ``pipeline`` (see :func:`pada.app.server.create_app`)."""
    from pada.app.server import create_app as _create

    return _create(pipeline, **kwargs)


__all__ = ["create_app"]
