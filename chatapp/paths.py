"""Where the top-level `templates/` and `static/` folders are, checkout or installed."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path


def _candidates(name: str) -> list[Path]:
    checkout = Path(__file__).resolve().parent.parent / name
    installed = [
        Path(sysconfig.get_path("data")) / "share" / "chatapp" / name,
        Path(sys.prefix) / "share" / "chatapp" / name,
    ]
    return [checkout, *installed]


def find_dir(name: str) -> Path:
    """Return the first existing `templates` or `static` folder."""
    for path in _candidates(name):
        if path.is_dir():
            return path
    raise FileNotFoundError(
        f"chatapp: cannot find its {name}/ folder (looked in {_candidates(name)})"
    )
