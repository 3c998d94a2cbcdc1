"""Prometheus instruments of the serving layer, and the pipeline gauges read per scrape.

Counters and histograms live in one registry per app (tests create many apps). The
pipeline's state (ingest offsets, speed lag and freshness, batch age, dead letters) is not
pushed by the other layers; it is read at scrape time from the same snapshot the dashboard
shows (:mod:`serving.pipeline`) and rendered in a fresh registry.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Telemetry:
    """Request counts, request and query latency, partial answers: one set per app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lambdalab_http_requests",
            "HTTP requests served, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "lambdalab_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.query_seconds = Histogram(
            "lambdalab_query_latency_seconds",
            "Merged query latency (batch read + realtime read + merge) per view",
            ["view"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.partial = Counter(
            "lambdalab_query_partial",
            "Merged answers served partial (availability mode), by missing part",
            ["view", "missing"],
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request and its latency."""
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(method, route).observe(seconds)

    def observe_query(self, view: str, seconds: float, answer: dict[str, Any]) -> None:
        """Record one merged query's latency, and its missing parts if partial."""
        self.query_seconds.labels(view).observe(seconds)
        for part in answer.get("missing", []):
            self.partial.labels(view, part).inc()

    def render(self, snapshot: dict[str, Any]) -> bytes:
        """Prometheus text: this app's instruments followed by the pipeline gauges."""
        return generate_latest(self.registry) + generate_latest(pipeline_registry(snapshot))


def _gauge(reg: CollectorRegistry, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    return Gauge(name, doc, list(labels), registry=reg)


def pipeline_registry(snap: dict[str, Any]) -> CollectorRegistry:
    """A registry holding the pipeline gauges of one health snapshot."""
    reg = CollectorRegistry()
    up = _gauge(reg, "lambdalab_part_up", "1 when the part's backend answered", ("part",))
    for part in ("ingest", "speed", "dead_letters"):
        up.labels(part).set(0 if "error" in snap[part] else 1)
    _stream_gauges(reg, snap["streams"])
    _batch_gauges(reg, snap["batch"])
    _dead_letter_gauges(reg, snap["dead_letters"])
    return reg


def _stream_gauges(reg: CollectorRegistry, streams: dict[str, dict[str, Any]]) -> None:
    """End offsets, lag and freshness of every declared stream, labelled by stream."""
    end = _gauge(
        reg,
        "lambdalab_ingest_log_end_offset",
        "End offset per partition of a stream's topic (rate() = ingest rate)",
        ("partition", "stream"),
    )
    lag = _gauge(reg, "lambdalab_speed_lag_records", "Speed-layer lag", ("partition", "stream"))
    fresh = _gauge(
        reg,
        "lambdalab_speed_freshness_timestamp_seconds",
        "Newest ingest time applied by the speed layer",
        ("stream",),
    )
    age = _gauge(
        reg, "lambdalab_speed_freshness_age_seconds", "Seconds since that ingest time", ("stream",)
    )
    pending = _gauge(
        reg,
        "lambdalab_archiver_pending_records",
        "Records in the log not yet landed into the master dataset",
        ("stream",),
    )
    for name, status in streams.items():
        if "pending_total" in status.get("archiver", {}):
            pending.labels(name).set(status["archiver"]["pending_total"])
        for p, off in status["ingest"].get("end_offsets", {}).items():
            end.labels(p, name).set(off)
        speed = status.get("speed", {})
        for p, n in speed.get("lag", {}).items():
            lag.labels(p, name).set(n)
        if speed.get("freshness_ms") is not None:
            fresh.labels(name).set(speed["freshness_ms"] / 1000)
            age.labels(name).set(speed["freshness_age_s"])


def _batch_gauges(reg: CollectorRegistry, batch: dict[str, Any]) -> None:
    version = _gauge(reg, "lambdalab_batch_version", "Current batch version", ("view",))
    age = _gauge(reg, "lambdalab_batch_age_seconds", "Seconds since the current cut", ("view",))
    up = _gauge(reg, "lambdalab_batch_up", "1 when the batch store answered", ("view",))
    for view, info in batch.items():
        up.labels(view).set(0 if "error" in info else 1)
        if info.get("version") is not None:
            version.labels(view).set(info["version"])
            age.labels(view).set(info["age_s"])


def _dead_letter_gauges(reg: CollectorRegistry, dead: dict[str, Any]) -> None:
    total = _gauge(reg, "lambdalab_dead_letters", "Dead letters so far (deduplicated by key)")
    by_reason = _gauge(
        reg, "lambdalab_dead_letters_by_reason", "Dead letters by reason", ("reason",)
    )
    total.set(dead.get("total", 0))
    for reason, n in dead.get("by_reason", {}).items():
        by_reason.labels(reason).set(n)
