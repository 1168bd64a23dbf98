"""Process counters rendered in Prometheus' text format (no dependency needed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Metrics:
    """Counters bumped on hot paths (plain ints: no locks, one event loop)."""

    counters: dict[str, int] = field(default_factory=dict)
    gauges: dict[str, Callable[[], float]] = field(default_factory=dict)
    help: dict[str, str] = field(default_factory=dict)

    def counter(self, name: str, help_text: str) -> None:
        self.counters.setdefault(name, 0)
        self.help[name] = help_text

    def inc(self, name: str, amount: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + amount

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges[name] = read
        self.help[name] = help_text

    def render(self) -> str:
        lines = []
        for name, value in sorted(self.counters.items()):
            lines += [f"# HELP {name} {self.help.get(name, name)}", f"# TYPE {name} counter"]
            lines.append(f"{name} {value}")
        for name, read in sorted(self.gauges.items()):
            lines += [f"# HELP {name} {self.help.get(name, name)}", f"# TYPE {name} gauge"]
            lines.append(f"{name} {read()}")
        return "\n".join(lines) + "\n"
