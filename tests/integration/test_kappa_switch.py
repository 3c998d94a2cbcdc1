"""Kreps' recipe on the real stack: replay into a new output, switch serving in one step.

Under continuous ingest, with the usual speed consumer running, a second instance replays
the log from offset 0 (``lab.kappa.replay_and_switch``) and switches serving to its output.
A query loop runs throughout: no answer is empty, none reflects fewer events than the one
before it, and every answer after the switch names the replay. At the end the Kappa answer
equals the oracle over every event sent; a second replay replaces the first (whose output
is then dropped), and switching back gives batch ⊕ realtime again, equal to the oracle.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from batch.reader import BatchReader
from batch.tasks import run_cycle
from ingest.producer import EventProducer
from lab import kappa
from lambdalab.paths import RedisKeys
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from serving.query import merged_cells, merged_query
from speed.consumer import SpeedConsumer, catch_up
from speed.reader import SpeedReader
from speed.store import connect
from tests import oracle
from tests.answers import served
from tests.events import EventFactory
from views.registry import get_view

VIEW = "pageviews_by_url_hourly"
SPAN = (0, 2**53)


def total(settings: Settings) -> tuple[int, Any]:
    """Views over every key of the merged answer, and where it came from."""
    parts, prov = merged_cells(
        settings,
        BatchReader(settings),
        SpeedReader(settings),
        get_view(VIEW),
        SPAN,
        lambda _k: True,
    )
    count = sum(row["views"] for part in parts for rows in part.values() for row in rows.values())
    return count, prov


def test_replay_and_switch_under_load(
    stack: Settings, settings: Settings, make_event: EventFactory
) -> None:
    settings = settings.model_copy(
        update={"batch": settings.batch.model_copy(update={"window_s": 2, "clock_skew_s": 0})}
    )
    make = make_event.configured(urls=tuple(f"/ks{i}" for i in range(7)), late_fraction=0.2)
    producer = EventProducer(settings, PAGE_VIEWS)
    sent: list[dict[str, Any]] = make.many(6000)  # a replay that takes a while
    producer.send_many(sent)
    time.sleep(2.5)
    catch_up(settings, PAGE_VIEWS)
    assert run_cycle(settings, trino=False)["ok"]  # Lambda has a batch part and a speed part

    stop, done = threading.Event(), threading.Event()
    live = SpeedConsumer(settings, PAGE_VIEWS)
    live.setup()
    threads = [threading.Thread(target=live.run, kwargs={"stop": done}, daemon=True)]

    def ingest() -> None:
        while not stop.is_set():
            batch = make.many(50)
            producer.send_many(batch)
            sent.extend(batch)
            time.sleep(0.02)

    seen: list[tuple[int, Any]] = []
    errors: list[str] = []

    def query() -> None:
        while not done.is_set():
            count, prov = total(settings)
            if count == 0:
                errors.append("an empty answer")
            if seen and count < seen[-1][0]:
                errors.append(f"{count} after {seen[-1][0]} ({seen[-1][1].kappa} -> {prov.kappa})")
            seen.append((count, prov))

    threads += [threading.Thread(target=ingest, daemon=True)]
    threads += [threading.Thread(target=query, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    follow = threading.Event()
    reports: list[kappa.SwitchReport] = []
    replay = threading.Thread(
        target=kappa.replay_and_switch,
        args=(settings, VIEW),
        kwargs={"follow": follow, "on_switch": reports.append, "grace_s": 0.5},
        daemon=True,
    )
    replay.start()
    deadline = time.monotonic() + 120
    while not reports and time.monotonic() < deadline:
        time.sleep(0.1)
    assert reports, "the replay never switched"
    switched_at = len(seen)
    time.sleep(1.5)
    stop.set()
    time.sleep(1.0)  # the last batches reach both consumers
    done.set()
    for t in threads:
        t.join(timeout=30)
    follow.set()
    replay.join(timeout=30)
    producer.close()

    assert errors == [], errors[:5]
    assert seen[0][1].kappa is None and seen[-1][1].kappa is not None
    assert all(prov.kappa is not None for _c, prov in seen[switched_at + 1 :])
    first = reports[0]
    assert first.output == f"{VIEW}__k1" and first.previous is None

    keys = sorted({e["url"] for e in sent})
    want = oracle.measures(get_view(VIEW), sent)
    got = served(settings, get_view(VIEW), keys)
    assert got == want
    assert sum(r["views"] for r in got.values()) == len(sent)

    # a second replay replaces the first; its output is dropped after the grace time
    second = kappa.replay_and_switch(settings, VIEW, grace_s=0.2)
    assert (second.output, second.previous) == (f"{VIEW}__k2", f"{VIEW}__k1")
    assert served(settings, get_view(VIEW), keys) == want
    client, rkeys = connect(settings), RedisKeys(settings)
    first = f"{settings.topic_for('pageviews')}@{VIEW}__k1"
    assert list(client.scan_iter(match=f"{rkeys.p}{{{first}|*")) == []  # every key of it
    assert not client.exists(rkeys.partitions(first))

    # and back to Lambda: batch ⊕ realtime (the live consumer kept it up to date)
    assert kappa.back_to_lambda(settings, VIEW, grace_s=0.2) == f"{VIEW}__k2"
    catch_up(settings, PAGE_VIEWS)
    lam = merged_query(
        settings, BatchReader(settings), SpeedReader(settings), get_view(VIEW), keys[0], SPAN
    )
    assert lam["kappa"] is None and lam["version"] is not None
    assert served(settings, get_view(VIEW), keys) == want


def test_the_switch_waits_until_the_replay_has_caught_up(
    stack: Settings, settings: Settings
) -> None:
    """The switch script, against Redis: behind on any partition, no switch; a moved switch, -1."""
    client, rkeys = connect(settings), RedisKeys(settings)
    pointer = rkeys.kappa(VIEW)
    served = [rkeys.partition("t", p).offsets for p in range(2)]
    mine = [rkeys.partition("t@mine", p).offsets for p in range(2)]
    client.hset(served[0], "next", 10)
    client.hset(served[1], "next", 5)
    client.hset(mine[0], "next", 12)
    client.hset(mine[1], "next", 4)

    def switch(before: bytes = b"") -> int:
        args = (5, pointer, *served, *mine, before, "new", 2)
        return int(client.eval(kappa.SWITCH_SCRIPT, *args))

    assert switch() == 0 and client.get(pointer) is None  # partition 1 is behind
    client.delete(mine[1])
    assert switch() == 0 and client.get(pointer) is None  # partition 1 not reached at all
    client.hset(mine[1], "next", 5)
    assert switch(b"someone else's") == -1 and client.get(pointer) is None
    assert switch() == 1 and client.get(pointer) == b"new"
    assert switch() == -1  # it moved: a second replay started before must not switch blindly
    client.delete(pointer, *served, *mine)
