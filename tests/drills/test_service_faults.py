"""Drills that take a service of the shared stack away: Kafka, Redis's data, the DataNode.

They disturb every other test on the machine, so they carry only the ``drill`` marker
(never ``make test``) and take ``quiet_stack``: they wait until no other pytest runs, and
every service is started again and healthy at teardown whatever happened. The platform's
processes run as under supervisord: one that exits because a backend went away is started
again a second later (``Proc``), as ``autorestart=unexpected`` does.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from infra.stack import Stack
from lambdalab.hdfs import published_cuts
from speed.reader import SpeedReader
from speed.store import connect
from tests.drills.drill import in_process
from tests.drills.harness import WINDOW_S, consumed, landed, log_end, stopped, wait_for
from views.registry import all_views

pytestmark = [pytest.mark.drill, pytest.mark.timeout(1800)]  # may first wait for quiet
DOWN_S = 8.0  # how long a stopped service stays down


def caught_up(settings: Any, target: int) -> bool:
    return consumed(settings) >= target and landed(settings) >= target


def test_kafka_broker_restart(open_drill: Any, spark: Any, quiet_stack: Stack) -> None:
    """The only broker is stopped for a few seconds and started again under ingest, with the
    speed consumer and the archiver running. Recover: from the broker's start until it is
    healthy and both layers have caught up with the log's end offsets read at that moment."""
    drill = open_drill("Kafka broker restart")
    drill.speed()
    drill.archiver()
    wait_for(lambda: caught_up(drill.settings, 1), 60, "speed and archiver running")
    time.sleep(WINDOW_S)
    with stopped(quiet_stack, "kafka") as outage:
        time.sleep(DOWN_S)
    target = log_end(drill.settings)
    wait_for(lambda: caught_up(drill.settings, target), 180, "layers caught up")
    wait_for(lambda: drill.ledger.last_ack > outage.healthy_at, 60, "ingest acknowledged again")
    recover = time.monotonic() - outage.started_at
    notes = [f"broker healthy {outage.healthy_at - outage.started_at:.1f} s after its start"]
    drill.finish(spark, recover_s=recover, notes=notes)


def test_redis_flushall(open_drill: Any, spark: Any, quiet_stack: Stack) -> None:
    """FLUSHALL under ingest with two published versions: the speed layer must notice,
    rebuild from the previous version's cut (its expiry horizon) and catch up, while every
    answer meanwhile stays exact for what it claims. Recover: from the flush until the
    rebuilt speed layer has caught up with the log's end offsets at the flush."""
    drill = open_drill("Redis FLUSHALL")
    drill.speed()
    time.sleep(2 * WINDOW_S)
    drill.cycle(spark)
    time.sleep(WINDOW_S)
    drill.cycle(spark)  # two versions: the horizon is the first one's cut
    horizon = min(published_cuts(drill.settings, view)[1] for view in all_views())
    sampler = drill.sample(in_process(drill.settings))
    time.sleep(1.0)
    flushed_ms, target = int(time.time() * 1000), log_end(drill.settings)
    connect(drill.settings).flushall()
    reader = SpeedReader(drill.settings)

    def rebuilt() -> bool:
        status = reader.status("pageviews")
        return (status["rebuilt_at_ms"] or 0) >= flushed_ms and consumed(drill.settings) >= target

    recover = wait_for(rebuilt, 120, "speed layer rebuilt and caught up")
    start = reader.status("pageviews")["rebuilt_from_ms"]
    drill.expect(start == horizon, f"rebuilt from {start}, not from the horizon {horizon}")
    time.sleep(2.0)
    notes = [f"rebuilt from the horizon; {len(sampler.failures)} answers failed meanwhile"]
    drill.finish(spark, recover_s=recover, notes=notes)


def test_datanode_restart(open_drill: Any, spark: Any, quiet_stack: Stack) -> None:
    """The only DataNode is stopped and started again under ingest, with the archiver and
    the speed consumer running and answers being asked for. Recover: from the DataNode's
    start until the master dataset covers the log's end offsets read once it is healthy."""
    drill = open_drill("DataNode restart")
    drill.speed()
    drill.archiver()
    time.sleep(2 * WINDOW_S)
    drill.cycle(spark)
    sampler = drill.sample(in_process(drill.settings))
    with stopped(quiet_stack, "datanode") as outage:
        time.sleep(DOWN_S)
    target = log_end(drill.settings)
    wait_for(lambda: landed(drill.settings) >= target, 180, "archiver caught up")
    recover = time.monotonic() - outage.started_at
    notes = [
        f"DataNode healthy {outage.healthy_at - outage.started_at:.1f} s after its start",
        f"{len(sampler.failures)} answers failed while it was down",
    ]
    drill.finish(spark, recover_s=recover, notes=notes)
