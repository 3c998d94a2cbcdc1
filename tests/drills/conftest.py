"""Fixtures of the fault drills: drills, one Spark session, the stack for disruptive drills.

``make drills`` runs every drill (``pytest -m drill``) with the full repetitions
(``LAMBDALAB_DRILLS=full``); ``make test`` runs the quick, non-disruptive ones, which also
carry the ``integration`` marker, in their short form. Every session that ran a drill
writes ``artifacts/drills/results-{mode}.json`` and prints the drill table at the end.

Drills that stop a service of the shared stack (Kafka, the DataNode) or flush Redis take
``quiet_stack``: it waits until no other pytest session runs on this machine, and at
teardown brings every service back and waits for its health check, whatever happened.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.stack import Stack
from lambdalab.settings import Settings
from tests.drills import report
from tests.drills.drill import Drill
from tests.drills.harness import FULL, bring_back
from tests.drills.record import Rows, keep_failed_call, opener

ROWS = pytest.StashKey[Rows]()
STARTED = time.monotonic()  # this conftest is loaded at collection, when the session starts
DISRUPTED = ("kafka", "datanode", "redis")
QUIET_WAIT_S = float(os.environ.get("LAMBDALAB_DRILLS_QUIET_WAIT_S", "600"))


@pytest.fixture(scope="session")
def spark(stack: Settings) -> Iterator[Any]:
    """One Spark session for the drills' own batch cycles (the final one of each drill)."""
    from batch.spark import spark_session

    session = spark_session(stack, app_name="lambdalab-drills")
    yield session
    session.stop()


@pytest.fixture
def open_drill(
    stack: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Drill]]:
    """``open_drill("speed SIGKILL x10", rate=40)``: a started drill (events/s of ingest),
    closed and recorded at teardown; a drill that never reached its end is an ERROR row."""
    yield from opener(stack, tmp_path, request, ROWS)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    keep_failed_call(item, report)
    return report


@pytest.fixture
def quiet_stack(stack: Settings) -> Iterator[Stack]:
    """The local stack, once no other pytest runs; every service is back at teardown."""
    wait_alone()
    local = Stack(stack)
    try:
        yield local
    finally:
        for service in DISRUPTED:
            bring_back(local, service)


def wait_alone() -> None:
    """Wait until this is the only pytest session here (disruptive drills disturb others)."""
    deadline = time.monotonic() + QUIET_WAIT_S
    while others := other_pytests():
        if time.monotonic() > deadline:
            pytest.fail(
                f"other pytest sessions still run after {QUIET_WAIT_S:.0f} s; a disruptive "
                f"drill would break them: {others[:3]}",
                pytrace=False,
            )
        time.sleep(10)


def other_pytests() -> list[str]:
    """Command lines of pytest processes that are neither this one nor its ancestors."""
    mine, pid = set(), os.getpid()
    while pid > 1:
        mine.add(pid)
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    found = subprocess.run(["pgrep", "-af", "pytest"], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if int(line.split()[0]) not in mine]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rows = config.stash.get(ROWS, [])
    if rows:
        terminalreporter.write_sep("=", f"fault drills ({mode()})")
        terminalreporter.write_line(report.table(rows))


def pytest_sessionfinish(session: pytest.Session) -> None:
    rows = session.config.stash.get(ROWS, [])
    if rows:
        total = time.monotonic() - STARTED
        report.write(mode(), rows, total)


def mode() -> str:
    return "full" if FULL else "short"
