"""The PADA web app (``pada app``): a Gradio UI and an HTTP API around one aging pipeline.

:func:`create_app` (FastAPI + Gradio) takes any pipeline object with the small interface described in
:mod:`pada.app.service`; see docs/app.md.
"""

from __future__ import annotations

from typing import Any


def create_app(pipeline: Any, **kwargs: Any):
    """Build the web app around ``pipeline`` (see :func:`pada.app.server.create_app`)."""
    from pada.app.server import create_app as _create

    return _create(pipeline, **kwargs)


__all__ = ["create_app"]
