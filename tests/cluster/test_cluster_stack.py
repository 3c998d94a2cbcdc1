"""The multi-node stack on loopback (`lambdalab stack up --cluster`), settings only.

The platform's own code runs against the cluster profile's settings: events produced with
acks=all to three brokers (topics of replication factor 3, min ISR 2), landed by the
archiver into HDFS with two DataNodes (each master file on both), built by Spark on the
standalone master's two workers, coordinated by the cluster's luigid (two loops, each
task once), published; the served batch view equals the oracle (tests/oracle.py, plain
Python over the same events). The speed layer runs two workers of one consumer group on
the Redis Cluster, its keys spread over the three masters, and its merged answer equals
the oracle too.

The cluster must be up (`make up-cluster`); if it is not, every test fails saying so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from batch import archiver
from batch.publish import VersionStore
from batch.reader import BatchReader
from batch.tasks import run_cycle
from infra import health
from infra.cluster import DATANODES, datanode_ports, kafka_nodes, spark_ui_port
from infra.stack import Stack
from ingest.producer import EventProducer
from lambdalab.boundary import cut_at
from lambdalab.hdfs import webhdfs
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings, load_settings
from lambdalab.topics import end_offsets, ensure_topics, kafka_consumer, kafka_producer
from tests import oracle
from tests.events import EventFactory
from tests.twoparts import in_two_loops, short_windows
from views.definition import ViewDef
from views.registry import get_view

pytestmark = pytest.mark.cluster

START_HINT = "start the cluster with `make up-cluster` (`lambdalab stack up --cluster`)"
VIEWS = ("pageviews_by_url_hourly", "bytes_by_referrer_daily")
T0 = 1_772_359_200_000  # 2026-03-01T10:00:00Z: event times; ingest times are the broker's


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Settings, dict[str, Any]]]:
    """The cluster profile's settings and its status rows; fails naming what to start."""
    settings = load_settings(profile="cluster")
    stack = Stack(settings, cluster=True)
    closed = [  # fail fast: a check of a node that is down may wait for its timeouts
        f"{n.name} (127.0.0.1:{n.ports[0]})"
        for n in stack.services(with_platform=False)
        if n.supervised and not health.port_open("127.0.0.1", n.ports[0])
    ]
    if closed:
        pytest.fail(
            f"cluster node(s) not reachable: {', '.join(closed)}; {START_HINT}", pytrace=False
        )
    rows = {r.name: r for r in stack.status()}
    bad = [f"{r.name}: {r.detail}" for r in rows.values() if not r.healthy]
    if bad:
        pytest.fail(f"cluster node(s) not healthy: {'; '.join(bad)}; {START_HINT}", pytrace=False)
    yield settings, rows


def test_every_node_is_up_and_healthy(cluster: tuple[Settings, dict[str, Any]]) -> None:
    settings, rows = cluster
    nodes = {
        *(f"kafka-{n}" for n in (1, 2, 3)),
        *(f"datanode-{n}" for n in range(1, DATANODES + 1)),
        *(f"spark-worker-{n}" for n in (1, 2)),
        *(f"redis-{n}" for n in range(1, 7)),
        *("namenode", "spark-master", "trino", "luigid"),
    }
    assert nodes <= set(rows), sorted(nodes - set(rows))
    assert all(rows[n].process.startswith("RUNNING") for n in nodes)
    masters = [n for n in rows if n[:6] == "redis-" and ", master," in rows[n].detail]
    assert len(masters) == 3, {n: rows[n].detail for n in rows if n.startswith("redis-")}
    assert rows["namenode"].detail.endswith(f"{DATANODES} live DataNode(s)")
    assert settings.spark.master.startswith("spark://")


def test_a_topic_of_rf_3_and_min_isr_2_takes_acks_all_writes(
    cluster: tuple[Settings, dict[str, Any]],
) -> None:
    base, _ = cluster
    with short_windows(base) as ns:
        ensure_topics(ns)
        topic = ns.topic_for(PAGE_VIEWS.name)
        admin = KafkaAdminClient(bootstrap_servers=ns.kafka.bootstrap_servers)
        try:
            (described,) = admin.describe_topics([topic])
            configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        finally:
            admin.close()
        ids = sorted(n.node_id for n in kafka_nodes(ns))
        assert ids == [1, 2, 3]
        for p in described["partitions"]:
            assert sorted(p["replica_nodes"]) == ids and sorted(p["isr_nodes"]) == ids, p
        assert configs["topic"][topic]["min.insync.replicas"]["value"] == "2"
        producer = kafka_producer(ns)
        assert producer.config["acks"] == -1  # acks=all
        try:
            sent = [producer.send(topic, f"r{i}".encode(), partition=i % 4) for i in range(40)]
            metas = [f.get(timeout=30) for f in sent]
        finally:
            producer.close()
        consumer = kafka_consumer(ns)
        try:
            got: list[bytes] = []
            tps = [archiver_tp(topic, p) for p in range(ns.kafka.partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            deadline = time.monotonic() + 20
            while len(got) < len(metas) and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    got += [r.value for r in records]
        finally:
            consumer.close()
        assert sorted(got) == sorted(f"r{i}".encode() for i in range(40))


def archiver_tp(topic: str, partition: int) -> Any:
    from kafka import TopicPartition

    return TopicPartition(topic, partition)


def served(settings: Settings, view: ViewDef) -> dict[tuple[str, int], dict[str, Any]]:
    reader = BatchReader(settings)
    info = reader.current(view.name)
    assert info is not None
    table = reader.cells(view.name, info.version, -(2**62), 2**62)
    return {
        (key, bucket): {m.name: row[m.name] for m in view.measures}
        for key, buckets in table.items()
        for bucket, row in buckets.items()
    }


def block_hosts(settings: Settings, path: str) -> list[set[str]]:
    """Per block of an HDFS file, the DataNodes (transfer address) holding a replica."""
    resp = httpx.get(
        f"{settings.hdfs.webhdfs_url}/webhdfs/v1{path}",
        params={"op": "GETFILEBLOCKLOCATIONS", "user.name": settings.hdfs.user},
        timeout=10,
    )
    resp.raise_for_status()
    return [set(b["names"]) for b in resp.json()["BlockLocations"]["BlockLocation"]]


def test_one_batch_cycle_on_the_cluster_equals_the_oracle(
    cluster: tuple[Settings, dict[str, Any]],
) -> None:
    from batch.spark import spark_session

    base, _ = cluster
    with short_windows(base) as ns:
        ensure_topics(ns)
        make = EventFactory(seed=1414, users=30, referrers=(None, "google", "news"))
        events = [make(at=T0 + i * 97_000) for i in range(300)]
        producer = EventProducer(ns, PAGE_VIEWS)
        try:
            producer.send_many(events)
        finally:
            producer.close()
        time.sleep(1.2)  # a 1 s window boundary passes: the cut covers every event
        archiver.land(ns, PAGE_VIEWS, until=end_offsets(ns, ns.topic_for(PAGE_VIEWS.name)))

        store = VersionStore(ns)
        client = webhdfs(ns)
        master = store.paths.master(PAGE_VIEWS.name)
        files = [
            f"{root}/{name}"
            for root, _dirs, names in client.walk(master)
            for name in names
            if name.endswith(".parquet")
        ]
        assert files, f"nothing landed under {master}"
        both = {f"127.0.0.1:{datanode_ports(ns, n)[0]}" for n in range(1, DATANODES + 1)}
        for path in files:
            assert client.status(path)["replication"] == 2, path
            assert all(hosts == both for hosts in block_hosts(ns, path)), path

        spark = spark_session(ns, app_name="test-cluster")
        try:
            assert spark.sparkContext.master == ns.spark.master
            cut = cut_at(ns, int(time.time() * 1000))
            reports = in_two_loops(
                lambda: run_cycle(
                    ns, cut_ms=cut, land=False, trino=False, views=list(VIEWS), spark=spark
                ),
                timeout_s=300,
            )
            # an application of the standalone master: its executors ran on the workers
            apps = httpx.get(f"http://127.0.0.1:{spark_ui_port(ns)}/json/", timeout=5).json()
            assert "test-cluster" in {a["name"] for a in apps["activeapps"]}, apps["activeapps"]
        finally:
            spark.stop()
        assert set(reports) == {"a", "b"}, "a loop raised or hung"
        assert all(r["ok"] for r in reports.values()), [r["summary"] for r in reports.values()]
        for name in VIEWS:
            view = get_view(name)
            assert store.published(name) == [1], "published once, not once per loop"
            assert served(ns, view) == oracle.measures(view, events)


def test_two_speed_workers_on_the_redis_cluster_equal_the_oracle(
    cluster: tuple[Settings, dict[str, Any]],
) -> None:
    from redis.cluster import RedisCluster

    from speed.consumer import SpeedConsumer
    from speed.reader import SpeedReader

    base, _ = cluster
    assert base.redis.cluster, "the cluster profile's speed layer uses the Redis Cluster"
    view = get_view("pageviews_by_url_hourly")
    with short_windows(base) as ns:
        ensure_topics(ns)
        make = EventFactory(seed=1515, users=30, referrers=(None, "google", "news"))
        events = [make(at=T0 + i * 61_000) for i in range(400)]
        workers = [SpeedConsumer(ns, PAGE_VIEWS, group=True, worker=f"w{n}") for n in (1, 2)]
        stop = threading.Event()
        threads = [threading.Thread(target=_consume, args=(w, stop)) for w in workers]
        for thread in threads:
            thread.start()
        try:
            producer = EventProducer(ns, PAGE_VIEWS)
            try:
                producer.send_many(events)
            finally:
                producer.close()
            ends = end_offsets(ns, ns.topic_for(PAGE_VIEWS.name))
            reader = SpeedReader(ns)
            deadline = time.monotonic() + 90
            while reader.stream_offsets(PAGE_VIEWS.name) != ends:
                assert time.monotonic() < deadline, "the speed workers did not catch up in 90 s"
                time.sleep(0.5)
            owned = [set(w.owned) for w in workers]
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
        assert all(owned) and not owned[0] & owned[1], owned  # both worked, none twice
        assert owned[0] | owned[1] == set(ends)
        snap = reader.view_snapshot(view.name, 0, -(2**62), 2**62)
        names = [m.name for m in view.measures]
        got = {
            (k, b): {n: row[n] for n in names}
            for k, rows in snap.cells.items()
            for b, row in rows.items()
        }
        want = {
            cell: {n: row[n] for n in names} for cell, row in oracle.measures(view, events).items()
        }
        assert got == want
        assert snap.offsets == ends
        cluster_client = reader.client
        assert isinstance(cluster_client, RedisCluster)
        holders = {
            node.name
            for node in cluster_client.get_primaries()
            if list(
                cluster_client.scan_iter(match=f"{ns.redis_prefix}*", count=1000, target_nodes=node)
            )
        }
        assert len(holders) == 3, f"the speed layer's keys sit on {sorted(holders)} only"


def _consume(worker: Any, stop: threading.Event) -> None:
    try:
        worker.setup()
        worker.run(stop=stop)
    finally:
        worker.close()
