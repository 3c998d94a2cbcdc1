"""Fixtures of the cluster's fault drills (``make drills-cluster``, marker ``cluster_drill``).

The drills run the local stack's drill harness (``tests/drills/``: continuous ingest, the
platform's CLI processes, the oracle checks at the end) against the cluster profile's
settings: ``open_drill`` opens a drill on the cluster, its processes run with
``LAMBDALAB_PROFILE=cluster``. Every session that ran a cluster drill writes
``artifacts/drills/results-cluster.json`` and prints the table; ``python -m
tests.drills.report cluster`` puts it into docs/reliability.md ("Cluster drills").

The cluster must be up (``make up-cluster``); if a node is not, the drill fails naming it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra import health
from infra.stack import Stack
from lambdalab.settings import Settings, load_settings
from tests.drills import report
from tests.drills.drill import Drill
from tests.drills.record import Rows, keep_failed_call, opener

CLUSTER_ROWS = pytest.StashKey[Rows]()
STARTED = time.monotonic()
START_HINT = "start the cluster with `make up-cluster` (`lambdalab stack up --cluster`)"


@pytest.fixture(scope="session")
def cluster_stack() -> Stack:
    """The cluster, every supervised node reachable; fails naming those that are not."""
    settings = load_settings(profile="cluster")
    stack = Stack(settings, cluster=True)
    closed = [
        f"{n.name} (127.0.0.1:{n.ports[0]})"
        for n in stack.services(with_platform=False)
        if n.supervised and not health.port_open("127.0.0.1", n.ports[0])
    ]
    if closed or not stack.supervisor.running():
        what = ", ".join(closed) or f"no supervisord at {stack.supervisor.socket}"
        pytest.fail(f"cluster not up: {what}; {START_HINT}", pytrace=False)
    return stack


@pytest.fixture(scope="session")
def cluster_spark(cluster_stack: Stack) -> Iterator[Any]:
    """One Spark session on the cluster's master, for the drills' final batch cycles."""
    from batch.spark import spark_session

    session = spark_session(cluster_stack.settings, app_name="lambdalab-cluster-drills")
    yield session
    session.stop()


@pytest.fixture
def drill_base(cluster_stack: Stack) -> Settings:
    """The settings a drill starts from: the cluster profile's (a module may override)."""
    return cluster_stack.settings


@pytest.fixture
def open_drill(
    drill_base: Settings,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., Drill]]:
    """``open_drill("DataNode SIGKILL")``: a started drill on the cluster, recorded as a row
    of the cluster's table at teardown (an ERROR row if it never reached its verdict)."""
    monkeypatch.setenv("LAMBDALAB_PROFILE", "cluster")  # the drill's processes: the cluster
    yield from opener(drill_base, tmp_path, request, CLUSTER_ROWS)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    made = yield
    keep_failed_call(item, made)
    return made


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rows = config.stash.get(CLUSTER_ROWS, [])
    if rows:
        terminalreporter.write_sep("=", "cluster drills")
        terminalreporter.write_line(report.table(rows, report.CLUSTER_COLUMNS))


def pytest_sessionfinish(session: pytest.Session) -> None:
    rows = session.config.stash.get(CLUSTER_ROWS, [])
    if rows:
        report.write(report.CLUSTER, rows, time.monotonic() - STARTED)
