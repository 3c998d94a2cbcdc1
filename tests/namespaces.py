"""A test's own namespace in the shared stack, and its removal at teardown.

Every integration and e2e test works in a fresh namespace (``t`` + 10 hex digits): its own
Kafka topics, HDFS root, Redis keys and Trino schema, so tests never see each other's data.
:func:`namespace` hands out such settings and :func:`drop` removes all four parts at
teardown. The stack is shared with other people, so teardown is best effort: a part that
cannot be removed becomes a :class:`NamespaceLeft` warning naming the namespace, the part
and the error -- never a test error, and never a reason to skip the other parts.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from lambdalab.schema import STREAMS
from lambdalab.settings import Settings


class NamespaceLeft(UserWarning):
    """Part of a test's namespace is still in the stack after its teardown."""


def new_name() -> str:
    """A namespace no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"


@contextmanager
def namespace(base: Settings, **updates: Any) -> Iterator[Settings]:
    """``base`` in a fresh namespace (plus ``updates``); everything in it dropped at exit."""
    settings = base.model_copy(update={"namespace": new_name(), **updates})
    try:
        yield settings
    finally:
        drop(settings)


def drop(settings: Settings) -> list[str]:
    """Remove the namespace's Trino schema, HDFS root, Kafka topics, Redis keys, local copies.

    Trino goes first: its tables point into the HDFS root. Returns the parts that could not
    be removed, each also reported as a :class:`NamespaceLeft` warning.
    """
    parts: list[tuple[str, Callable[[Settings], None]]] = [
        ("Trino schema", drop_trino_schema),
        ("HDFS root", drop_hdfs_root),
        ("Kafka topics", drop_topics),
        ("Redis keys", drop_redis_keys),
        ("local version copies", drop_local_copies),
    ]
    left = []
    for part, remove in parts:
        try:
            remove(settings)
        except Exception as exc:  # any client library may fail; report, go on
            left.append(part)
            msg = f"namespace {settings.namespace}: its {part} was not removed: {exc!r}"
            warnings.warn(NamespaceLeft(msg), stacklevel=2)
    return left


def topics_of(settings: Settings, existing: set[str]) -> list[str]:
    """The namespace's topics among ``existing``: every declared stream's, the dead-letter
    topic, and any other ``{ns}.*`` topic a test made (streams it declared for itself)."""
    declared = {settings.topic_for(name) for name in STREAMS} | {settings.dlq_topic}
    prefix = f"{settings.namespace}."
    return sorted(t for t in existing if t in declared or t.startswith(prefix))


def drop_local_copies(settings: Settings) -> None:
    """Remove this host's local copies of the namespace's batch versions (batch.localcopy)."""
    import shutil

    shutil.rmtree(settings.paths.local_versions_dir / settings.namespace, ignore_errors=True)


def drop_topics(settings: Settings) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka.bootstrap_servers, request_timeout_ms=30_000
    )
    try:
        doomed = topics_of(settings, set(admin.list_topics()))
        if doomed:
            admin.delete_topics(doomed, timeout_ms=30_000)
    finally:
        admin.close()


def drop_hdfs_root(settings: Settings) -> None:
    from lambdalab.hdfs import webhdfs

    webhdfs(settings).delete(settings.hdfs_root, recursive=True)


def drop_redis_keys(settings: Settings) -> None:
    from speed.store import connect

    client = connect(settings)  # a Redis Cluster client scans every master, deletes per slot
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{settings.redis_prefix}*", count=1000):
            batch.append(key)
            if len(batch) == 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


def drop_trino_schema(settings: Settings) -> None:
    """Drop the schema's views and tables, then the schema (``batch.trino_tables`` does the
    talking, as the batch layer does); the data under the HDFS root goes with that root."""
    from batch.trino_tables import TrinoTables

    TrinoTables(settings).drop_schema()


def remains(settings: Settings) -> dict[str, Any]:
    """What of the namespace is still in the stack (empty values: nothing), for checks."""
    from kafka.admin import KafkaAdminClient

    from batch.trino_tables import TrinoTables
    from lambdalab.hdfs import webhdfs

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        topics = topics_of(settings, set(admin.list_topics()))
    finally:
        admin.close()
    tables = TrinoTables(settings)
    _, schemas = tables.query(
        f"SELECT schema_name FROM {tables.catalog}.information_schema.schemata "
        f"WHERE schema_name = '{settings.trino_schema}'"
    )
    from speed.store import connect

    client = connect(settings)
    keys = list(client.scan_iter(match=f"{settings.redis_prefix}*", count=1000))
    client.close()
    return {
        "topics": topics,
        "hdfs_root": webhdfs(settings).status(settings.hdfs_root, strict=False),
        "redis_keys": keys,
        "trino_schema": [row[0] for row in schemas],
    }
