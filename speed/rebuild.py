"""Rebuild: the speed layer is disposable (invariant 6).

The rule, applied by the consumer at start:

1. **When.** Rebuild if the offsets hash is missing (Redis lost its data: FLUSHALL, a
   new Redis, a first start) or if any registered view's fingerprint differs from the one
   stored in ``speed:{view}:meta`` (a view is new or its definition changed). Otherwise
   resume from the stored offsets.
2. **From where.** Per view, the start is its expiry horizon: the cut of the *previous*
   published batch version (:func:`lambdalab.boundary.horizon`); with fewer than two published
   versions, the beginning of the log. The consumer re-reads Kafka from the earliest of
   these over all views, per partition the first offset whose (LogAppendTime) timestamp
   is ≥ that cut (``KafkaConsumer.offsets_for_times``). Windows below a view's own
   horizon are skipped. Rebuilt state therefore equals what a consumer that never lost
   Redis would hold after expiry: every window the serving layer may still ask for.
3. **How.** One MULTI/EXEC drops every realtime key of the namespace, writes the start
   offsets and each view's fingerprint; consumption then carries on as after any
   restart. A crash before the EXEC changes nothing (the rebuild simply happens again).
   If HDFS does not answer, the rebuild starts from the beginning (slower, still exact).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from kafka import KafkaConsumer, TopicPartition

from lambdalab.boundary import horizon
from lambdalab.errors import ServiceUnavailable
from lambdalab.hdfs import published_cuts
from lambdalab.settings import Settings
from lambdalab.topics import end_offsets_of
from speed.store import RealtimeStore
from views.definition import ViewDef

log = logging.getLogger(__name__)


def needs_rebuild(
    offsets: Mapping[int, int] | None,
    stored: Mapping[str, str | None],
    views: Mapping[str, ViewDef],
) -> str | None:
    """Why a rebuild is needed (a reason), or None to resume from ``offsets``.

    Args:
        offsets: the stored offsets hash (None when missing).
        stored: view name -> fingerprint stored in its meta hash.
        views: the registered views.
    """
    if not offsets:
        return "offsets hash missing (Redis lost its data or first start)"
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
    parts: list[TopicPartition],
    views: Mapping[str, ViewDef],
    now_ms: int,
) -> dict[int, int]:
    """Reset the realtime data and return the offsets to consume from (see the rule)."""
    try:
        cut = rebuild_cut(horizons(settings, views))
    except ServiceUnavailable as exc:
        log.warning("rebuild from the beginning: %s", exc)
        cut = None
    start = start_offsets(consumer, parts, cut)
    meta = {"rebuilt_from_ms": -1 if cut is None else cut, "rebuilt_at_ms": now_ms}
    store.reset(views, start, meta)
    log.info("speed layer rebuilt from cut %s at offsets %s", cut, start)
    return start
