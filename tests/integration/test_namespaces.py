"""A test's namespace leaves nothing behind in the shared stack (tests/namespaces.py)."""

from __future__ import annotations

import pytest

from batch.trino_tables import TrinoTables
from lambdalab.hdfs import webhdfs
from lambdalab.settings import Settings
from lambdalab.topics import ensure_topics
from tests.namespaces import NamespaceLeft, drop, namespace, remains


def _fill(settings: Settings) -> None:
    """Something in every part: topics (one a test made itself), a file, a key, a table."""
    from kafka.admin import KafkaAdminClient, NewTopic

    ensure_topics(settings)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(f"{settings.namespace}.roundtrip", 1, 1)])
    admin.close()
    hdfs = webhdfs(settings)
    hdfs.write(f"{settings.hdfs_root}/x/file.txt", data=b"x")
    for folder in ("warehouse", "t"):  # the schema's location, an external table's
        hdfs.makedirs(f"{settings.hdfs_root}/{folder}")
    import redis

    redis.Redis.from_url(settings.redis.url).set(f"{settings.redis_prefix}k", b"v")
    tables = TrinoTables(settings)
    tables.ensure_schema()
    name = f"{tables.catalog}.{tables.schema}"
    location = tables.paths.uri(f"{settings.hdfs_root}/t")
    tables.query(
        f"CREATE TABLE {name}.t (x bigint) "
        f"WITH (format = 'PARQUET', external_location = '{location}')"
    )
    tables.query(f"CREATE VIEW {name}.v AS SELECT x FROM {name}.t")


def test_every_part_of_a_namespace_is_dropped(stack: Settings) -> None:
    with namespace(stack) as settings:
        _fill(settings)
        there = remains(settings)
        assert len(there["topics"]) == 3  # pageviews, dlq, roundtrip
        assert there["hdfs_root"] and there["redis_keys"] and there["trino_schema"]
    assert remains(settings) == {
        "topics": [],
        "hdfs_root": None,
        "redis_keys": [],
        "trino_schema": [],
    }


def test_a_part_that_cannot_be_dropped_is_a_warning_and_the_rest_go(stack: Settings) -> None:
    with namespace(stack) as settings:
        _fill(settings)
    unreachable = settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"url": "redis://127.0.0.1:1/0"})}
    )
    _fill(settings)
    with pytest.warns(NamespaceLeft, match=rf"namespace {settings.namespace}: its Redis keys"):
        assert drop(unreachable) == ["Redis keys"]
    there = remains(settings)
    assert there["redis_keys"] and not there["topics"] and there["hdfs_root"] is None
    drop(settings)
    assert remains(settings)["redis_keys"] == []
