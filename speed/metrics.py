"""Metrics of the speed layer: how fast, how far behind, what it holds, what it rejected.

Registry-agnostic: :class:`SpeedMetrics` registers into the registry it is given (the
serving layer's, or a fresh one per consumer so that tests and several consumers in one
process never collide). ``lambdalab speed run --metrics-port`` exposes it over HTTP.
"""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge


class SpeedMetrics:
    """Prometheus metrics updated by the speed consumer after each poll batch."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter("lambdalab_speed_events", "Valid events applied", registry=r)
        self.rate = Gauge(
            "lambdalab_speed_events_per_second", "Events/s over the last 10 s", registry=r
        )
        self.lag = Gauge(
            "lambdalab_speed_consumer_lag", "Records behind the log end", ["partition"], registry=r
        )
        self.applied = Gauge(
            "lambdalab_speed_applied_offset",
            "Next offset committed with the increments",
            ["partition"],
            registry=r,
        )
        self.windows = Gauge(
            "lambdalab_speed_windows_held", "Realtime ingest windows held", ["view"], registry=r
        )
        self.stage = Counter(
            "lambdalab_speed_stage_seconds",
            "Wall seconds spent per stage of the poll loop (poll, decode, time, aggregate, "
            "redis, dead_letters): where the speed layer's time goes",
            ["stage"],
            registry=r,
        )
        self._recent: deque[tuple[float, int]] = deque()

    def stage_seconds(self) -> dict[str, float]:
        """Seconds spent so far per stage of the poll loop (what the bench breaks down)."""
        return {
            sample.labels["stage"]: sample.value
            for metric in self.stage.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        }

    def batch(self, valid: int, dead: int, now: float | None = None) -> float:
        """Count one applied batch; return the records/s over the last 10 seconds.

        Dead letters are counted by their writer (``lambdalab_dead_letters_total``).
        """
        now = time.monotonic() if now is None else now
        self.events.inc(valid)
        self._recent.append((now, valid + dead))
        while self._recent and now - self._recent[0][0] > 10:
            self._recent.popleft()
        span = max(now - self._recent[0][0], 1.0)
        value = sum(n for _, n in self._recent) / span
        self.rate.set(value)
        return value

    def positions(self, applied: dict[int, int], end: dict[int, int]) -> int:
        """Record applied offsets and lag per partition; return the total lag."""
        total = 0
        for partition, offset in applied.items():
            lag = max(end.get(partition, offset) - offset, 0)
            total += lag
            self.applied.labels(str(partition)).set(offset)
            self.lag.labels(str(partition)).set(lag)
        return total
