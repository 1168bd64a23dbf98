"""chatapp: a real-time web chat on aiohttp and Redis."""

from __future__ import annotations

__version__ = "0.1.0"


def create_app(*args, **kwargs):
    """The aiohttp application (gunicorn: `chatapp:create_app()`)."""
    from chatapp.app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["create_app"]
