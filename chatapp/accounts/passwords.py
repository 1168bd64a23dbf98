"""Password rules (Django's validators) and bcrypt hashing; pure, blocking functions.

Hashing and checking block for a quarter of a second at cost 12: callers on the
event loop run them in a thread (`asyncio.to_thread`).

Passwords longer than bcrypt's 72-byte input limit are refused at registration
with a message saying so, rather than silently truncated or pre-hashed: what a
user types is exactly what is checked.
"""

from __future__ import annotations

import functools
import gzip
import re
from difflib import SequenceMatcher
from importlib import resources

import bcrypt

from chatapp.i18n import _, ngettext

MIN_LENGTH = 8
MAX_BYTES = 72  # bcrypt ignores (bcrypt 5: refuses) anything past 72 bytes
MAX_SIMILARITY = 0.7


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords (lower case); see chatapp/data/README.md."""
    data = resources.files("chatapp").joinpath("data/common-passwords.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode("utf-8").split())


def _too_similar(password: str, username: str) -> bool:
    """Django's UserAttributeSimilarityValidator applied to the username."""
    password = password.lower()
    value = username.lower()
    for part in {*re.split(r"\W+", value), value} - {""}:
        # A much longer password cannot be "similar" to a short name.
        if len(password) >= 10 * len(part) and len(part) < MAX_SIMILARITY / 2 * len(password):
            continue
        if SequenceMatcher(a=password, b=part).quick_ratio() >= MAX_SIMILARITY:
            return True
    return False


def password_problems(password: str, password2: str | None, username: str) -> list[str]:
    """Return every rule `password` breaks, as sentences for the form (empty: acceptable)."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(
            ngettext(
                "This password is too short. It must contain at least {n} character.",
                "This password is too short. It must contain at least {n} characters.",
                MIN_LENGTH,
            ).format(n=MIN_LENGTH)
        )
    size = len(password.encode("utf-8"))
    if size > MAX_BYTES:
        problems.append(
            _(
                "This password is too long: at most {max} bytes once encoded (this one is {size})."
            ).format(max=MAX_BYTES, size=size)
        )
    if password.isdigit():
        problems.append(_("This password is entirely numeric."))
    if password.lower().strip() in common_passwords():
        problems.append(_("This password is too common."))
    if username and _too_similar(password, username):
        problems.append(_("The password is too similar to the username."))
    if password2 is not None and password != password2:
        problems.append(_("The two password fields didn't match."))
    return problems


def hash_password(password: str, rounds: int) -> str:
    """Return the bcrypt hash of `password` (blocking; at most MAX_BYTES bytes)."""
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def check_password(password: str, hashed: str) -> bool:
    """Whether `password` matches `hashed` (blocking; always costs one bcrypt run)."""
    secret = password.encode("utf-8")
    # Never valid (registration refuses it), but still spend the same time.
    too_long = len(secret) > MAX_BYTES
    try:
        ok = bcrypt.checkpw(secret[:MAX_BYTES], hashed.encode("ascii"))
    except ValueError:
        return False
    return ok and not too_long
