"""serving.realtime.RealtimeTables: the realtime table is reused exactly while the offsets stay."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from serving.realtime import RealtimeTables
from views.definition import Measure, ViewDef

pytestmark = pytest.mark.unit
VIEW = ViewDef("v", "pageviews", ("url",), 3600, (Measure("views", "count"),))


class FakeSpeed:
    def __init__(self) -> None:
        self.committed = {0: 5}
        self.cells: dict[str, Any] = {"/a": {0: {"views": 1}}}
        self.snapshots = 0

    def offsets(self, view: str) -> dict[int, int]:
        return dict(self.committed)

    def view_snapshot(self, view: str, since: int, lo: int, hi: int) -> Any:
        self.snapshots += 1
        return SimpleNamespace(cells=self.cells, freshness_ms=9, offsets=dict(self.committed))


def test_the_table_is_reused_until_a_commit_or_another_cut() -> None:
    speed, tables = FakeSpeed(), RealtimeTables()
    first = tables.read(speed, VIEW, 100)
    assert tables.read(speed, VIEW, 100) is first and speed.snapshots == 1
    speed.committed, speed.cells = {0: 6}, {"/a": {0: {"views": 2}}}
    second = tables.read(speed, VIEW, 100)
    assert speed.snapshots == 2 and second.cells.column("views").to_pylist() == [2]
    assert second.offsets == {0: 6} and second.freshness_ms == 9
    tables.read(speed, VIEW, 200)
    assert speed.snapshots == 3


def test_a_kappa_replay_is_never_reused_and_switching_to_one_rereads() -> None:
    speed, tables = FakeSpeed(), RealtimeTables()
    tables.read(speed, VIEW, 100)
    speed.kappa = lambda view: "replay"  # type: ignore[attr-defined]
    snap = speed.view_snapshot
    speed.view_snapshot = lambda *a: SimpleNamespace(**vars(snap(*a)), kappa="replay")  # type: ignore[method-assign]
    first = tables.read(speed, VIEW, 100)
    assert first.kappa == "replay" and speed.snapshots == 2
    tables.read(speed, VIEW, 100)
    assert speed.snapshots == 3
