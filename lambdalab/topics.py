"""The platform's Kafka topics, created explicitly.

``{ns}.events.{stream}`` carries the accepted events of each declared stream (partitioned,
kept forever: it is also the Kappa replay source, timestamps assigned by the broker so
that ingest time splits batch from speed). ``{ns}.events.dlq`` holds dead letters keyed
by their source coordinates and compacted, so a dead letter reported twice (after a crash,
or by two layers) is kept once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, TopicAlreadyExistsError

from lambdalab.errors import ServiceUnavailable, WaitTimeout
from lambdalab.settings import Settings
from lambdalab.wait import wait_until

T = TypeVar("T")
ACK_TIMEOUT_S = 30.0
METADATA_WAIT_S = 10.0  # metadata of a topic just created may lag


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Topic name -> Kafka topic configs.

    With ``kafka.min_insync_replicas`` set (the cluster profile: 2 of 3 replicas), an
    acks=all write is acknowledged only once that many replicas have it.
    """
    from lambdalab.schema import STREAMS

    keep = str(settings.kafka.retention_ms)
    durability = {}
    if settings.kafka.min_insync_replicas is not None:
        durability["min.insync.replicas"] = str(settings.kafka.min_insync_replicas)
    events = {
        "message.timestamp.type": "LogAppendTime",
        "retention.ms": keep,
        "retention.bytes": "-1",
        **durability,
    }
    return {
        **{settings.topic_for(name): dict(events) for name in STREAMS},
        settings.dlq_topic: {
            "message.timestamp.type": "LogAppendTime",
            "cleanup.policy": "compact",
            "retention.ms": keep,
            **durability,
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


def kafka_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A kafka-python producer with the platform's durability settings (acks=all, idempotent).

    Raises:
        ServiceUnavailable: no broker answered.
    """
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka.bootstrap_servers,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "max_in_flight_requests_per_connection": 5,
        "retries": 2**31 - 1,
        "request_timeout_ms": 15_000,
    }
    return _connect(KafkaProducer, settings, {**config, **overrides})


def kafka_consumer(settings: Settings, **overrides: Any) -> KafkaConsumer:
    """A kafka-python consumer with no group and no auto-commit: positions are the caller's.

    It reads committed data only (``read_committed``): records of aborted transactions are
    never seen, and end offsets are the last stable offset, so no layer counts a record
    that its producer's transaction later aborts.
    """
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka.bootstrap_servers,
        "enable_auto_commit": False,
        "group_id": None,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }
    return _connect(KafkaConsumer, settings, {**config, **overrides})


def _connect(client: Callable[..., T], settings: Settings, config: dict[str, Any]) -> T:
    """Make a Kafka client; no broker answering becomes ServiceUnavailable."""
    try:
        return client(**config)
    except KafkaError as exc:
        msg = f"Kafka at {settings.kafka.bootstrap_servers} did not answer: {exc}"
        raise ServiceUnavailable(msg) from exc


def partitions(
    consumer: KafkaConsumer, topic: str, wait_s: float = METADATA_WAIT_S
) -> list[TopicPartition]:
    """The partitions of ``topic``, waiting up to ``wait_s`` for fresh metadata.

    Raises:
        ServiceUnavailable: the topic has no partitions (or Kafka did not answer).
    """
    try:
        found = wait_until(
            lambda: consumer.partitions_for_topic(topic),
            timeout_s=wait_s,
            interval_s=0.2,
            what=f"partitions of topic {topic}",
        )
    except WaitTimeout:
        msg = f"topic {topic} has no partitions (is Kafka up? see `lambdalab stack up`)"
        raise ServiceUnavailable(msg) from None
    return [TopicPartition(topic, p) for p in sorted(found)]


def end_offsets_of(consumer: KafkaConsumer, parts: list[TopicPartition]) -> dict[int, int]:
    """Partition -> end offset (the next offset to be written) of ``parts``.

    Raises:
        ServiceUnavailable: Kafka did not answer.
    """
    if not parts:
        return {}
    try:
        ends = consumer.end_offsets(parts)
    except KafkaError as exc:
        msg = f"Kafka did not answer for the end offsets of {parts[0].topic}: {exc}"
        raise ServiceUnavailable(msg) from exc
    return {tp.partition: int(off) for tp, off in ends.items()}


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The end offset of every partition of ``topic``, read with a short-lived consumer."""
    consumer = kafka_consumer(settings)
    try:
        return end_offsets_of(consumer, partitions(consumer, topic))
    finally:
        consumer.close()


def read_topic(
    settings: Settings,
    topic: str,
    until: Mapping[int, int] | None = None,
    idle_timeout_s: float = 30.0,
) -> list[ConsumerRecord]:
    """Every record of ``topic`` from the beginning, below ``until``.

    ``until`` defaults to the end offsets when the read starts. For oracles, the lab's
    Kappa replay and operators.

    Raises:
        ServiceUnavailable: no record arrived for ``idle_timeout_s`` before the read was done.
    """
    consumer = kafka_consumer(settings, max_poll_records=5000)
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        stop = dict(until) if until is not None else end_offsets_of(consumer, parts)
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
