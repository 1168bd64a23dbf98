"""The command line: serve the app, or run an admin action without a browser."""

from chatapp.cli.commands import main

__all__ = ["main"]
