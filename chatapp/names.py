"""The rules for usernames and room names: pure, no Redis, shared by forms, sockets and CLI."""

from __future__ import annotations

import re

from chatapp.i18n import N_, _

USERNAME_MAX = 32  # characters
USERNAME_RE = re.compile(rf"[A-Za-z_][A-Za-z0-9_]{{0,{USERNAME_MAX - 1}}}")
USERNAME_RULE = f"1 to {USERNAME_MAX} characters: letters, digits and _, not starting with a digit."
_RULE = N_("1 to {max} characters: letters, digits and _, not starting with a digit.")

ROOM_MAX = 64  # characters
ROOM_RE = re.compile(rf"[A-Za-z_][A-Za-z0-9_]{{0,{ROOM_MAX - 1}}}")
ROOM_RULE = f"1 to {ROOM_MAX} characters: letters, digits and _, not starting with a digit."


def username_rule() -> str:
    """USERNAME_RULE in the current language."""
    return _(_RULE).format(max=USERNAME_MAX)


def room_rule() -> str:
    """ROOM_RULE in the current language."""
    return _(_RULE).format(max=ROOM_MAX)


def username_problem(name: str) -> str | None:
    """Why `name` cannot be a username, or None if it can."""
    if not name:
        return _("Enter a username.")
    if not USERNAME_RE.fullmatch(name):
        return _("Usernames are {rule}").format(rule=username_rule())
    return None


def room_problem(name: str) -> str | None:
    """Why `name` cannot name a room, or None if it can."""
    if not name:
        return _("Enter a room name.")
    if not ROOM_RE.fullmatch(name):
        return _("Room names are {rule}").format(rule=room_rule())
    return None
