"""The pipeline's health as the serving layer sees it: batch age, freshness, lag, dead letters.

One snapshot feeds the dashboard's health panel (``GET /pipeline``) and the Prometheus
gauges (``GET /metrics``). Each part is read on its own: an unavailable backend marks
its part with an ``error`` instead of failing the whole snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from lambdalab.errors import LambdaLabError
from lambdalab.settings import Settings
from serving.deps import BatchSource, SpeedSource
from serving.kafkaprobe import KafkaProbe
from serving.merge import iso_ms
from views.registry import all_views


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
    settings: Settings, speed: SpeedSource, probe: KafkaProbe, at_ms: int
) -> dict[str, Any]:
    """Freshness, committed offsets and lag per partition of the speed layer."""
    fresh = speed.freshness_ms()
    offsets = speed.offsets()
    out: dict[str, Any] = {
        "freshness": iso_ms(fresh),
        "freshness_ms": fresh,
        "freshness_age_s": None if fresh is None else round((at_ms - fresh) / 1000, 3),
        "offsets": {str(p): o for p, o in sorted(offsets.items())},
    }
    ends = _guard(lambda: {"ends": probe.end_offsets(settings.events_topic)})
    if "ends" in ends:
        lag = {p: max(0, end - offsets.get(p, 0)) for p, end in sorted(ends["ends"].items())}
        out["lag"] = {str(p): n for p, n in lag.items()}
        out["lag_total"] = sum(lag.values())
    out["reported"] = _guard(speed.status)
    return out


def ingest_status(settings: Settings, probe: KafkaProbe) -> dict[str, Any]:
    """Records accepted into the events topic so far (its end offsets)."""
    ends = probe.end_offsets(settings.events_topic)
    return {"end_offsets": {str(p): o for p, o in ends.items()}, "records": sum(ends.values())}


def snapshot(
    settings: Settings, batch: BatchSource, speed: SpeedSource, probe: KafkaProbe
) -> dict[str, Any]:
    """The whole health snapshot: ingest, speed, batch, dead letters, taken now."""
    at = now_ms()
    return {
        "at": iso_ms(at),
        "at_ms": at,
        "ingest": _guard(lambda: ingest_status(settings, probe)),
        "speed": _guard(lambda: speed_status(settings, speed, probe, at)),
        "batch": batch_status(batch, at),
        "dead_letters": _guard(probe.dead_letters),
    }
