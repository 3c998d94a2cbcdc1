"""The platform's Kafka topics, created explicitly.

``{ns}.events`` carries the accepted events (partitioned, kept forever: it is also the
Kappa replay source, timestamps assigned by the broker so that ingest time splits batch
from speed). ``{ns}.events.dlq`` holds dead letters keyed by their source coordinates
and compacted, so a dead letter reported twice (after a crash, or by two layers) is kept once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import TopicAlreadyExistsError

from lambdalab.errors import ServiceUnavailable
from lambdalab.settings import Settings


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Topic name -> Kafka topic configs."""
    from lambdalab.schema import STREAMS

    keep = str(settings.kafka.retention_ms)
    events = {
        "message.timestamp.type": "LogAppendTime",
        "retention.ms": keep,
        "retention.bytes": "-1",
    }
    return {
        **{settings.topic_for(name): dict(events) for name in STREAMS},
        settings.dlq_topic: {
            "message.timestamp.type": "LogAppendTime",
            "cleanup.policy": "compact",
            "retention.ms": keep,
        },
    }


def ensure_topics(settings: Settings) -> list[str]:
    """Create the namespace's topics if missing; return the names created."""
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka.bootstrap_servers, request_timeout_ms=15_000
    )
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(
                name,
                settings.kafka.partitions,
                settings.kafka.replication_factor,
                topic_configs=cfg,
            )
            for name, cfg in topic_configs(settings).items()
            if name not in existing
        ]
        created = []
        for topic in wanted:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def dlq_key(topic: str, partition: int, offset: int) -> bytes:
    """Key of a dead letter: its source coordinates (makes reports idempotent)."""
    return f"{topic}:{partition}:{offset}".encode()


def read_topic(
    settings: Settings,
    topic: str,
    until: Mapping[int, int] | None = None,
    idle_timeout_s: float = 30.0,
) -> list[ConsumerRecord]:
    """Every record of ``topic`` from the beginning, below ``until`` (default: the end offsets
    when the read starts). For oracles, the lab's Kappa replay and operators.

    Raises:
        ServiceUnavailable: no record arrived for ``idle_timeout_s`` before the read was done.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        max_poll_records=5000,
    )
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        stop = (
            dict(until)
            if until is not None
            else {tp.partition: end for tp, end in consumer.end_offsets(parts).items()}
        )
        out: list[ConsumerRecord] = []
        idle_since = time.monotonic()
        while any(consumer.position(tp) < stop.get(tp.partition, 0) for tp in parts):
            polled = consumer.poll(timeout_ms=1000)
            if polled:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > idle_timeout_s:
                msg = f"reading {topic} stalled for {idle_timeout_s:.0f} s before offsets {stop}"
                raise ServiceUnavailable(msg)
            for tp, records in polled.items():
                out.extend(r for r in records if r.offset < stop.get(tp.partition, 0))
        return out
    finally:
        consumer.close()
