"""Numbers read from a query string: ASCII digits only, or nothing.

`str.isdigit()` is no check: it accepts "²" and "①", which `int()` refuses
(a 500 with a traceback). Every numeric query parameter goes through here.
"""

from __future__ import annotations

import re

# Up to 18 digits: any such number fits in a signed 64-bit integer (Redis' too).
_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


def whole_number(raw: str | None) -> int | None:
    """`raw` as an int if it is 1 to 18 ASCII digits, else None."""
    if raw is None or not _WHOLE_NUMBER.fullmatch(raw):
        return None
    return int(raw)
