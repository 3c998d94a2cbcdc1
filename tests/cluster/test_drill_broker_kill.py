"""Cluster drill: a partition leader SIGKILLed under continuous ingest (`make drills-cluster`).

On the running cluster (`make up-cluster`): the drill's feed sends events with acks=all to
a topic of RF 3 and min ISR 2, while the speed consumer and the archiver (``land
--follow``) run as the platform's CLI processes. Once both have caught up once, the broker
leading partition 0 of the drill's topic is killed with SIGKILL (supervisord restarts it,
as it would any crashed node). A new leader is elected from the ISR: the feed's batches
must go on being acknowledged (a batch in doubt is looked up in the log by id and counted
if there), the broker must come back into the ISR, and the drill ends as every drill does
(``Drill.finish``): the log, the master dataset and every merged cell equal to the oracle
over the acknowledged events, nothing lost or doubled. Recover: from the kill until the
broker is back in the ISR and both layers have reached the log's end offsets read then.
Not part of `make test`: it kills a node.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient

from infra import health
from infra.cluster import kafka_nodes
from infra.stack import Stack
from lambdalab.schema import PAGE_VIEWS
from tests.cluster.nodes import kill_node, wait_rejoined
from tests.drills.harness import consumed, landed, log_end, wait_for

pytestmark = [pytest.mark.cluster_drill, pytest.mark.timeout(900)]


def leader_of_partition_0(settings: Any) -> int:
    """The node id leading partition 0 of the drill's topic."""
    topic = settings.topic_for(PAGE_VIEWS.name)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    return int(next(p["leader_id"] for p in described["partitions"] if p["partition_index"] == 0))


def caught_up(settings: Any, target: int) -> bool:
    return consumed(settings) >= target and landed(settings) >= target


def test_a_killed_partition_leader_loses_and_doubles_nothing(
    open_drill: Any, cluster_spark: Any, cluster_stack: Stack
) -> None:
    drill = open_drill("Kafka partition leader SIGKILL", rate=20.0)
    drill.speed()
    drill.archiver()
    wait_for(lambda: caught_up(drill.settings, 1), 120, "speed and archiver running")
    time.sleep(5)
    leader = leader_of_partition_0(drill.settings)
    node = next(n for n in kafka_nodes(drill.settings) if n.node_id == leader)
    acked_before = drill.ledger.count()
    kill = kill_node(cluster_stack, node.name)
    drill.fault = {"killed": f"{node.name} (leader of p0)", "when": f"+{drill.now():.0f} s"}
    acks_back = wait_for(lambda: drill.ledger.count() > acked_before + 40, 60, "40 more acks")
    rejoined = wait_rejoined(
        cluster_stack,
        kill,
        lambda: health.check_kafka_node(drill.settings, node_id=leader, port=node.port),
        180,
    )
    target = log_end(drill.settings)
    wait_for(lambda: caught_up(drill.settings, target), 180, "speed and archiver caught up")
    recover = time.monotonic() - kill.at
    drill.expect(not drill.ledger.doubtful, f"{len(drill.ledger.doubtful)} events in doubt")
    notes = [
        f"40 more events acknowledged {acks_back:.1f} s after the kill",
        f"{node.name} back in the ISR {rejoined:.1f} s after the kill",
    ]
    drill.finish(cluster_spark, recover_s=recover, notes=notes)
