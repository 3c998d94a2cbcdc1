"""Cluster drill: a partition leader SIGKILLed during acks=all ingest (`make drills-cluster`).

On the running cluster (`make up-cluster`): events are produced in acknowledged batches
to a topic of RF 3 and min ISR 2; after a third of them, the broker leading partition 0
is killed with SIGKILL (supervisord restarts it, as it would any crashed node). Every
batch must still be acknowledged, the broker must come back into the ISR, and the master
dataset landed afterwards must hold every acknowledged event exactly once: the event ids
compared as multisets with what the producer was told was written (the oracle), and every
(partition, offset) once. Not part of `make test`: it kills a node.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest
from kafka.admin import KafkaAdminClient

from batch import archiver
from batch.master import read_master
from infra import health
from infra.cluster import kafka_nodes
from infra.stack import Stack
from ingest.producer import EventProducer
from lambdalab.hdfs import webhdfs
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import load_settings
from lambdalab.topics import end_offsets, ensure_topics
from lambdalab.wait import wait_until
from tests.events import EventFactory
from tests.twoparts import short_windows

pytestmark = pytest.mark.cluster_drill

START_HINT = "start the cluster with `make up-cluster` (`lambdalab stack up --cluster`)"
BATCHES, PER_BATCH, KILL_AFTER = 30, 50, 10


def test_a_killed_partition_leader_loses_and_doubles_nothing() -> None:
    base = load_settings(profile="cluster")
    stack = Stack(base, cluster=True)
    down = [n.name for n in kafka_nodes(base) if not health.port_open(n.host, n.port)]
    if down or not stack.supervisor.running():
        pytest.fail(f"cluster Kafka not up ({down or 'no supervisord'}); {START_HINT}")
    with short_windows(base) as ns:
        ensure_topics(ns)
        topic = ns.topic_for(PAGE_VIEWS.name)
        admin = KafkaAdminClient(bootstrap_servers=ns.kafka.bootstrap_servers)
        try:
            (described,) = admin.describe_topics([topic])
        finally:
            admin.close()
        leader = next(p["leader_id"] for p in described["partitions"] if p["partition_index"] == 0)
        victim = f"kafka-{leader}"
        info = stack.supervisor.info(victim)
        assert info and info["statename"] == "RUNNING", info
        make = EventFactory(seed=77, users=50, id_prefix="drill-")
        producer = EventProducer(ns, PAGE_VIEWS)
        acked: list[str] = []
        killed_at = 0.0
        try:
            for i in range(BATCHES):
                if i == KILL_AFTER:
                    os.kill(info["pid"], signal.SIGKILL)
                    killed_at = time.monotonic()
                events = [make(at=1_772_359_200_000 + j * 1000) for j in range(PER_BATCH)]
                producer.send_many(events)  # returns once acks=all: 2 of 3 replicas have it
                acked += [e["event_id"] for e in events]
        finally:
            producer.close()
        after_kill_s = time.monotonic() - killed_at

        node = next(n for n in kafka_nodes(base) if n.node_id == leader)
        wait_until(
            lambda: health.check_kafka_node(base, node_id=leader, port=node.port),
            timeout_s=120,
            interval_s=1,
            what=f"{victim} restarted and back in the ISR",
            retry_on=(Exception,),
        )
        restarted = stack.supervisor.info(victim)
        assert restarted and restarted["pid"] != info["pid"], "supervisord restarted it"

        time.sleep(1.2)
        archiver.land(ns, PAGE_VIEWS, until=end_offsets(ns, topic))
        table = read_master(webhdfs(ns), ns, PAGE_VIEWS.name)
        rows = table.to_pylist()
        landed = Counter(str(r["event_id"]) for r in rows)
        assert len(acked) == BATCHES * PER_BATCH
        assert landed == Counter(acked), (
            f"lost {sorted(set(acked) - set(landed))[:5]}, "
            f"doubled {[k for k, v in landed.items() if v > 1][:5]}"
        )
        coords = Counter((r["partition"], r["offset"]) for r in rows)
        assert max(coords.values()) == 1
        print(
            f"killed {victim} (leader of p0); {len(acked)} events acked, the last "
            f"{BATCHES - KILL_AFTER} batches in {after_kill_s:.1f} s after the kill"
        )
