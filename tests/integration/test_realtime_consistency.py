"""The realtime store under concurrency, on the real Redis: one snapshot per query, and a
rebuild that fences a live consumer instead of double-counting what it wrote meanwhile."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from lambdalab.errors import FencedOut
from lambdalab.settings import Settings
from speed.reader import SpeedReader
from speed.store import RealtimeStore
from views.compute import aggregate
from views.registry import get_view

VIEW = get_view("pageviews_by_url_hourly")
WINDOW = 1_790_000_040_000 - 1_790_000_040_000 % 60_000


def _event(n: int) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "url": "/a",
        "user_id": f"u{n % 3}",
        "referrer": None,
        "bytes": n,
        "event_time": "2026-03-01T12:00:00.000Z",
    }


def _store(settings: Settings) -> RealtimeStore:
    return RealtimeStore(settings, settings.topic_for(VIEW.stream))


def _apply(store: RealtimeStore, position: dict[int, int], n: int) -> dict[int, int]:
    cells = aggregate(VIEW, [(WINDOW + 1, _event(n))], 60)
    nxt = {0: position[0] + 1}
    store.apply({VIEW: cells}, position, nxt, {"freshness_ms": WINDOW + n})
    return nxt


def test_every_snapshot_matches_the_offsets_it_reports(stack: Settings, settings: Settings) -> None:
    store = _store(settings)
    store.reset({VIEW.name: VIEW}, {0: 0}, {})
    stop = threading.Event()

    def write() -> None:
        position = {0: 0}
        for n in range(1500):
            position = _apply(store, position, n)
        stop.set()

    writer = threading.Thread(target=write)
    writer.start()
    reader, seen = SpeedReader(settings), 0
    while not stop.is_set():
        snap = reader.snapshot(VIEW.name, "/a", 0, 0, 2**62)
        views = sum(row["views"] for row in snap.rows.values())
        assert views == snap.offsets.get(0, 0), snap  # never a mix of two transactions
        seen += 1
    writer.join()
    assert seen > 10


@pytest.mark.parametrize("attempts", [5, 0])  # 0: always the atomic script
def test_a_snapshot_of_every_key_matches_the_offsets_it_reports(
    stack: Settings, settings: Settings, monkeypatch: pytest.MonkeyPatch, attempts: int
) -> None:
    import speed.reader

    monkeypatch.setattr(speed.reader, "SNAPSHOT_ATTEMPTS", attempts)
    store = _store(settings)
    store.reset({VIEW.name: VIEW}, {0: 0}, {})
    stop = threading.Event()

    def write() -> None:
        position = {0: 0}
        for n in range(800):
            cells = aggregate(VIEW, [(WINDOW + 1, {**_event(n), "url": f"/k{n % 40}"})], 60)
            nxt = {0: position[0] + 1}
            store.apply({VIEW: cells}, position, nxt, {"freshness_ms": WINDOW + n})
            position = nxt
        stop.set()

    writer = threading.Thread(target=write)
    writer.start()
    reader, seen = SpeedReader(settings), 0
    while not stop.is_set():
        snap = reader.view_snapshot(VIEW.name, 0, 0, 2**62)
        views = sum(row["views"] for rows in snap.cells.values() for row in rows.values())
        assert views == snap.offsets.get(0, 0), snap.offsets  # never a mix of transactions
        seen += 1
    writer.join()
    assert seen > 10
    final = reader.view_snapshot(VIEW.name, 0, 0, 2**62, keep=lambda key: key.endswith("7"))
    assert sorted(final.cells) == ["/k17", "/k27", "/k37", "/k7"]
    assert sum(row["views"] for rows in final.cells.values() for row in rows.values()) == 80
    assert final.freshness_ms == WINDOW + 799 and final.offsets == {0: 800}


def test_a_rebuild_fences_the_live_consumer(
    stack: Settings, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    live, rebuilder = _store(settings), _store(settings)
    live.reset({VIEW.name: VIEW}, {0: 0}, {})
    position = _apply(live, {0: 0}, 1)
    scan = rebuilder._scan
    raced = {"done": False}

    def scan_while_the_live_consumer_writes(pattern: str) -> list[bytes]:
        found = scan(pattern)
        if not raced["done"]:  # the live consumer commits between the SCAN and the EXEC
            raced["done"] = True
            cells = aggregate(VIEW, [(WINDOW + 60_001, {**_event(2), "url": "/new"})], 60)
            live.apply({VIEW: cells}, position, {0: 2}, {})
        return found

    monkeypatch.setattr(rebuilder, "_scan", scan_while_the_live_consumer_writes)
    rebuilder.reset({VIEW.name: VIEW}, {0: 0}, {})

    reader = SpeedReader(settings)
    assert reader.partials(VIEW.name, "/new", 0, 0, 2**62) == {}  # nothing survives the reset
    assert reader.offsets(VIEW.name) == {0: 0}
    with pytest.raises(FencedOut):
        _apply(live, {0: 2}, 3)
