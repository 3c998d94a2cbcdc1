"""The platform's Kafka topics, created explicitly.

``{ns}.events`` carries the accepted events (partitioned, kept forever: it is also the
Kappa replay source, timestamps assigned by the broker so that ingest time splits batch
from speed). ``{ns}.events.dlq`` holds dead letters keyed by their source coordinates
and compacted, so a dead letter reported twice (after a crash, or by two layers) is kept once.
"""

from __future__ import annotations

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

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
