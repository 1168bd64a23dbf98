"""Logging set-up shared by `python -m chatapp` and the gunicorn entry point.

Every log line is one line: a message's CR, LF and other control characters
are written as escapes (`\\n`), whoever logs it, so a request path or a
username with `%0A` in it cannot forge a log line. Tracebacks, added by the
formatter after the message, keep their lines.
"""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_CONTROL = {i: f"\\x{i:02x}" for i in [*range(0x20), 0x7F]}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x2028: "\\u2028"})
_CONTROL[0x2029] = "\\u2029"


def one_line(text: str) -> str:
    """`text` with control characters and line separators escaped."""
    return text.translate(_CONTROL)


class OneLineRecord(logging.LogRecord):
    """A log record whose message never spans lines."""

    def getMessage(self) -> str:
        return one_line(super().getMessage())


def install_one_line_records() -> None:
    """Make every log record of this process a OneLineRecord (idempotent)."""
    if logging.getLogRecordFactory() is not OneLineRecord:
        logging.setLogRecordFactory(OneLineRecord)


def setup_logging(level: str) -> None:
    """Log to stderr at `level`, unless the host process already configured logging."""
    install_one_line_records()
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("chatapp").setLevel(level)
