"""Rebuild: the speed layer is disposable (invariant 6).

The rule, applied by the consumer at start:

1. **When.** Per Kafka partition, when a consumer takes it (:meth:`RealtimeStore.claim`):
   rebuild the partition if its next offset is missing (Redis lost its data: FLUSHALL, a
   new Redis, a first start, or data of an older key layout) or if any registered view's
   fingerprint differs from the one stored in the partition's meta hash (a view is new or
   its definition changed). Otherwise resume from the stored offset.
2. **From where.** Per view, the start is its expiry horizon: the cut of the *previous*
   published batch version (:func:`lambdalab.boundary.horizon`); with fewer than two published
   versions, the beginning of the log. The consumer re-reads Kafka from the earliest of
   these over all views, per partition the first offset whose (LogAppendTime) timestamp
   is ≥ that cut (``KafkaConsumer.offsets_for_times``). Windows below a view's own
   horizon are skipped. Rebuilt state therefore equals what a consumer that never lost
   Redis would hold after expiry: every window the serving layer may still ask for.
3. **How.** Per partition, one MULTI/EXEC on its slot drops the partition's realtime keys
   of the stream's views, writes its start offset and each view's fingerprint, fenced by
   the epoch the claim took; consumption then carries on as after any restart. A crash
   before the EXEC changes nothing (the rebuild simply happens again).
   If HDFS does not answer, the rebuild starts from the beginning (slower, still exact).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from kafka import KafkaConsumer, TopicPartition

from lambdalab.boundary import horizon
from lambdalab.errors import FencedOut, ServiceUnavailable
from lambdalab.hdfs import published_cuts
from lambdalab.settings import Settings
from lambdalab.topics import end_offsets_of
from speed.store import RealtimeStore
from views.definition import ViewDef

log = logging.getLogger(__name__)


def needs_rebuild(
    next_offset: int | None,
    stored: Mapping[str, str | None],
    views: Mapping[str, ViewDef],
) -> str | None:
    """Why a partition needs a rebuild (a reason), or None to resume from ``next_offset``.

    Args:
        next_offset: the partition's stored next offset (None when missing).
        stored: view name -> fingerprint stored in the partition's meta hash.
        views: the registered views.
    """
    if next_offset is None:
        return "offsets missing (Redis lost its data or first start)"
    changed = sorted(n for n, v in views.items() if stored.get(n) != v.fingerprint)
    if changed:
        return f"view(s) new or changed: {', '.join(changed)}"
    return None


def horizons(settings: Settings, views: Mapping[str, ViewDef]) -> dict[str, int | None]:
    """View -> expiry horizon (None: keep everything). Raises ServiceUnavailable."""
    return {name: horizon(published_cuts(settings, name)) for name in views}


def rebuild_cut(found: Mapping[str, int | None]) -> int | None:
    """The ingest time to re-read Kafka from: the earliest horizon; None = the beginning."""
    if not found or any(h is None for h in found.values()):
        return None
    return min(h for h in found.values() if h is not None)


def start_offsets(consumer: KafkaConsumer, parts: list[TopicPartition], cut: int | None) -> dict:
    """Per partition the first offset with ingest time ≥ ``cut`` (beginning if None)."""
    begin = consumer.beginning_offsets(parts)
    if cut is None:
        return {tp.partition: begin[tp] for tp in parts}
    end = end_offsets_of(consumer, parts)
    found = consumer.offsets_for_times({tp: cut for tp in parts})
    return {
        tp.partition: (found[tp].offset if found.get(tp) else end[tp.partition]) for tp in parts
    }


def rebuild(
    settings: Settings,
    store: RealtimeStore,
    consumer: KafkaConsumer,
    epochs: Mapping[TopicPartition, int],
    views: Mapping[str, ViewDef],
    now_ms: int,
) -> dict[int, int]:
    """Reset these partitions (each with the epoch its claim took) and return their start.

    A partition another consumer claimed meanwhile (:class:`FencedOut`) is left to it and
    left out of the result.
    """
    try:
        cut = rebuild_cut(horizons(settings, views))
    except ServiceUnavailable as exc:
        log.warning("rebuild from the beginning: %s", exc)
        cut = None
    start = start_offsets(consumer, list(epochs), cut)
    meta = {"rebuilt_from_ms": -1 if cut is None else cut, "rebuilt_at_ms": now_ms}
    for tp, epoch in epochs.items():
        try:
            store.reset(tp.partition, views, epoch, start[tp.partition], meta)
        except FencedOut as exc:
            log.warning("partition %d not rebuilt: %s", tp.partition, exc)
            del start[tp.partition]
    log.info("speed layer rebuilt from cut %s at offsets %s", cut, start)
    return start
