"""Figures the failure tests measure (cases fuzzed, messages checked, recovery
seconds, latencies, memory), printed at the end of the run by
`pytest_terminal_summary` in conftest.py, so they show in CI logs without -s.

A test records a figure through the `figure` fixture into its item's
`user_properties`; the figures are read back from each test's teardown report
(`collect`). Under pytest-xdist the tests run in worker processes and xdist
carries the reports, user_properties included, to the controller, which prints
the summary: the same figures as a serial run, in the order of the collection.
"""

from __future__ import annotations

USER_PROPERTY = "chatapp figure"  # value: (collection index, what, value)

FIGURES: list[tuple[int, str, str, str]] = []  # (collection index, test name, what, value)


def format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value < 100 else f"{value:.0f}"
    return str(value)


def collect(report) -> None:
    """Keep the figures a finished test's (teardown) report carries."""
    test = report.nodeid.rpartition("::")[2]
    for name, value in report.user_properties:
        if name == USER_PROPERTY:
            index, what, text = value
            FIGURES.append((index, test, what, text))


def lines() -> list[str]:
    out: list[str] = []
    current = None
    # Stable: a test's figures keep the order it recorded them in.
    for _, test, what, value in sorted(FIGURES, key=lambda figure: figure[0]):
        if test != current:
            out.append(test)
            current = test
        out.append(f"    {what}: {value}")
    return out
