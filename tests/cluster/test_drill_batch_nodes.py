"""Cluster drills: a node under the batch layer SIGKILLed during a build (`make drills-cluster`).

On the running cluster (`make up-cluster`), under continuous ingest, with the speed
consumer, the archiver (``land --follow``) and a batch loop (``batch loop --every 2s
--no-trino``: the batch layer's long-lived form, one Spark application on the standalone
master) running as the platform's CLI processes: once the loop has published, the drill
waits for a build under way (a view's staging folder holds a run) and SIGKILLs one node
with its children, as a machine dies; supervisord restarts it.

- **DataNode** (one of two; every block has a replica on each): reads fail over to the
  other replica, new blocks are written to the one left (the client's replacement policy
  ``DEFAULT`` never asks for a third node at replication 2), the NameNode copies the
  blocks that were written once back to the restarted node.
- **Spark worker** (one of two, while it hosts an executor of the loop): its executors
  die with it, the driver reruns their tasks on the other worker (an executor lost is not
  a task failure: it does not count towards ``spark.task.maxFailures``).

Either way the build completes or the loop's next cycle retries it; the drill ends as
every drill does (``Drill.finish``): the log, the master dataset and every merged cell
equal to the oracle over the acknowledged events, nothing lost or doubled. Recover: from
the kill until every view has published a version cut after the cut it served at the
kill (a cycle that started after the kill, or the killed one finished).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from infra import health
from infra.cluster import (
    DATANODES,
    SPARK_WORKERS,
    datanode_ports,
    spark_ui_port,
    spark_worker_ports,
)
from infra.stack import Stack
from tests.cluster.nodes import (
    Kill,
    app_id,
    building,
    kill_node,
    newest_cuts,
    under_replicated,
    wait_rejoined,
    workers_hosting,
)
from tests.drills.drill import Drill, Sampler, in_process
from tests.drills.harness import Proc, wait_for

pytestmark = [pytest.mark.cluster_drill, pytest.mark.timeout(900)]
RATE = 20.0  # events/s of the feed
SAMPLE_S = 1.0  # one merged answer asked per second while the node is down
LOOP_APP = "lambdalab-batch-loop"  # batch/cli.py names the loop's Spark application so


def loop_published(drill: Drill) -> Proc:
    """Speed consumer, archiver and batch loop running; returns once the loop published."""
    drill.speed()
    drill.archiver()
    loop = drill.spawn("batch-loop", "batch", "loop", "--every", "2s", "--no-trino")
    wait_for(lambda: min(newest_cuts(drill.settings).values()) >= 0, 300, "a first version")
    return loop


def kill_during_build(
    drill: Drill, stack: Stack, victim: Callable[[], str | None], seed: int
) -> tuple[Kill, dict[str, int]]:
    """Wait for a build under way with a victim to pick, then SIGKILL that node.

    Returns the kill and the cuts served at that moment.
    """

    def chosen() -> str | None:
        return victim() if building(drill.settings) else None

    node = wait_for_value(chosen, 240, "a build under way with a victim")
    time.sleep(random.Random(seed).uniform(0.0, 1.0))  # a moment the build does not choose
    served = newest_cuts(drill.settings)
    busy = building(drill.settings)
    kill = kill_node(stack, node)
    drill.fault = {
        "killed": f"{node} (with its children)",
        "when": f"+{kill.at - drill.origin:.0f} s, building {', '.join(busy) or 'a view'}",
    }
    return kill, served


def wait_for_value(check: Callable[[], str | None], timeout_s: float, what: str) -> str:
    from lambdalab.wait import wait_until

    return wait_until(check, timeout_s=timeout_s, interval_s=0.1, what=what, retry_on=(Exception,))


def recovered(drill: Drill, kill: Kill, served: dict[str, int]) -> float:
    """Seconds from the kill until every view published a version cut after ``served``."""

    def newer() -> bool:
        now = newest_cuts(drill.settings)
        return all(now[view] > cut for view, cut in served.items())

    wait_for(newer, 300, "every view published again after the kill")
    return time.monotonic() - kill.at


def failed(sampler: Sampler) -> str:
    """How many answers asked during the drill failed, and the first failure."""
    asked = len(sampler.failures) + len(sampler.samples)
    first = f" (first: {sampler.failures[0][2][:120]})" if sampler.failures else ""
    return f"{len(sampler.failures)} of {asked} answers asked meanwhile failed{first}"


def loop_notes(loop: Proc) -> list[str]:
    """What the batch loop said about its cycles (failed ones are retried by the next)."""
    said = loop.output()
    return [
        f"batch loop: {said.count('batch cycle failed')} cycle(s) failed and retried, "
        f"{said.count('Lost executor')} executor(s) lost (Spark's log)"
    ]


def test_datanode_sigkill_during_a_build(
    open_drill: Any, cluster_spark: Any, cluster_stack: Stack
) -> None:
    drill = open_drill("DataNode SIGKILL during a build", rate=RATE)
    loop = loop_published(drill)
    sampler = drill.sample(in_process(drill.settings), period_s=SAMPLE_S)
    n = random.Random(14).randint(1, DATANODES)
    kill, served = kill_during_build(drill, cluster_stack, lambda: f"datanode-{n}", seed=1)
    port = datanode_ports(drill.settings, n)[0]
    rejoined = wait_rejoined(
        cluster_stack, kill, lambda: health.check_datanode(drill.settings, port=port), 180
    )
    recover = recovered(drill, kill, served)
    copied = wait_for(lambda: under_replicated(drill.settings) == 0, 180, "every block twice")
    notes = [
        f"datanode-{n} live in the NameNode {rejoined:.1f} s after the kill",
        f"no block short of its 2 replicas {copied:.0f} s after recovering (NameNode JMX)",
        failed(sampler),
    ]
    drill.finish(
        cluster_spark, recover_s=recover, notes=notes, notes_after=lambda: loop_notes(loop)
    )


def test_spark_worker_sigkill_during_a_build(
    open_drill: Any, cluster_spark: Any, cluster_stack: Stack
) -> None:
    drill = open_drill("Spark worker SIGKILL during a build", rate=RATE)
    loop = loop_published(drill)
    sampler = drill.sample(in_process(drill.settings), period_s=SAMPLE_S)

    def hosting_worker() -> str | None:
        app = app_id(drill.settings, LOOP_APP)
        hosts = workers_hosting(drill.settings, app) if app else []
        return f"spark-worker-{hosts[0]}" if hosts else None

    kill, served = kill_during_build(drill, cluster_stack, hosting_worker, seed=2)
    n = int(kill.node.rsplit("-", 1)[1])
    ui, port = spark_ui_port(drill.settings), spark_worker_ports(drill.settings, n)[0]
    rejoined = wait_rejoined(
        cluster_stack,
        kill,
        lambda: health.check_spark_worker(drill.settings, ui_port=ui, worker_port=port),
        180,
    )
    recover = recovered(drill, kill, served)
    notes = [
        f"{kill.node} registered ALIVE again {rejoined:.1f} s after the kill "
        f"({SPARK_WORKERS} workers)",
        failed(sampler),
    ]
    drill.finish(
        cluster_spark, recover_s=recover, notes=notes, notes_after=lambda: loop_notes(loop)
    )
