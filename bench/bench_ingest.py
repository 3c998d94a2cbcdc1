"""Ingest benchmark: HTTP batch ingest and the generator against a plain producer loop.

Every number is in events/s, and each platform path is reported as a ratio against a
plain kafka-python producer loop (acks=all) sending the same number of events to the
same cluster in the same run, so the machine's speed cancels out. ``run(settings)`` is
called by ``python -m bench ingest``; ``python -m bench.bench_ingest`` runs it alone.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import uvicorn
from fastapi import FastAPI
from kafka import KafkaProducer

from bench.summary import figure
from ingest.generator import GeneratorConfig, generate
from ingest.generator import run as run_generator
from ingest.http import router
from ingest.producer import EventProducer
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings, load_settings
from lambdalab.topics import ensure_topics
from lambdalab.wait import wait_until

EVENTS = 20_000
REPEATS = 3
HTTP_BATCH = 500


def _events(n: int, seed: int) -> list[dict[str, Any]]:
    return [p.event for p in generate(GeneratorConfig(seed=seed), datetime.now(UTC), n)]


def plain_producer(settings: Settings, values: list[bytes]) -> float:
    """Baseline: a bare kafka-python loop with acks=all; returns events/s."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    producer.send(settings.topic_for(PAGE_VIEWS.name), value=values[0]).get(
        timeout=30
    )  # connect first
    started = time.perf_counter()
    for value in values:
        producer.send(settings.topic_for(PAGE_VIEWS.name), value=value)
    producer.flush()
    elapsed = time.perf_counter() - started
    producer.close()
    return len(values) / elapsed


def generator_rate(settings: Settings, n: int) -> float:
    """The generator unpaced through EventProducer (generation included); events/s."""
    producer = EventProducer(settings, PAGE_VIEWS)
    producer.send_many(_events(1, seed=99))  # connect and warm up outside the timing
    started = time.perf_counter()
    planned = generate(GeneratorConfig(seed=2), datetime.now(UTC), n)
    sent = run_generator(planned, lambda b: len(producer.send_many(b)), paced=False)
    elapsed = time.perf_counter() - started
    producer.close()
    return sent / elapsed


def http_rate(settings: Settings, events: list[dict[str, Any]]) -> float:
    """POST /events in JSON batches of 500 to uvicorn on a free port; events/s."""
    app = FastAPI()
    app.state.settings = settings
    app.state.ingest = EventProducer(settings, PAGE_VIEWS)
    app.include_router(router)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout_s=30, interval_s=0.05, what="uvicorn started")
    headers = {"X-API-Key": settings.api.write_keys[0], "Content-Type": "application/json"}
    bodies = [orjson.dumps(events[i : i + HTTP_BATCH]) for i in range(0, len(events), HTTP_BATCH)]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            client.post("/events", content=bodies[0], headers=headers).raise_for_status()
            started = time.perf_counter()
            for body in bodies:
                client.post("/events", content=body, headers=headers).raise_for_status()
            elapsed = time.perf_counter() - started
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.ingest.close()
    return len(events) / elapsed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(settings: Settings, n: int = EVENTS, repeats: int = REPEATS) -> dict[str, Any]:
    """Measure the three paths over ``n`` events each, in turns, ``repeats`` times.

    Returns the medians (the old keys) and the figures of :mod:`bench.summary`.
    """
    ensure_topics(settings)
    events = _events(n, seed=1)
    base, http, gen = [], [], []
    for _ in range(repeats):
        base.append(plain_producer(settings, [orjson.dumps(e) for e in events]))
        http.append(http_rate(settings, events))
        gen.append(generator_rate(settings, n))
    b, h, g = (statistics.median(x) for x in (base, http, gen))
    plain = "plain kafka-python producer loop, acks=all"
    result: dict[str, Any] = {
        "events": n,
        "baseline_plain_producer_eps": round(b),
        "http_batch_eps": round(h),
        "http_vs_baseline": round(h / b, 3),
        "generator_eps": round(g),
        "generator_vs_baseline": round(g / b, 3),
        "figures": [
            figure(
                "ingest",
                "HTTP POST /events (batches of 500) events/s",
                "events/s",
                http,
                base,
                baseline_name=plain,
            ),
            figure(
                "ingest",
                "generator -> EventProducer events/s",
                "events/s",
                gen,
                base,
                baseline_name=plain,
            ),
        ],
    }
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ingest, {result['events']} events per path")
    for col in ("path", "events/s", "vs plain producer"):
        table.add_column(col)
    table.add_row(
        "plain kafka-python loop (acks=all)", str(result["baseline_plain_producer_eps"]), "1.000"
    )
    table.add_row(
        "HTTP POST /events, batches of 500",
        str(result["http_batch_eps"]),
        str(result["http_vs_baseline"]),
    )
    table.add_row(
        "generator -> EventProducer",
        str(result["generator_eps"]),
        str(result["generator_vs_baseline"]),
    )
    Console().print(table)


if __name__ == "__main__":
    import uuid

    run(load_settings(namespace=f"bench{uuid.uuid4().hex[:8]}"))
