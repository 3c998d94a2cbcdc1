"""The real services of the local stack each do the job the platform needs from them."""

from __future__ import annotations

import uuid

import pytest

from lambdalab.settings import Settings


def test_kafka_produce_consume(stack: Settings, settings: Settings) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"{settings.namespace}.roundtrip"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.close()
    sent = [f"msg-{i}".encode() for i in range(20)]
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    for value in sent:
        producer.send(topic, value)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    got = [r.value for r in consumer]
    consumer.close()
    assert sorted(got) == sorted(sent)


def test_webhdfs_write_read(stack: Settings, settings: Settings) -> None:
    from hdfs import InsecureClient

    client = InsecureClient(settings.hdfs.webhdfs_url, user=settings.hdfs.user)
    path = f"{settings.hdfs_root}/roundtrip.bin"
    payload = uuid.uuid4().bytes * 1000
    client.write(path, data=payload, overwrite=False)
    with client.read(path) as reader:
        assert reader.read() == payload
    assert client.status(path)["length"] == len(payload)


def test_redis_round_trip(stack: Settings, settings: Settings) -> None:
    import redis

    client = redis.Redis.from_url(settings.redis.url)
    key = f"{settings.redis_prefix}roundtrip"
    client.set(key, b"\x00\xffvalue", ex=60)
    assert client.get(key) == b"\x00\xffvalue"
    assert client.config_get("appendonly")["appendonly"] == "yes"


@pytest.fixture(scope="module")
def spark(stack: Settings):  # type: ignore[no-untyped-def]
    from batch.spark import spark_session

    session = spark_session(stack, app_name="test-stack")
    yield session
    session.stop()


def test_spark_parquet_on_hdfs(spark, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    uri = f"{settings.hdfs.namenode}{settings.hdfs_root}/spark-roundtrip"
    df = spark.range(10_000).selectExpr("id", "id % 7 AS k")
    df.write.mode("errorifexists").parquet(uri)
    back = spark.read.parquet(uri)
    assert back.count() == 10_000
    assert back.groupBy().sum("k").collect()[0][0] == sum(i % 7 for i in range(10_000))


def test_trino_reads_parquet_on_hdfs(spark, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    import trino

    location = f"{settings.hdfs.namenode}{settings.hdfs_root}/trino-table"
    rows = [(i, f"u{i % 5}") for i in range(500)]
    spark.createDataFrame(rows, "n BIGINT, name STRING").write.parquet(location)
    conn = trino.dbapi.connect(
        host=settings.trino.host, port=settings.trino.port, user=settings.trino.user, catalog="hive"
    )
    cur = conn.cursor()
    schema = settings.trino_schema
    cur.execute(
        f"CREATE SCHEMA hive.{schema} WITH (location = "
        f"'{settings.hdfs.namenode}{settings.hdfs_root}/warehouse')"
    )
    cur.fetchall()
    cur.execute(
        f"CREATE TABLE hive.{schema}.t (n BIGINT, name VARCHAR) "
        f"WITH (format = 'PARQUET', external_location = '{location}')"
    )
    cur.fetchall()
    cur.execute(f"SELECT name, count(*), sum(n) FROM hive.{schema}.t GROUP BY name ORDER BY name")
    got = [tuple(r) for r in cur.fetchall()]
    expected = [(f"u{k}", 100, sum(i for i in range(500) if i % 5 == k)) for k in range(5)]
    assert got == expected
