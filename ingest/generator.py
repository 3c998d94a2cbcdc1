"""The event generator: realistic, reproducible traffic for the lab, the tests and the bench.

Deterministic for a seed and a start time (``random.Random(seed)``, no wall clock inside):
the same arguments give the same events byte for byte, which is what lets a test write
them to an NDJSON file and use that file as its oracle. Realism: URLs and users follow
a Zipf law (a few hot pages, a long tail), referrers are mostly a handful of sites, a
fraction of events is late (event time minutes to hours before the moment they are
sent: they land in the ingest window in which they arrive), and traffic comes in bursts.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any, BinaryIO

import orjson

from lambdalab.errors import LambdaLabError
from lambdalab.schema import PAGE_VIEWS, format_ts

STREAM = PAGE_VIEWS  # the stream whose events this generator makes
REFERRERS = ("https://www.google.com/", "https://news.ycombinator.com/", "https://t.co/", None)


@dataclass(frozen=True)
class GeneratorConfig:
    """Shape of the generated traffic."""

    seed: int = 42
    rate: float = 100.0  # events per second outside bursts
    urls: int = 500
    users: int = 5000
    zipf_s: float = 1.1
    late_fraction: float = 0.05
    late_min_s: float = 120.0
    late_max_s: float = 3 * 3600.0
    burst_chance: float = 0.002  # per event, chance that a burst starts
    burst_factor: float = 8.0
    burst_events: int = 200


@dataclass(frozen=True)
class Planned:
    """One event and when (seconds after the start) it is due to be sent."""

    due_s: float
    event: dict[str, Any]
    late: bool


def zipf_cum_weights(n: int, s: float) -> list[float]:
    """Cumulative Zipf weights 1/k^s for ranks 1..n (for ``Random.choices``)."""
    return list(itertools.accumulate(1.0 / (k**s) for k in range(1, n + 1)))


def generate(
    config: GeneratorConfig, start: datetime, count: int | None = None
) -> Iterator[Planned]:
    """Planned events from ``start`` (UTC): ``count`` of them, or endless when None."""
    rng = Random(config.seed)
    url_w = zipf_cum_weights(config.urls, config.zipf_s)
    user_w = zipf_cum_weights(config.users, config.zipf_s)
    ranks_u, ranks_p = range(config.urls), range(config.users)
    due, burst_left = 0.0, 0
    for _ in range(count) if count is not None else itertools.count():
        if burst_left == 0 and rng.random() < config.burst_chance:
            burst_left = config.burst_events
        rate = config.rate * (config.burst_factor if burst_left else 1.0)
        burst_left = max(0, burst_left - 1)
        due += rng.expovariate(rate)
        late = rng.random() < config.late_fraction
        lag = rng.uniform(config.late_min_s, config.late_max_s) if late else 0.0
        url = rng.choices(ranks_u, cum_weights=url_w)[0]
        user = rng.choices(ranks_p, cum_weights=user_w)[0]
        event = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "url": f"https://shop.example/p/{url}",
            "user_id": f"u{user:06d}",
            "referrer": rng.choice(REFERRERS),
            "bytes": int(rng.lognormvariate(9.0, 1.0)),
            "event_time": format_ts(start + timedelta(seconds=due - lag)),
        }
        yield Planned(due, event, late)


def utc_now() -> datetime:
    """Now, timezone-aware UTC (the default start of a generator run)."""
    return datetime.now(UTC)


Sink = Callable[[list[dict[str, Any]]], int]


def run(
    planned: Iterable[Planned],
    sink: Sink,
    *,
    duration_s: float | None = None,
    paced: bool = True,
    out: BinaryIO | None = None,
    batch_size: int = 500,
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Send planned events through ``sink`` (acked batches); return how many were sent.

    Paced: each event leaves no earlier than its due time; unpaced: as fast as the sink
    takes them. Every sent event is appended to ``out`` as one NDJSON line, exactly the
    bytes sent, once its batch is acknowledged: the file is the oracle of what was accepted.
    """
    clock = time.monotonic()
    batch: list[dict[str, Any]] = []
    sent = 0

    def flush() -> None:
        nonlocal sent, batch
        if batch:
            sent += sink(batch)
            if out is not None:
                out.write(b"".join(orjson.dumps(e) + b"\n" for e in batch))
            if on_sent is not None:
                on_sent(len(batch))
            batch = []

    for p in planned:
        if duration_s is not None and p.due_s > duration_s:
            break
        wait = p.due_s - (time.monotonic() - clock)
        if paced and wait > 0.02:
            flush()
            time.sleep(max(0.0, p.due_s - (time.monotonic() - clock)))
        batch.append(p.event)
        if len(batch) >= batch_size:
            flush()
    flush()
    return sent


def http_sink(url: str, api_key: str, timeout_s: float = 30.0) -> Sink:
    """A sink posting each batch as a JSON array to ``POST {url}/events``."""
    import httpx

    client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s)

    def send(events: list[dict[str, Any]]) -> int:
        response = client.post(
            "/events",
            content=orjson.dumps(events),
            headers={"X-API-Key": api_key, "Content-Type": "application/json"},
        )
        if response.status_code != 200:
            msg = f"POST {url}/events answered {response.status_code}: {response.text[:300]}"
            raise IngestRejected(msg)
        return int(response.json()["accepted"])

    return send


class IngestRejected(LambdaLabError):
    """The HTTP service did not accept a batch; the message carries its answer."""
