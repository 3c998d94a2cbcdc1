"""The speed consumer: Kafka → realtime views in Redis, incrementally and effectively once.

It covers what the batch layer has not seen yet. A consumer owns some partitions of its
stream's topic: all of them (``group=False``: assigned manually, as a Kappa replay or a
one-off catch-up runs), or the share a Kafka consumer group gives it (``group=True``: N
workers per stream, partitions moving between them as they join, crash or leave). Kafka
commits nothing: the only committed position of a partition is its offsets hash in
Redis, written in the same MULTI/EXEC as the increments it covers (:mod:`speed.store`).

Taking a partition (at start, or when the group assigns it) claims it in Redis, which
bumps its owner epoch and so fences out whoever wrote it before: a zombie that lost the
partition can write nothing more for it. The claim resumes from the stored offset or
rebuilds that partition (:mod:`speed.rebuild`). A write that finds the partition claimed
by someone else (:class:`lambdalab.errors.FencedOut`) drops that partition, pauses it and
carries on with the others; one whose offsets are gone (Redis lost its data) claims it
again and rebuilds it.

Each poll batch is split into events and dead letters
(:func:`lambdalab.deadletters.split`), aggregated in memory per partition for every view
of the stream (:func:`views.compute.aggregate_timed`, keyed by ingest window, key and
event bucket; the event time and ingest window of each record are computed once for all
views) and written with one transaction per partition. Malformed records go to the
dead-letter topic, which is flushed *before* the EXECs that move the offsets past them:
a crash in between only reports them again under the same key (kept once by compaction).
Expiry (:mod:`speed.expiry`) runs between batches in the same process, for the
partitions it owns.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kafka import ConsumerRebalanceListener, TopicPartition

from lambdalab.boundary import window_of
from lambdalab.deadletters import DeadLetters, Decoded, split
from lambdalab.errors import DefinitionError, FencedOut, ServiceUnavailable
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
# A group worker killed with SIGKILL leaves no LeaveGroup: the coordinator notices after the
# session timeout and moves its partitions then (~10 s). The poll loop returns every 500 ms,
# so a worker rejoins a rebalance well within the poll interval.
GROUP_TIMEOUTS = {
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 1_000,
    "max_poll_interval_ms": 60_000,
}


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

    No I/O in ``__init__``: :meth:`setup` connects and takes its partitions (all of them,
    or with ``group`` joins the stream's consumer group and takes what it assigns);
    :meth:`run` loops; :meth:`close` releases the clients (leaving the group).
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
        group: bool = False,
        worker: str = "",
    ) -> None:
        """A consumer of ``stream``; see the class docstring.

        ``output`` runs it as a second instance with offsets of its own (a Kappa replay into
        the views given in ``views``), beside the stream's usual consumer. ``group`` makes
        it one of N workers of the stream (:func:`group_id`); ``worker`` names it in logs and,
        in a group, is its static member id (``group_instance_id``): a worker restarted under
        the same name takes its partitions back without a rebalance (one that leaves for
        good gives them up after the session timeout).
        """
        self.settings = settings
        self.output = output
        self.group = group
        self.static = bool(worker)
        self.worker = worker or f"pid{os.getpid()}"
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
        self.owned: dict[int, int] = {}  # partition -> owner epoch this consumer holds
        self.position: dict[int, int] = {}  # partition -> next offset committed (owned only)
        self._pending: set[TopicPartition] = set()  # assigned by the group, not claimed yet
        self.horizon: dict[str, int | None] = {}
        self.applied = 0
        self.dead = 0
        self.freshness_ms: int | None = None
        self.rate = 0.0

    # --- lifecycle ----------------------------------------------------------------------

    def setup(self) -> None:
        """Connect to Kafka and Redis; take the partitions (resume or rebuild each)."""
        ensure_topics(self.settings)
        self.store = RealtimeStore(
            self.settings, self.topic, self._redis_client, output=self.output
        )
        extra: dict[str, Any] = {}
        if self.group:
            extra = {**GROUP_TIMEOUTS, "group_id": group_id(self.settings, self.store.source)}
            if self.static:
                extra["group_instance_id"] = self.worker
        self.consumer = kafka_consumer(self.settings, max_poll_records=self._max_poll, **extra)
        self.dead_letters = DeadLetters(
            self.settings, layer="speed", registry=self.metrics.registry
        )
        self.parts = partitions(self.consumer, self.topic)
        self.store.register(len(self.parts))
        self.dimensions = DimensionTables(self.settings, self.store.client)
        self._pin()
        self._refresh_horizons()
        if self.group:
            self.consumer.subscribe([self.topic], listener=_Listener(self))
        else:
            self.consumer.assign(self.parts)
            self._take(self.parts)

    def _pin(self) -> bool:
        """Pin the views to the newest dimension versions; True if a version changed.

        A changed version changes the view's fingerprint, so the next claim of each
        partition (:meth:`_resync`) rebuilds it, as a changed definition would (the speed
        layer and the next batch version then use the same dimension version).
        """
        if not any(v.enrich for v in self.declared.values()):
            return False
        pinned, self.tables = self.dimensions.pin(self.declared)
        changed = pinned != self.views
        self.views = pinned
        return changed

    def _take(self, tps: Iterable[TopicPartition]) -> None:
        """Claim partitions in Redis (fencing their previous owner), resume or rebuild each.

        Then seek to each one's offset and resume fetching it. A partition someone else
        claims meanwhile is left to them.
        """
        fresh, rebuild_epochs = [], {}
        for tp in sorted(tps):
            try:
                claim = self.store.claim(tp.partition, self.views)
            except FencedOut as exc:
                log.warning("[%s] %s: left to the other consumer", self.worker, exc)
                continue
            self.owned[tp.partition] = claim.epoch
            reason = needs_rebuild(claim.next, claim.fingerprints, self.views)
            if reason is None and claim.next is not None:
                self.position[tp.partition] = claim.next
            else:
                log.warning("[%s] rebuilding partition %d: %s", self.worker, tp.partition, reason)
                rebuild_epochs[tp] = claim.epoch
            if claim.freshness_ms is not None:
                fresh.append(claim.freshness_ms)
        if rebuild_epochs:
            start = rebuild(
                self.settings, self.store, self.consumer, rebuild_epochs, self.views, _now_ms()
            )
            self.position.update(start)
            self._drop(tp for tp in rebuild_epochs if tp.partition not in start)
        for tp in tps:
            self._pending.discard(tp)
            if tp.partition in self.owned:
                self.consumer.seek(tp, self.position[tp.partition])
                self.consumer.resume(tp)
        self.freshness_ms = max([*fresh, self.freshness_ms or 0]) or None
        log.info("[%s] owns partitions %s", self.worker, sorted(self.owned))

    def _drop(self, tps: Iterable[TopicPartition]) -> None:
        """Stop writing these partitions (revoked by the group, or claimed by another)."""
        for tp in tps:
            self.owned.pop(tp.partition, None)
            self.position.pop(tp.partition, None)
            self._pending.discard(tp)

    def _assigned(self, tps: Iterable[TopicPartition]) -> None:
        """The group assigned ``tps``: pause them until :meth:`_take` claims them.

        Called inside ``poll`` (the rebalance listener); the claim runs after it returns,
        and records fetched for an unclaimed partition are discarded.
        """
        tps = list(tps)
        if tps:
            self.consumer.pause(*tps)
        self._pending.update(tps)

    def _resync(self) -> None:
        """Claim every owned partition again: its stored offset, or a rebuild if unusable."""
        self._take([tp for tp in self.parts if tp.partition in self.owned] + list(self._pending))

    def close(self) -> None:
        """Release the Kafka clients (leaving the group); Redis connections are pooled."""
        for client in (getattr(self, "consumer", None), getattr(self, "dead_letters", None)):
            if client is not None:
                client.close()

    # --- one poll batch -----------------------------------------------------------------

    def step(self, timeout_ms: int = 500) -> int:
        """Poll once and apply the batch; return how many records it held.

        Each owned partition that moved gets one transaction. Its next offset is the
        consumer's position, not the last record + 1: reading committed data only, a
        position also moves past transaction markers and aborted records, which carry
        offsets but no record. A poll that only moved positions still commits them.
        """
        clock = _StageClock(self.metrics)
        polled = self.consumer.poll(timeout_ms=timeout_ms)
        taken = {tp.partition for tp in self._pending}
        if taken:  # the group assigned partitions during the poll: claim, seek, resume them
            self._take(list(self._pending))
        mine = {  # records of a partition just taken were not fetched from its claimed offset
            tp.partition: recs
            for tp, recs in polled.items()
            if tp.partition in self.owned and tp.partition not in taken
        }
        records = [r for recs in mine.values() for r in recs]
        nxt = {tp.partition: self.consumer.position(tp) for tp in self._owned_tps()}
        moved = sorted(p for p, o in nxt.items() if o != self.position.get(p))
        clock.lap("poll")
        if not moved:
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
        by_part: dict[int, list[TimedEvent]] = {p: [] for p in moved}
        for d, timed in zip(good, self._timed(good), strict=True):
            by_part[d.partition].append(timed)
        clock.lap("time")
        meta = {"freshness_ms": self.freshness_ms, "updated_ms": _now_ms()}
        applied = 0
        for p in moved:
            batch = {view: self._cells(view, by_part[p]) for view in self.views.values()}
            clock.lap("aggregate")
            if self._apply(p, batch, nxt[p], meta):
                applied += len(by_part[p])
            clock.lap("redis")
        self.applied += applied
        self.dead += len(dead)
        self.rate = self.metrics.batch(applied, len(dead))
        return len(records)

    def _owned_tps(self) -> list[TopicPartition]:
        return [tp for tp in self.parts if tp.partition in self.owned]

    def _apply(self, p: int, batch: Any, nxt: int, meta: Mapping[str, Any]) -> bool:
        """Write one partition's share; on FencedOut drop it (or rebuild it, when lost)."""
        try:
            self.store.apply(p, batch, self.owned[p], self.position[p], nxt, meta)
        except FencedOut as exc:
            log.warning("[%s] fenced out of partition %d: %s", self.worker, p, exc)
            tp = TopicPartition(self.topic, p)
            self._drop([tp])
            if exc.lost:  # Redis lost the partition: take it again (rebuild)
                self._take([tp])
            else:
                self.consumer.pause(tp)
            return False
        self.position[p] = nxt
        return True

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
        """Consume until stopped (or, with ``once``, until caught up with the end offsets).

        With ``once`` the end offsets are those at start, for the partitions it owns.
        """
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
            if target is not None and self._reached(target):
                break
            if time.monotonic() >= next_expiry:
                self._repin()
                self.expire_once()
                next_expiry = time.monotonic() + EXPIRY_EVERY_S
        self.expire_once()

    def _reached(self, target: Mapping[int, int]) -> bool:
        if self.group and not self.owned:
            return False
        return all(self.position.get(p, o) >= o for p, o in target.items() if p in self.owned)

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
        """Re-read the published cuts and delete windows below each view's horizon.

        Only in the partitions this consumer owns: each owner expires its own.
        """
        self._refresh_horizons()
        removed = 0
        for name in self.views:
            floor = self.horizon.get(name)
            if floor is not None:
                for p in list(self.owned):
                    removed += expire(self.store.client, self.store.part(p), name, floor)
            self.metrics.windows.labels(name).set(self.store.windows_held(name, self.owned))
        return removed

    def status(self) -> Status:
        """Applied and dead-letter counts, rate and total lag (from fetch high-waters)."""
        end = {}
        for tp in self._owned_tps():
            high = self.consumer.highwater(tp)
            if high is not None:
                end[tp.partition] = high
        lag = self.metrics.positions(self.position, end)
        return Status(self.applied, self.dead, self.rate, lag, self.freshness_ms)


class _Listener(ConsumerRebalanceListener):
    """Hands the group's rebalances to the consumer: revoked partitions stop at once."""

    def __init__(self, owner: SpeedConsumer) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.owner._drop(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.owner._assigned(assigned)


def group_id(settings: Settings, topic: str) -> str:
    """The consumer group of a stream's speed workers (Kafka commits no offsets for it)."""
    return f"{settings.namespace}.speed.{topic}"


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
