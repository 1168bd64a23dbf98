"""chatapp: a real-time web chat on aiohttp and Redis."""

from __future__ import annotations

__version__ = "0.1.0"


def create_app(config=None):
    """The aiohttp application for `config`; without one, gunicorn's (`chatapp:create_app()`)."""
    if config is None:
        from chatapp.gunicorn import create_app as gunicorn_app

        return gunicorn_app()
    from chatapp.app import create_app as build_app

    return build_app(config)


__all__ = ["create_app"]
