"""`stack down` then `stack up` works and keeps the data (Kafka, HDFS, Redis).

Restarts the real stack in place: every service must come back healthy and hold what was
written before the restart.
"""

from __future__ import annotations

import uuid

from infra.health import port_open
from infra.stack import Stack
from lambdalab.settings import Settings


def test_down_then_up_keeps_the_data(stack: Settings, settings: Settings) -> None:
    import redis
    from hdfs import InsecureClient
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    token = uuid.uuid4().hex.encode()
    topic = f"{settings.namespace}.restart"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    producer.send(topic, token).get(timeout=10)
    producer.close()
    hdfs = InsecureClient(settings.hdfs.webhdfs_url, user=settings.hdfs.user)
    hdfs.write(f"{settings.hdfs_root}/restart.txt", data=token)
    rkey = f"{settings.redis_prefix}restart"
    redis.Redis.from_url(settings.redis.url).set(rkey, token)

    s = Stack(stack)
    assert s.down() is True
    assert not port_open("127.0.0.1", settings.kafka.port)
    assert not port_open("127.0.0.1", settings.redis.port)
    rows = s.up()
    assert all(r.healthy for r in rows), [(r.name, r.detail) for r in rows if not r.healthy]
    assert {r.name for r in rows} >= {"kafka", "namenode", "datanode", "redis", "trino", "spark"}

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, consumer_timeout_ms=10_000
    )
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    assert [r.value for r in consumer] == [token]
    consumer.close()
    with hdfs.read(f"{settings.hdfs_root}/restart.txt") as reader:
        assert reader.read() == token
    assert redis.Redis.from_url(settings.redis.url).get(rkey) == token
