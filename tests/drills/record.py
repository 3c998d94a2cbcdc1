"""Drills opened by a fixture and recorded as table rows: shared by the local stack's drills
(``tests/drills/conftest.py``) and the cluster's (``tests/cluster/conftest.py``).

A fixture yields :func:`opener`'s function; at teardown every drill it opened becomes one
row in the session's list under ``rows_key`` (a drill that never reached its verdict is an
ERROR row naming the failure), which the session writes with :mod:`tests.drills.report`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdalab.settings import Settings
from tests.drills.drill import Drill

Rows = list[dict[str, Any]]
CALL = pytest.StashKey[pytest.TestReport]()


def opener(
    base: Settings, tmp_path: Path, request: pytest.FixtureRequest, rows_key: pytest.StashKey[Rows]
) -> Iterator[Callable[..., Drill]]:
    """The body of an ``open_drill`` fixture: ``open_drill("name", rate=40)`` starts a drill
    on ``base``'s stack; each is closed and recorded under ``rows_key`` at teardown."""
    opened: list[Drill] = []

    def open_one(name: str, rate: float = 40.0) -> Drill:
        slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:20]
        drill = Drill(name, slug, base, tmp_path / slug, rate)
        opened.append(drill)
        return drill.start()

    yield open_one
    rows = request.config.stash.setdefault(rows_key, [])
    for drill in opened:
        drill.close()
        verdict = drill.verdict
        rows.append(verdict.row() if verdict else error_row(drill, request.node))


def error_row(drill: Drill, item: pytest.Item) -> dict[str, Any]:
    """The row of a drill that failed before its end: the failure's last line, and the
    processes supervision gave up on."""
    report = item.stash.get(CALL, None)
    reasons = [str(report.longrepr).strip().splitlines()[-1][:300]] if report else []
    reasons += [f"{p.name} FATAL (did not start again)" for p in drill.procs if p.fatal]
    return {"drill": drill.name, "result": "ERROR", "notes": "; ".join(reasons), **drill.fault}


def keep_failed_call(item: pytest.Item, report: pytest.TestReport) -> None:
    """Remember a failed call phase, for :func:`error_row` (a ``makereport`` hook calls it)."""
    if report.when == "call" and report.failed:
        item.stash[CALL] = report
