"""Where a batch cycle's time goes: wall seconds per phase, reported with every cycle.

A cycle's fixed cost (Spark session start, Luigi's scheduling, HDFS listings, publication,
Trino registration) decides how short a useful batch period can be, so each cycle
measures it instead of leaving it to a profiler. Phases are named like ``land``,
``spark_start``, ``build:{view}``; a phase entered twice adds up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Phases:
    """Wall seconds per named phase of one batch cycle, in the order first entered."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as ``name`` (added to any earlier time of the same name)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed

    def total(self, prefix: str) -> float:
        """Seconds of every phase whose name starts with ``prefix``."""
        return sum(s for name, s in self.seconds.items() if name.startswith(prefix))

    def rounded(self) -> dict[str, float]:
        """The phases in milliseconds' precision, for reports and JSON."""
        return {name: round(s, 3) for name, s in self.seconds.items()}
