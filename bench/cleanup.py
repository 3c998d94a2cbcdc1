"""Removing what a benchmark made in its throwaway namespace (topics, Redis keys)."""

from __future__ import annotations

from lambdalab.settings import Settings


def drop_topics(settings: Settings) -> None:
    """Delete the namespace's Kafka topics (``{namespace}.*``)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        mine = [t for t in admin.list_topics() if t.startswith(f"{settings.namespace}.")]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()


def drop_redis_keys(settings: Settings) -> None:
    """Delete the namespace's Redis keys (its prefix)."""
    from speed.store import connect

    client = connect(settings)
    for key in client.scan_iter(match=f"{settings.redis_prefix}*", count=1000):
        client.delete(key)
