"""Benchmark of the speed layer: events/s and CPU per event against plain consume loops.

Same run, same topic, same events: (1) a plain kafka-python consume loop, (2) the same
loop plus orjson decoding and validation, (3) the speed layer (consume, decode, aggregate
every registered view, one MULTI/EXEC per partition per poll batch into Redis), taking
turns, repeated REPEATS times. CPU time is this process's ``time.process_time`` (the Redis
server's own CPU is not included). The details add where the speed layer's time went, from its own
``lambdalab_speed_stage_seconds`` counters.

Run: ``.venv/bin/python -m bench.bench_speed [events]`` (uses a throwaway namespace).
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.record import default_records
from kafka.record._crc32c import crc as crc32c_py
from kafka.record.util import crc32c_c
from rich.console import Console
from rich.table import Table

from bench.summary import figure
from lambdalab.paths import RedisKeys
from lambdalab.schema import PAGE_VIEWS, format_ts
from lambdalab.settings import Settings, load_settings
from lambdalab.topics import ensure_topics
from speed.consumer import SpeedConsumer
from speed.store import connect
from views.registry import views_of

REPEATS = 3
# kafka-python checks (consumer) and writes (producer) each record batch's CRC32C with the
# optional C package ``crc32c`` when it is installed (a dependency of lambda-lab), else in
# pure Python, which costs about as much as all the rest of a plain consume loop.
CRC_C = crc32c_c is not None
CRC_SHIPPED = "C crc32c" if CRC_C else "pure-Python CRC32C"


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


def _fresh_consumer(settings: Settings) -> SpeedConsumer:
    """A speed consumer that starts from the beginning (offsets dropped: it rebuilds)."""
    keys, source = RedisKeys(settings), settings.topic_for(PAGE_VIEWS.name)
    client = connect(settings)
    for p in range(int(client.get(keys.partitions(source)) or 0)):
        client.delete(keys.partition(source, p).offsets)
    speed = SpeedConsumer(settings, PAGE_VIEWS)
    speed.setup()  # connect + rebuild decision: a one-off, outside the timed loop
    return speed


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


PLAIN, DECODE, SPEED = (
    "plain kafka-python consume",
    "consume + orjson decode/validate",
    "speed layer (consume+aggregate+Redis)",
)


@contextmanager
def pure_python_crc() -> Iterator[None]:
    """Check record batches' CRC32C in pure Python, as kafka-python does without ``crc32c``."""
    installed = default_records.calc_crc32c
    default_records.calc_crc32c = crc32c_py
    try:
        yield
    finally:
        default_records.calc_crc32c = installed


def _loops(settings: Settings) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The three loops, one after the other; their rows and the speed layer's stages."""
    speed = _fresh_consumer(settings)
    rows = [
        _measure(PLAIN, lambda: _consume_all(settings, lambda r: None)),
        _measure(DECODE, lambda: _consume_all(settings, lambda r: PAGE_VIEWS.decode(r.value))),
        _measure(SPEED, lambda s=speed: _speed(s)),  # type: ignore[misc]
    ]
    return rows, speed.metrics.stage_seconds()


def run(settings: Settings, events: int = 40_000, repeats: int = REPEATS) -> dict[str, Any]:
    """Produce ``events`` into the namespace's (fresh) topic; time the three loops, repeated.

    The loops take turns in each repetition, so a noisy neighbour slows all three alike.
    When the C ``crc32c`` is installed, each repetition also times the three loops with
    kafka-python's pure-Python CRC32C (``pure``): how the ratio depends on it.
    """
    ensure_topics(settings)
    produce(settings, events)
    runs: list[list[dict[str, Any]]] = []
    pure: list[list[dict[str, Any]]] = []
    stages: dict[str, float] = {}
    for _ in range(repeats):
        rows, seconds_by_stage = _loops(settings)
        for stage, seconds in seconds_by_stage.items():
            stages[stage] = stages.get(stage, 0.0) + seconds
        runs.append(rows)
        if CRC_C:
            with pure_python_crc():
                pure.append(_loops(settings)[0])
    result = {
        "events": events,
        "views": len(views_of(PAGE_VIEWS.name)),
        "crc32c": CRC_SHIPPED,
        "runs": runs,
        "runs_pure_python_crc": pure,
    }
    result["figures"] = _figures(runs, pure)
    result["details_md"] = _details(result, stages, events * repeats)
    return result


def _figures(
    runs: list[list[dict[str, Any]]], pure: list[list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    def col(loop: str, what: str, of: list[list[dict[str, Any]]]) -> list[float]:
        return [next(r[what] for r in rows if r["name"] == loop) for rows in of]

    plain = f"plain kafka-python consume loop, {CRC_SHIPPED}"
    found = [
        figure(
            "speed",
            f"events/s vs plain consume loop ({CRC_SHIPPED})",
            "events/s",
            col(SPEED, "events_per_s", runs),
            col(PLAIN, "events_per_s", runs),
            baseline_name=plain,
            target="ratio >= 0.7",
        ),
        figure(
            "speed",
            f"CPU per event vs plain consume loop ({CRC_SHIPPED})",
            "µs/event",
            col(SPEED, "cpu_us_per_event", runs),
            col(PLAIN, "cpu_us_per_event", runs),
            baseline_name=plain,
            target="ratio <= 1.5",
        ),
        figure(
            "speed",
            "decode+validate loop CPU per event vs plain loop",
            "µs/event",
            col(DECODE, "cpu_us_per_event", runs),
            col(PLAIN, "cpu_us_per_event", runs),
            baseline_name=plain,
        ),
    ]
    if pure:  # the same loops with the CRC kafka-python uses without the C package
        base = "plain consume loop, both with pure-Python CRC32C"
        found += [
            figure(
                "speed",
                "events/s vs plain loop, both with pure-Python CRC32C",
                "events/s",
                col(SPEED, "events_per_s", pure),
                col(PLAIN, "events_per_s", pure),
                baseline_name=base,
            ),
            figure(
                "speed",
                "CPU per event vs plain loop, both with pure-Python CRC32C",
                "µs/event",
                col(SPEED, "cpu_us_per_event", pure),
                col(PLAIN, "cpu_us_per_event", pure),
                baseline_name=base,
            ),
            figure(
                "speed",
                f"speed layer CPU per event, {CRC_SHIPPED} vs pure-Python CRC32C",
                "µs/event",
                col(SPEED, "cpu_us_per_event", runs),
                col(SPEED, "cpu_us_per_event", pure),
                baseline_name="speed layer, pure-Python CRC32C",
            ),
        ]
    return found


def _details(result: dict[str, Any], stages: dict[str, float], events: int) -> list[str]:
    """Per-run rows and where the speed layer's wall time went (its stage counters)."""
    lines = [
        f"{result['events']:,} events, {result['views']} views, {len(result['runs'])} runs; "
        "CPU is this process's (the Redis server's own CPU is not included). CRC32C: "
        f"{result['crc32c']} (each run also with the pure-Python one when C is installed).",
        "",
        "| run | CRC32C | loop | events/s | CPU µs/event | vs plain |",
        "|---|---|---|---:|---:|---:|",
    ]
    pure = result["runs_pure_python_crc"]
    for crc, runs in ((result["crc32c"], result["runs"]), ("pure-Python", pure)):
        for i, rows in enumerate(runs, 1):
            base = rows[0]["events_per_s"]
            for r in rows:
                lines.append(
                    f"| {i} | {crc} | {r['name']} | {r['events_per_s']:,.0f} "
                    f"| {r['cpu_us_per_event']:.1f} | {r['events_per_s'] / base:.2f} |"
                )
    total = sum(stages.values()) or 1.0
    lines += ["", "Speed layer wall time by stage (`lambdalab_speed_stage_seconds`):", ""]
    lines += ["| stage | share | µs/event |", "|---|---:|---:|"]
    for stage, seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {stage} | {seconds / total:.0%} | {seconds / events * 1e6:.1f} |")
    return lines


def print_table(result: dict[str, Any]) -> None:
    """The result as a rich table."""
    table = Table(title=f"speed layer, {result['events']:,} events, {result['views']} views")
    for col in ("loop", "events/s", "CPU µs/event", "vs plain", "seconds"):
        table.add_column(col, justify="right" if col != "loop" else "left")
    for r in result["runs"][-1]:
        table.add_row(
            r["name"],
            f"{r['events_per_s']:,.0f}",
            f"{r['cpu_us_per_event']:.1f}",
            f"{r['events_per_s'] / result['runs'][-1][0]['events_per_s']:.2f}",
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
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 40_000
    settings = load_settings(namespace=f"bench_{uuid.uuid4().hex[:8]}")
    try:
        result = run(settings, count)
    finally:
        _cleanup(settings)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print_table(result)


if __name__ == "__main__":
    main()
