"""The rules for usernames and room names: pure, no Redis, shared by forms, sockets and CLI."""

from __future__ import annotations

import re

USERNAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
USERNAME_RULE = "1 to 32 characters: letters, digits and _, not starting with a digit."

ROOM_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
ROOM_RULE = "1 to 64 characters: letters, digits and _, not starting with a digit."


def username_problem(name: str) -> str | None:
    """Why `name` cannot be a username, or None if it can."""
    if not name:
        return "Enter a username."
    if not USERNAME_RE.fullmatch(name):
        return f"Usernames are {USERNAME_RULE}"
    return None


def room_problem(name: str) -> str | None:
    """Why `name` cannot name a room, or None if it can."""
    if not name:
        return "Enter a room name."
    if not ROOM_RE.fullmatch(name):
        return f"Room names are {ROOM_RULE}"
    return None
