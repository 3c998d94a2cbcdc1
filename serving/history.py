"""The pipeline's recent past, kept by each API process: a ring buffer of health samples.

The health snapshot (:mod:`serving.pipeline`) says where the pipeline is now; the
dashboard's charts of ingest rate, speed lag and freshness need where it was over the
last minutes. Every API process samples every declared stream each
``api.history_interval_s`` seconds in a background thread (:class:`Sampler`) and keeps the
last ``api.history_points`` samples in memory (:class:`History`), so a page opened now
draws minutes of history at once (``GET /pipeline/history``).

Nothing is persisted: a restarted process starts an empty buffer, and two processes behind
one port each answer their own (equally true) samples. A sample that could not read a
backend holds ``None`` for what it could not read and the sampler carries on.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from serving.merge import iso_ms

log = logging.getLogger(__name__)
Reading = tuple[int, dict[str, dict[str, Any]]]  # (at ms, stream -> its stream_status)


def stream_sample(status: dict[str, Any]) -> dict[str, Any]:
    """What a sample keeps of one stream's status: records, speed lag, freshness age."""
    speed = status.get("speed", {})
    return {
        "records": status.get("ingest", {}).get("records"),
        "lag_total": speed.get("lag_total"),
        "freshness_age_s": speed.get("freshness_age_s"),
    }


def rate(now: dict[str, Any], before: dict[str, Any] | None, seconds: float) -> float | None:
    """Records per second between two samples of a stream; None when not measurable.

    Not measurable: no earlier sample, a count unknown in either, no time between them,
    or fewer records than before (the topic was recreated).
    """
    if before is None or seconds <= 0:
        return None
    records, earlier = now["records"], before["records"]
    if records is None or earlier is None or records < earlier:
        return None
    return round((records - earlier) / seconds, 3)


class History:
    """The last ``capacity`` samples, oldest first; safe to add and read from two threads."""

    def __init__(self, capacity: int, interval_s: float) -> None:
        self.capacity = capacity
        self.interval_s = interval_s
        self._points: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def add(self, at_ms: int, streams: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Keep one sample taken at ``at_ms`` of every stream's status; the oldest may go."""
        with self._lock:
            last = self._points[-1] if self._points else None
            seconds = 0.0 if last is None else (at_ms - last["at_ms"]) / 1000
            point: dict[str, Any] = {"at": iso_ms(at_ms), "at_ms": at_ms, "streams": {}}
            for name, status in streams.items():
                sample = stream_sample(status)
                before = None if last is None else last["streams"].get(name)
                sample["rate_per_s"] = rate(sample, before, seconds)
                point["streams"][name] = sample
            self._points.append(point)
            return point

    def points(self) -> list[dict[str, Any]]:
        """Every sample kept, oldest first (a copy: the sampler goes on adding)."""
        with self._lock:
            return list(self._points)


class Sampler:
    """A daemon thread adding ``read()`` to a :class:`History` every ``interval_s`` seconds.

    The app's lifespan starts it and stops it on shutdown; the first sample is taken at
    once. A failing read is logged and skipped (the health snapshot already turns an
    unavailable backend into an ``error`` part, so this is a last resort).
    """

    def __init__(self, history: History, read: Callable[[], Reading]) -> None:
        self.history = history
        self.read = read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipeline-history", daemon=True)

    def start(self) -> None:
        """Start sampling in the background."""
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop sampling; waits at most ``timeout_s`` for a sample in progress."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.history.add(*self.read())
            except Exception as exc:  # a sampler that dies silently would freeze the charts
                log.warning("pipeline history sample failed: %s", exc)
            self._stop.wait(self.history.interval_s)


def sampler_of(state: Any) -> Sampler:
    """A sampler of every declared stream into ``state.history``.

    It reads through the app's own speed reader and Kafka probe (the ones its routes use).
    """
    from serving.deps import probe_of, speed_of
    from serving.pipeline import now_ms, streams_status

    def read() -> Reading:
        at = now_ms()
        return at, streams_status(state.settings, speed_of(state), probe_of(state), at)

    return Sampler(state.history, read)


__all__ = ["History", "Sampler", "rate", "sampler_of", "stream_sample"]
