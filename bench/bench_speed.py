"""Benchmark of the speed layer: events/s and CPU per event against plain consume loops.

Same run, same topic, same events: (1) a plain kafka-python consume loop, (2) the same
loop plus orjson decoding and validation, (3) the speed layer (consume, decode, aggregate
every registered view, one MULTI/EXEC per poll batch into Redis). CPU time is this
process's ``time.process_time`` (the Redis server's own CPU is not included).

Run: ``.venv/bin/python -m bench.bench_speed [events]`` (uses a throwaway namespace).
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from rich.console import Console
from rich.table import Table

from lambdalab.schema import PAGE_VIEWS, format_ts
from lambdalab.settings import Settings, load_settings
from lambdalab.topics import ensure_topics
from speed.consumer import SpeedConsumer
from speed.store import connect


def produce(settings: Settings, count: int, seed: int = 7) -> None:
    """Send ``count`` valid page views with a seeded generator."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=20
    )
    for n in range(count):
        moment = now - timedelta(seconds=rng.randint(0, 7200))
        event = {
            "event_id": f"e{n}",
            "url": f"/page/{rng.randint(0, 200)}",
            "user_id": f"u{rng.randint(0, 5000)}",
            "referrer": rng.choice([None, "google", "news"]),
            "bytes": rng.randint(0, 100_000),
            "event_time": format_ts(moment),  # the normal form the edge writes
        }
        producer.send(settings.topic_for(PAGE_VIEWS.name), orjson.dumps(event))
    producer.flush()
    producer.close()


def _consume_all(settings: Settings, handle: Callable[[Any], object]) -> int:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, max_poll_records=2000
    )
    topic = settings.topic_for(PAGE_VIEWS.name)
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    end = consumer.end_offsets(parts)
    seen = 0
    while any(consumer.position(tp) < end[tp] for tp in parts):
        for recs in consumer.poll(timeout_ms=1000).values():
            for rec in recs:
                handle(rec)
            seen += len(recs)
    consumer.close()
    return seen


def _speed(consumer: SpeedConsumer) -> int:
    try:
        consumer.run(once=True)
    finally:
        consumer.close()
    return consumer.applied + consumer.dead


def _measure(name: str, work: Callable[[], int]) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    events = work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "name": name,
        "events": events,
        "seconds": round(wall, 3),
        "events_per_s": round(events / wall, 1),
        "cpu_us_per_event": round(cpu / max(events, 1) * 1e6, 2),
    }


def run(settings: Settings, events: int = 20_000) -> dict[str, Any]:
    """Produce ``events`` into the namespace's (fresh) topic and time the three loops."""
    ensure_topics(settings)
    produce(settings, events)
    speed = SpeedConsumer(settings, PAGE_VIEWS)
    speed.setup()  # connect + rebuild decision: a one-off, outside the timed loop
    rows = [
        _measure("plain kafka-python consume", lambda: _consume_all(settings, lambda r: None)),
        _measure(
            "consume + orjson decode/validate",
            lambda: _consume_all(settings, lambda r: PAGE_VIEWS.decode(r.value)),
        ),
        _measure("speed layer (consume+aggregate+Redis)", lambda: _speed(speed)),
    ]
    base = rows[0]["events_per_s"]
    for row in rows:
        row["ratio_vs_plain"] = round(row["events_per_s"] / base, 3)
    return {"events": events, "views": 3, "rows": rows}


def print_table(result: dict[str, Any]) -> None:
    """The result as a rich table."""
    table = Table(title=f"speed layer, {result['events']:,} events, {result['views']} views")
    for col in ("loop", "events/s", "CPU µs/event", "vs plain", "seconds"):
        table.add_column(col, justify="right" if col != "loop" else "left")
    for r in result["rows"]:
        table.add_row(
            r["name"],
            f"{r['events_per_s']:,.0f}",
            f"{r['cpu_us_per_event']:.1f}",
            f"{r['ratio_vs_plain']:.2f}",
            f"{r['seconds']:.2f}",
        )
    Console().print(table)


def _cleanup(settings: Settings) -> None:
    client = connect(settings)
    for key in client.scan_iter(match=f"{settings.redis_prefix}*", count=1000):
        client.delete(key)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        admin.delete_topics([settings.topic_for(PAGE_VIEWS.name), settings.dlq_topic])
    finally:
        admin.close()


def main() -> None:
    """Bench in a throwaway namespace, print JSON and the table, clean up."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    settings = load_settings(namespace=f"bench_{uuid.uuid4().hex[:8]}")
    try:
        result = run(settings, count)
    finally:
        _cleanup(settings)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print_table(result)


if __name__ == "__main__":
    main()
