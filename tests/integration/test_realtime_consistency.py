"""The realtime store under concurrency, on the real Redis: one snapshot per query (each
partition read at one instant, merged), and a claim that fences the partition's previous
owner instead of double-counting what it writes after."""

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
PARTS = 2


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
    store = RealtimeStore(settings, settings.topic_for(VIEW.stream))
    store.register(PARTS)
    return store


def _take(store: RealtimeStore) -> dict[int, int]:
    """Claim and reset every partition; the epoch held per partition."""
    epochs = {p: store.claim(p, [VIEW.name]).epoch for p in range(PARTS)}
    for p, epoch in epochs.items():
        store.reset(p, {VIEW.name: VIEW}, epoch, 0, {})
    return epochs


def _apply(store: RealtimeStore, epochs: dict[int, int], position: dict[int, int], n: int) -> None:
    """Event ``n`` from partition n % PARTS, committed with that partition's next offset."""
    p = n % PARTS
    cells = aggregate(VIEW, [(WINDOW + 1, _event(n))], 60)
    store.apply(
        p, {VIEW: cells}, epochs[p], position[p], position[p] + 1, {"freshness_ms": WINDOW + n}
    )
    position[p] += 1


def test_every_snapshot_matches_the_offsets_it_reports(stack: Settings, settings: Settings) -> None:
    store = _store(settings)
    epochs = _take(store)
    stop = threading.Event()

    def write() -> None:
        position = dict.fromkeys(range(PARTS), 0)
        for n in range(1500):
            _apply(store, epochs, position, n)
        stop.set()

    writer = threading.Thread(target=write)
    writer.start()
    reader, seen = SpeedReader(settings), 0
    while not stop.is_set():
        snap = reader.snapshot(VIEW.name, "/a", 0, 0, 2**62)
        views = sum(row["views"] for row in snap.rows.values())
        assert views == sum(snap.offsets.values()), snap  # each partition at one instant
        seen += 1
    writer.join()
    assert seen > 10
    assert reader.offsets(VIEW.name) == {0: 750, 1: 750}


@pytest.mark.parametrize("attempts", [5, 0])  # 0: always the atomic script
def test_a_snapshot_of_every_key_matches_the_offsets_it_reports(
    stack: Settings, settings: Settings, monkeypatch: pytest.MonkeyPatch, attempts: int
) -> None:
    import speed.reader

    monkeypatch.setattr(speed.reader, "SNAPSHOT_ATTEMPTS", attempts)
    store = _store(settings)
    epochs = _take(store)
    stop = threading.Event()

    def write() -> None:
        position = dict.fromkeys(range(PARTS), 0)
        for n in range(800):
            p = n % PARTS
            cells = aggregate(VIEW, [(WINDOW + 1, {**_event(n), "url": f"/k{n % 40}"})], 60)
            meta = {"freshness_ms": WINDOW + n}
            store.apply(p, {VIEW: cells}, epochs[p], position[p], position[p] + 1, meta)
            position[p] += 1
        stop.set()

    writer = threading.Thread(target=write)
    writer.start()
    reader, seen = SpeedReader(settings), 0
    while not stop.is_set():
        snap = reader.view_snapshot(VIEW.name, 0, 0, 2**62)
        views = sum(row["views"] for rows in snap.cells.values() for row in rows.values())
        assert views == sum(snap.offsets.values()), snap.offsets  # never a mix of transactions
        seen += 1
    writer.join()
    assert seen > 10
    final = reader.view_snapshot(VIEW.name, 0, 0, 2**62, keep=lambda key: key.endswith("7"))
    assert sorted(final.cells) == ["/k17", "/k27", "/k37", "/k7"]
    assert sum(row["views"] for rows in final.cells.values() for row in rows.values()) == 80
    assert final.freshness_ms == WINDOW + 799 and final.offsets == {0: 400, 1: 400}


def test_a_claim_fences_the_previous_owner(stack: Settings, settings: Settings) -> None:
    """A zombie that lost partition 0 writes nothing more to it; partition 1 is its own.

    The new owner resumes from the stored offset, so the offset alone would not tell the
    zombie apart: the owner epoch does.
    """
    zombie, taker = _store(settings), _store(settings)
    epochs = _take(zombie)
    position = dict.fromkeys(range(PARTS), 0)
    _apply(zombie, epochs, position, 0)  # partition 0
    claim = taker.claim(0, [VIEW.name])
    assert claim.next == 1 and claim.epoch == epochs[0] + 1
    with pytest.raises(FencedOut) as fenced:
        _apply(zombie, epochs, position, 2)  # partition 0 again, at the right offset: taken
    assert fenced.value.partition == 0 and not fenced.value.lost
    _apply(zombie, epochs, position, 1)  # partition 1: still the zombie's
    reader = SpeedReader(settings)
    assert reader.offsets(VIEW.name) == {0: 1, 1: 1}
    assert sum(r["views"] for r in reader.partials(VIEW.name, "/a", 0, 0, 2**62).values()) == 2
    with pytest.raises(FencedOut):  # nor can it reset what it lost
        zombie.reset(0, {VIEW.name: VIEW}, epochs[0], 0, {})
    taker.reset(0, {VIEW.name: VIEW}, claim.epoch, 0, {})  # the owner can
    assert reader.offsets(VIEW.name) == {0: 0, 1: 1}
    assert sum(r["views"] for r in reader.partials(VIEW.name, "/a", 0, 0, 2**62).values()) == 1


def test_lost_offsets_fence_as_lost(stack: Settings, settings: Settings) -> None:
    store = _store(settings)
    epochs = _take(store)
    store.client.delete(store.part(1).offsets)  # Redis lost the partition
    with pytest.raises(FencedOut) as fenced:
        _apply(store, epochs, dict.fromkeys(range(PARTS), 0), 1)
    assert fenced.value.partition == 1 and fenced.value.lost


def test_offsets_gone_back_fence_as_lost_and_resume_from_there(
    stack: Settings, settings: Settings
) -> None:
    """Redis restarted from its append-only file, or a replica promoted before the last
    writes reached it: the partition is back at an older, consistent state. Nobody else
    claimed it, so the owner takes it again and resumes from the older offset; a zombie
    (an older epoch) is still fenced out as before."""
    store = _store(settings)
    epochs = _take(store)
    position = dict.fromkeys(range(PARTS), 0)
    _apply(store, epochs, position, 0)
    before = store.client.hgetall(store.part(0).offsets)
    _apply(store, epochs, position, 0)
    store.client.hset(store.part(0).offsets, mapping=before)  # the last write is lost
    with pytest.raises(FencedOut) as fenced:
        _apply(store, epochs, position, 0)
    assert fenced.value.partition == 0 and fenced.value.lost
    claim = store.claim(0, [VIEW.name])
    assert claim.next == 1 and claim.epoch == epochs[0] + 1
