"""The speed consumer: Kafka → realtime views in Redis, incrementally and effectively once.

It covers what the batch layer has not seen yet. All partitions of the events topic are
assigned manually (no consumer group, no auto-commit): the only committed position is
the offsets hash in Redis, written in the same MULTI/EXEC as the increments it covers
(:mod:`speed.store`). Each poll batch is split into events and dead letters
(:func:`lambdalab.deadletters.split`), aggregated in memory for every view of the stream
(:func:`views.compute.aggregate_timed`, keyed by ingest window, key and event bucket;
the event time and ingest window of each record are computed once for all views) and
written once. Malformed records go to the
dead-letter topic, which is flushed *before* the EXEC that moves the offsets past them:
a crash in between only reports them again under the same key (kept once by compaction).
Start-up resumes from the stored offsets or rebuilds (:mod:`speed.rebuild`); expiry
(:mod:`speed.expiry`) runs between batches in the same process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lambdalab.boundary import window_of
from lambdalab.deadletters import DeadLetters, Decoded, split
from lambdalab.errors import DefinitionError, ServiceUnavailable
from lambdalab.paths import RedisKeys
from lambdalab.schema import Stream, parse_ts_ms
from lambdalab.settings import Settings
from lambdalab.topics import end_offsets_of, ensure_topics, kafka_consumer, partitions
from speed.dimensions import DimensionTables
from speed.expiry import expire
from speed.metrics import SpeedMetrics
from speed.rebuild import horizons, needs_rebuild, rebuild
from speed.store import RealtimeStore
from views.compute import Cell, TimedEvent, aggregate_timed
from views.definition import ViewDef
from views.dimension import Table
from views.registry import views_of

log = logging.getLogger(__name__)
EXPIRY_EVERY_S = 15.0
# Records per poll batch, at most. Redis work grows with the cells a batch touches, not
# with its records (a batch is aggregated in memory first), so under load a big batch
# costs far less per event; with little load a poll returns whatever has arrived.
MAX_POLL_RECORDS = 20_000


@dataclass
class Status:
    """What the live status line shows after each batch."""

    applied: int
    dead_letters: int
    rate: float
    lag: int
    freshness_ms: int | None


class SpeedConsumer:
    """A long-running consumer of one stream's topic feeding that stream's realtime views.

    No I/O in ``__init__``: :meth:`setup` connects, resumes or rebuilds; :meth:`run`
    loops; :meth:`close` releases the clients.
    """

    def __init__(
        self,
        settings: Settings,
        stream: Stream,
        *,
        views: Mapping[str, ViewDef] | None = None,
        metrics: SpeedMetrics | None = None,
        redis_client: Any | None = None,
        max_poll_records: int = MAX_POLL_RECORDS,
        output: str | None = None,
    ) -> None:
        """A consumer of ``stream``; see the class docstring.

        ``output`` runs it as a second instance with offsets of its own (a Kappa replay into
        the views given in ``views``), beside the stream's usual consumer.
        """
        self.settings = settings
        self.output = output
        self.declared = dict(views) if views is not None else views_of(stream.name)
        self.views = dict(self.declared)  # pinned to dimension versions at setup
        self.tables: dict[str, Table] = {}
        if not self.views:
            msg = f"no registered view reads stream {stream.name!r}: nothing to keep in Redis"
            raise DefinitionError(msg)
        self.stream = stream
        self.metrics = metrics if metrics is not None else SpeedMetrics()
        self.topic = settings.topic_for(stream.name)
        self._redis_client = redis_client
        self._max_poll = max_poll_records
        self.position: dict[int, int] = {}
        self.horizon: dict[str, int | None] = {}
        self.applied = 0
        self.dead = 0
        self.freshness_ms: int | None = None
        self.rate = 0.0

    # --- lifecycle ----------------------------------------------------------------------

    def setup(self) -> None:
        """Connect to Kafka and Redis; resume from the stored offsets or rebuild."""
        ensure_topics(self.settings)
        self.store = RealtimeStore(
            self.settings, self.topic, self._redis_client, output=self.output
        )
        self.consumer = kafka_consumer(self.settings, max_poll_records=self._max_poll)
        self.dead_letters = DeadLetters(
            self.settings, layer="speed", registry=self.metrics.registry
        )
        self.parts = partitions(self.consumer, self.topic)
        self.consumer.assign(self.parts)
        self.dimensions = DimensionTables(self.settings, self.store.client)
        self._pin()
        self._refresh_horizons()
        self._resync()

    def _pin(self) -> bool:
        """Pin the views to the newest dimension versions; True if a version changed.

        A changed version changes the view's fingerprint, so the next :meth:`_resync`
        rebuilds it, as a changed definition would (the speed layer and the next batch
        version then use the same dimension version).
        """
        if not any(v.enrich for v in self.declared.values()):
            return False
        pinned, self.tables = self.dimensions.pin(self.declared)
        changed = pinned != self.views
        self.views = pinned
        return changed

    def _resync(self) -> None:
        """Seek to the offsets committed in Redis, rebuilding if they are unusable."""
        offsets = self.store.read_offsets()
        stored = {name: self.store.fingerprint(name) for name in self.views}
        reason = needs_rebuild(offsets, stored, self.views)
        if reason is None and offsets and set(offsets) != {tp.partition for tp in self.parts}:
            reason = f"partitions changed: stored {sorted(offsets)}"
        if reason is not None or offsets is None:
            log.warning("rebuilding the speed layer: %s", reason)
            offsets = rebuild(
                self.settings, self.store, self.consumer, self.parts, self.views, _now_ms()
            )
        self.position = dict(offsets)
        for tp in self.parts:
            self.consumer.seek(tp, self.position[tp.partition])
        meta_key = RedisKeys(self.settings).meta(next(iter(self.views)))
        raw = self.store.client.hget(meta_key, "freshness_ms")
        self.freshness_ms = self.freshness_ms or (int(raw) if raw else None)

    def close(self) -> None:
        """Release the Kafka clients (Redis connections are pooled)."""
        for client in (getattr(self, "consumer", None), getattr(self, "dead_letters", None)):
            if client is not None:
                client.close()

    # --- one poll batch -----------------------------------------------------------------

    def step(self, timeout_ms: int = 500) -> int:
        """Poll once and apply the batch; return how many records it held.

        The next offsets are the consumer's positions, not the last record + 1: reading
        committed data only, a position also moves past transaction markers and aborted
        records, which carry offsets but no record. A poll that only moved positions
        still commits them (with no increments).
        """
        clock = _StageClock(self.metrics)
        polled = self.consumer.poll(timeout_ms=timeout_ms)
        records = [r for recs in polled.values() for r in recs]
        nxt = {tp.partition: self.consumer.position(tp) for tp in self.parts}
        clock.lap("poll")
        if not records and nxt == self.position:
            return 0
        good, dead = split(self.stream, records)
        clock.lap("decode")
        if dead:
            self.dead_letters.report(dead)
            self.dead_letters.flush()
            clock.lap("dead_letters")
        if records:
            newest = max(r.timestamp for r in records)
            self.freshness_ms = max(self.freshness_ms or newest, newest)
        timed = self._timed(good)
        clock.lap("time")
        batch = {view: self._cells(view, timed) for view in self.views.values()}
        clock.lap("aggregate")
        meta = {"freshness_ms": self.freshness_ms, "updated_ms": _now_ms()}
        self.store.apply(batch, self.position, nxt, meta)
        clock.lap("redis")
        self.position = nxt
        self.applied += len(good)
        self.dead += len(dead)
        self.rate = self.metrics.batch(len(good), len(dead))
        return len(records)

    def _timed(self, good: list[Decoded]) -> list[TimedEvent]:
        """Each event's ingest window and event time, computed once for every view."""
        window_s, time_field = self.settings.batch.window_s, self.stream.time_field
        return [
            (window_of(d.ingest_ms, window_s), parse_ts_ms(d.event[time_field]), d.event)
            for d in good
        ]

    def _cells(self, view: ViewDef, timed: list[TimedEvent]) -> dict[Cell, Any]:
        cells = aggregate_timed(view, timed, self.tables)
        floor = self.horizon.get(view.name)
        if floor is None:
            return cells
        return {cell: acc for cell, acc in cells.items() if cell[0] >= floor}

    # --- the loop -----------------------------------------------------------------------

    def run(
        self,
        *,
        once: bool = False,
        stop: threading.Event | None = None,
        on_status: Callable[[Status], None] | None = None,
    ) -> None:
        """Consume until stopped (or, with ``once``, until the end offsets at start)."""
        stop = stop or threading.Event()
        target = self._end_offsets() if once else None
        next_expiry = time.monotonic() + EXPIRY_EVERY_S
        while not stop.is_set():
            try:
                self.step()
            except ServiceUnavailable as exc:
                log.warning("%s; retrying from the committed offsets", exc)
                time.sleep(1.0)
                self._resync()
                continue
            if on_status is not None:
                on_status(self.status())
            if target is not None and all(self.position[p] >= o for p, o in target.items()):
                break
            if time.monotonic() >= next_expiry:
                self._repin()
                self.expire_once()
                next_expiry = time.monotonic() + EXPIRY_EVERY_S
        self.expire_once()

    def _repin(self) -> None:
        """Rebuild the views whose dimension got a new version (checked every expiry)."""
        try:
            if self._pin():
                self._resync()
        except ServiceUnavailable as exc:
            log.warning("dimension check skipped: %s", exc)

    def _end_offsets(self) -> dict[int, int]:
        return end_offsets_of(self.consumer, self.parts)

    def _refresh_horizons(self) -> None:
        try:
            self.horizon = horizons(self.settings, self.views)
        except ServiceUnavailable as exc:
            log.warning("expiry skipped: %s", exc)

    def expire_once(self) -> int:
        """Re-read the published cuts and delete windows below each view's horizon."""
        self._refresh_horizons()
        keys = RedisKeys(self.settings)
        removed = 0
        for name in self.views:
            floor = self.horizon.get(name)
            if floor is not None:
                removed += expire(self.store.client, keys, name, floor)
            self.metrics.windows.labels(name).set(self.store.windows_held(name))
        return removed

    def status(self) -> Status:
        """Applied and dead-letter counts, rate and total lag (from fetch high-waters)."""
        end = {}
        for tp in self.parts:
            high = self.consumer.highwater(tp)
            if high is not None:
                end[tp.partition] = high
        lag = self.metrics.positions(self.position, end)
        return Status(self.applied, self.dead, self.rate, lag, self.freshness_ms)


class _StageClock:
    """Adds the wall time since the previous lap to ``lambdalab_speed_stage_seconds``."""

    def __init__(self, metrics: SpeedMetrics) -> None:
        self.stage = metrics.stage
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stage.labels(stage).inc(now - self.last)
        self.last = now


def _now_ms() -> int:
    return int(time.time() * 1000)


def catch_up(settings: Settings, stream: Stream, **kwargs: Any) -> SpeedConsumer:
    """Run a consumer until it reaches the end offsets seen at its start, then close it.

    ``kwargs`` are as for :class:`SpeedConsumer`. Returns the consumer, for its counters.
    """
    consumer = SpeedConsumer(settings, stream, **kwargs)
    consumer.setup()
    try:
        consumer.run(once=True)
    finally:
        consumer.close()
    return consumer
