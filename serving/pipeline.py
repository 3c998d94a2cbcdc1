"""The pipeline's health as the serving layer sees it: batch age, freshness, lag, dead letters.

Every declared stream is shown on its own (``streams``) and summed (``ingest``, ``speed``).
One snapshot feeds the dashboard's health panel (``GET /pipeline``) and the Prometheus
gauges (``GET /metrics``). Each part is read on its own: an unavailable backend marks
its part with an ``error`` instead of failing the whole snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from hdfs import InsecureClient

from batch.master import landed_offsets
from lambdalab.errors import LambdaLabError
from lambdalab.hdfs import answering
from lambdalab.schema import STREAMS
from lambdalab.settings import Settings
from serving.deps import BatchSource, SpeedSource
from serving.kafkaprobe import KafkaProbe
from serving.merge import iso_ms
from views.registry import all_views, views_of


def now_ms() -> int:
    """Wall-clock now, ms since the epoch (UTC)."""
    return int(time.time() * 1000)


def _guard(read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return read()
    except LambdaLabError as exc:
        return {"error": str(exc)}


def batch_status(batch: BatchSource, at_ms: int) -> dict[str, Any]:
    """Per view: current version, its cut (ISO) and age in seconds (now - cut)."""
    out: dict[str, Any] = {}
    for name in all_views():
        out[name] = _guard(partial(_one_view, batch, name, at_ms))
    return out


def _one_view(batch: BatchSource, view: str, at_ms: int) -> dict[str, Any]:
    info = batch.current(view)
    if info is None:
        return {"version": None, "cut": None, "cut_ms": None, "age_s": None}
    return {
        "version": info.version,
        "cut": iso_ms(info.cut_ms),
        "cut_ms": info.cut_ms,
        "age_s": round((at_ms - info.cut_ms) / 1000, 3),
    }


def speed_status(
    speed: SpeedSource, stream: str, at_ms: int, ends: dict[int, int] | None
) -> dict[str, Any]:
    """Freshness, committed offsets and lag per partition of one stream's speed consumer.

    ``ends`` are the topic's end offsets (None when Kafka did not answer: no lag then).
    """
    reported = speed.status(stream)
    fresh = reported.get("freshness_ms")
    offsets = {int(p): o for p, o in reported.get("offsets", {}).items()}
    out: dict[str, Any] = {
        "freshness": iso_ms(fresh),
        "freshness_ms": fresh,
        "freshness_age_s": None if fresh is None else round((at_ms - fresh) / 1000, 3),
        "offsets": {str(p): o for p, o in sorted(offsets.items())},
    }
    if ends is not None:
        lag = {p: max(0, end - offsets.get(p, 0)) for p, end in sorted(ends.items())}
        out["lag"] = {str(p): n for p, n in lag.items()}
        out["lag_total"] = sum(lag.values())
    out["reported"] = reported
    return out


def ingest_status(ends: dict[int, int]) -> dict[str, Any]:
    """Records accepted into one stream's topic so far, from its end offsets."""
    return {"end_offsets": {str(p): o for p, o in ends.items()}, "records": sum(ends.values())}


def stream_status(
    settings: Settings, speed: SpeedSource, probe: KafkaProbe, stream: str, at_ms: int
) -> dict[str, Any]:
    """One declared stream: its topic, what was ingested, and its speed consumer.

    The topic's end offsets are read once, for both the ingest part and the speed lag.
    The speed part is present only when the stream has views to keep.
    """
    topic = settings.topic_for(stream)
    read = _guard(lambda: {"ends": probe.end_offsets(topic)})
    ends: dict[int, int] | None = read.get("ends")
    out: dict[str, Any] = {
        "topic": topic,
        "views": sorted(views_of(stream)),
        "ingest": read if ends is None else ingest_status(ends),
    }
    if out["views"]:
        out["speed"] = _guard(lambda: speed_status(speed, stream, at_ms, ends))
    return out


def archiver_status(
    settings: Settings, client: InsecureClient, stream: str, ingest: dict[str, Any]
) -> dict[str, Any]:
    """How far the archiver landed one stream into the master dataset, and what is left.

    ``landed``: per partition, the offset after the last record landed; ``pending``: end
    offset minus that (what a batch cycle would still have to land).
    """
    ends = {int(p): o for p, o in ingest.get("end_offsets", {}).items()}
    with answering(settings, f"the master dataset of {stream}"):
        landed = landed_offsets(client, settings, stream, ends)
    pending = {p: max(0, ends[p] - landed[p]) for p in sorted(ends)}
    return {
        "landed": {str(p): o for p, o in landed.items()},
        "pending": {str(p): n for p, n in pending.items()},
        "pending_total": sum(pending.values()),
    }


def streams_status(
    settings: Settings, speed: SpeedSource, probe: KafkaProbe, at_ms: int
) -> dict[str, dict[str, Any]]:
    """:func:`stream_status` of every declared stream (what the history sampler keeps)."""
    return {name: stream_status(settings, speed, probe, name, at_ms) for name in STREAMS}


def _with_archiver(
    settings: Settings, client: InsecureClient, streams: dict[str, dict[str, Any]]
) -> None:
    for name, status in streams.items():
        ingest = status["ingest"]
        if "error" in ingest:
            status["archiver"] = {"error": f"ingest unknown: {ingest['error']}"}
        else:
            status["archiver"] = _guard(partial(archiver_status, settings, client, name, ingest))


def _totals(streams: dict[str, dict[str, Any]], part: str) -> dict[str, Any]:
    """One part (ingest or speed) summed over every stream; partitions as ``stream/p``."""
    found = {name: s[part] for name, s in streams.items() if part in s}
    errors = [f"{name}: {p['error']}" for name, p in found.items() if "error" in p]
    if errors:
        return {"error": "; ".join(errors)}
    out: dict[str, Any] = {}
    for key in ("end_offsets", "offsets", "lag"):
        merged = {f"{n}/{k}": v for n, p in found.items() for k, v in p.get(key, {}).items()}
        if any(key in p for p in found.values()):
            out[key] = merged
    for key in ("records", "lag_total"):
        if any(key in p for p in found.values()):
            out[key] = sum(p.get(key, 0) for p in found.values())
    fresh = [p["freshness_ms"] for p in found.values() if p.get("freshness_ms") is not None]
    if part == "speed":
        out["freshness_ms"] = min(fresh) if fresh else None
        out["freshness"] = iso_ms(out["freshness_ms"])
        age = [p["freshness_age_s"] for p in found.values() if p.get("freshness_age_s") is not None]
        out["freshness_age_s"] = max(age) if age else None
    return out


def snapshot(
    settings: Settings,
    batch: BatchSource,
    speed: SpeedSource,
    probe: KafkaProbe,
    hdfs: InsecureClient,
) -> dict[str, Any]:
    """The whole health snapshot, taken now, for ``/pipeline`` and ``/metrics``.

    Every declared stream (ingest, archiver and speed), the totals over them, the batch
    views, and the dead letters.
    """
    at = now_ms()
    streams = streams_status(settings, speed, probe, at)
    _with_archiver(settings, hdfs, streams)
    return {
        "at": iso_ms(at),
        "at_ms": at,
        "streams": streams,
        "ingest": _totals(streams, "ingest"),
        "speed": _totals(streams, "speed"),
        "batch": batch_status(batch, at),
        "dead_letters": _guard(probe.dead_letters),
    }
