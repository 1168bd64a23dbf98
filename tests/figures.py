"""Figures the failure tests measure (cases fuzzed, messages checked, recovery
seconds, latencies, memory), printed at the end of the run by
`pytest_terminal_summary` in conftest.py, so they show in CI logs without -s.
"""

from __future__ import annotations

FIGURES: list[tuple[str, str, str]] = []  # (test name, what, value)


def record(test: str, what: str, value: object) -> None:
    if isinstance(value, float):
        value = f"{value:.3f}".rstrip("0").rstrip(".") if value < 100 else f"{value:.0f}"
    FIGURES.append((test, what, str(value)))


def lines() -> list[str]:
    out: list[str] = []
    current = None
    for test, what, value in FIGURES:
        if test != current:
            out.append(test)
            current = test
        out.append(f"    {what}: {value}")
    return out
