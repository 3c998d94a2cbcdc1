"""Cluster drills of the partitioned speed layer: workers come and go, a Redis master dies.

The speed layer runs as N ``lambdalab speed run`` processes joining one Kafka consumer
group per stream, each partition's increments and offsets in one hash slot of the Redis
Cluster (the cluster profile's ``LAMBDALAB_REDIS__CLUSTER=true``, seed
``redis://127.0.0.1:29380/0``).

Under continuous ingest, with the archiver and a batch cycle before the fault (so answers
merge both layers), each drill ends as every drill does (``Drill.finish``): the log, the
master dataset and every merged cell equal to the oracle, nothing lost or doubled.

- **speed worker SIGKILL**: one of two workers killed (its process group, not restarted:
  a machine gone); the group's rebalance gives its partitions to the other, which resumes
  each from the offsets committed with its increments. Recover: from the kill until the
  speed offsets reach the log's end offsets read at the kill.
- **third speed worker**: a third worker joins mid-stream; partitions move, none is
  consumed twice or skipped. Recover: from its start until the speed offsets reach the end
  offsets read then.
- **Redis master SIGKILL**: the master holding most of the drill's keys killed;
  supervisord restarts it at once, from its append-only file (fsync every second), and it
  is back as the master, or its replica is promoted first (cluster-node-timeout 5 s) and
  it rejoins as a replica. Either way Redis may come back without the last writes, lost
  with their offsets (one transaction, one slot): the owning worker finds its partition
  behind what it committed, claims it again and re-reads the rest from Kafka. Recover:
  from the kill until the speed offsets reach the end offsets at the kill.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from infra.cluster import redis_cluster_ports
from infra.stack import Stack
from lambdalab.settings import Settings, load_settings
from tests.cluster.nodes import kill_node, wait_rejoined
from tests.drills.drill import Drill, in_process
from tests.drills.harness import STREAM, Proc, consumed, log_end, wait_for

SEED_URL = "redis://127.0.0.1:29380/0"
pytestmark = [
    pytest.mark.cluster_drill,
    pytest.mark.timeout(900),
]
RATE = 20.0


@pytest.fixture
def drill_base(cluster_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The cluster's settings with the speed layer on the Redis Cluster (here and in the
    drill's processes)."""
    monkeypatch.setenv("LAMBDALAB_REDIS__CLUSTER", "true")
    monkeypatch.setenv("LAMBDALAB_REDIS__URL", SEED_URL)
    store = cluster_stack.settings.redis.model_copy(update={"cluster": True, "url": SEED_URL})
    return cluster_stack.settings.model_copy(update={"redis": store})


def worker(drill: Drill, name: str) -> Proc:
    """One more ``speed run`` process of the drill's consumer group (restarted if it exits
    unasked, as supervisord would; ``Proc.kill`` kills it for good)."""
    return drill.spawn(name, "speed", "run", "--quiet", "--stream", STREAM)


def speed_group(drill: Drill, n: int) -> list[Proc]:
    """Archiver, one batch cycle, and ``n`` speed workers consuming."""
    drill.archiver()
    workers = [worker(drill, f"speed-{i}") for i in range(n)]
    wait_for(lambda: consumed(drill.settings) > 0, 120, "the speed workers committing")
    return workers


def caught_up_from(drill: Drill, at: float) -> float:
    """Seconds from ``at`` until the speed offsets reach the log's end offsets read now."""
    target = log_end(drill.settings)
    wait_for(lambda: consumed(drill.settings) >= target, 240, "speed layer caught up")
    return time.monotonic() - at


def test_speed_worker_sigkill_partitions_taken_over(
    open_drill: Any, cluster_spark: Any, cluster_stack: Stack
) -> None:
    drill = open_drill("speed worker SIGKILL, takeover", rate=RATE)
    victim, _survivor = speed_group(drill, 2)
    drill.cycle(cluster_spark)
    sampler = drill.sample(in_process(drill.settings), period_s=1.0)
    time.sleep(5)
    victim.kill()  # the process group, never restarted: its partitions must move
    killed_at = time.monotonic()
    drill.fault = {"killed": "speed worker 1 of 2 (not restarted)", "when": f"+{drill.now():.0f} s"}
    recover = caught_up_from(drill, killed_at)
    notes = [f"{len(sampler.failures)} answers failed meanwhile"]
    drill.finish(cluster_spark, recover_s=recover, notes=notes)


def test_a_third_speed_worker_joins_mid_stream(open_drill: Any, cluster_spark: Any) -> None:
    drill = open_drill("third speed worker joins", rate=RATE)
    speed_group(drill, 2)
    drill.cycle(cluster_spark)
    sampler = drill.sample(in_process(drill.settings), period_s=1.0)
    time.sleep(5)
    worker(drill, "speed-2")
    joined_at = time.monotonic()
    drill.fault = {"killed": "nothing: a third worker added", "when": f"+{drill.now():.0f} s"}
    time.sleep(10)  # the group rebalances; then every partition must still be consumed
    recover = caught_up_from(drill, joined_at)
    notes = [f"{len(sampler.failures)} answers failed meanwhile"]
    drill.finish(cluster_spark, recover_s=recover, notes=notes)


def masters() -> dict[int, str]:
    """The Redis Cluster's masters now: port -> supervised node name (``redis-{n}``)."""
    ports = redis_cluster_ports(load_settings(profile="cluster"))
    client = redis.Redis(host="127.0.0.1", port=ports[0], decode_responses=True)
    try:
        slots = client.execute_command("CLUSTER SLOTS")
    finally:
        client.close()
    served = {int(master[1]) for _start, _end, master, *_replicas in slots}
    return {port: f"redis-{ports.index(port) + 1}" for port in sorted(served)}


def busiest_master(prefix: str) -> tuple[str, int]:
    """(node name, port) of the master holding the most keys under ``prefix`` (the drill's)."""

    def held(port: int) -> int:
        client = redis.Redis(host="127.0.0.1", port=port)
        try:
            return sum(1 for _ in client.scan_iter(match=f"{prefix}*", count=1000))
        finally:
            client.close()

    port = max(masters(), key=held)
    return masters()[port], port


def test_redis_master_sigkill_replica_promoted(
    open_drill: Any, cluster_spark: Any, cluster_stack: Stack
) -> None:
    drill = open_drill("Redis master SIGKILL", rate=RATE)
    speed_group(drill, 2)
    drill.cycle(cluster_spark)
    sampler = drill.sample(in_process(drill.settings), period_s=1.0)
    time.sleep(5)
    name, port = busiest_master(drill.settings.redis_prefix)
    kill = kill_node(cluster_stack, name)
    drill.fault = {
        "killed": f"{name} (a master of the drill's keys)",
        "when": f"+{drill.now():.0f} s",
    }
    target = log_end(drill.settings)

    roles: list[str] = []

    def back_in_cluster() -> None:
        """Back as a replica (its replica was promoted), or as the master again (restarted
        from its append-only file before the failover timeout); either way serving."""
        client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        try:
            role = client.execute_command("ROLE")[0]
            state = client.execute_command("CLUSTER", "INFO")
        finally:
            client.close()
        assert "cluster_state:ok" in str(state), f"{name}: cluster not ok yet"
        assert role == "slave" or port in masters(), f"{name} rejoined as {role}"
        roles.append("a replica (its replica promoted)" if role == "slave" else "master again")

    rejoined = wait_rejoined(cluster_stack, kill, back_in_cluster, 180)
    wait_for(lambda: consumed(drill.settings) >= target, 240, "speed layer caught up")
    recover = time.monotonic() - kill.at
    notes = [
        f"{name} back as {roles[-1]} {rejoined:.1f} s after the kill",
        f"{len(sampler.failures)} answers failed meanwhile",
    ]
    drill.finish(cluster_spark, recover_s=recover, notes=notes)
