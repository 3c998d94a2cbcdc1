"""A batch that waits for the one continuous lander instead of landing (batch.landing=wait).

The compose cluster runs one lander (``land --follow``) and a batch loop that must not land:
a cycle snapshots the end offsets and waits until the master dataset reaches them. It must
not wait forever on a tail of aborted records or transaction markers (never landed), must
fail clearly when no lander runs, and must never land a record itself.
"""

from __future__ import annotations

import threading
import time

import orjson
import pytest

from batch.archiver import land
from batch.master import list_files, read_master
from batch.tasks import run_cycle
from lambdalab.errors import BatchError
from lambdalab.hdfs import webhdfs
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.topics import ensure_topics
from tests.events import pageview, transactional_producer
from views.registry import get_view

VIEW = get_view("pageviews_by_url_hourly")


def _waiting(settings: Settings, wait_s: float) -> Settings:
    batch = settings.batch.model_copy(update={"landing": "wait", "landing_wait_s": wait_s})
    return settings.model_copy(update={"batch": batch})


def _produce(settings: Settings, first: int, n: int, *, abort_after: int = 0) -> None:
    """``n`` committed events, then (optionally) ``abort_after`` aborted ones, in a transaction."""
    producer = transactional_producer(settings)
    topic = settings.topic_for(PAGE_VIEWS.name)
    producer.begin_transaction()
    for i in range(first, first + n):
        producer.send(topic, orjson.dumps(pageview(event_id=f"e{i}", url="/w")), partition=i % 2)
    producer.commit_transaction()
    if abort_after:
        producer.begin_transaction()
        for i in range(abort_after):
            event = pageview(event_id=f"aborted{i}", url="/w")
            producer.send(topic, orjson.dumps(event), partition=i % 2)
        producer.flush()
        producer.abort_transaction()
    producer.close()


def _landed_ids(settings: Settings) -> list[str]:
    table = read_master(webhdfs(settings), settings, PAGE_VIEWS.name)
    return sorted(table.column("event_id").to_pylist())


def test_without_a_lander_the_cycle_fails_clearly_and_lands_nothing(
    stack: Settings, settings: Settings
) -> None:
    ensure_topics(settings)
    _produce(settings, 0, 6)
    waiting = _waiting(settings, 3.0)
    with pytest.raises(BatchError, match=r"did not land .* is `lambdalab land --follow` running"):
        run_cycle(waiting, trino=False, views=[VIEW])
    assert list_files(webhdfs(settings), settings, PAGE_VIEWS.name) == []


def test_the_cycle_waits_for_the_lander_and_not_for_aborted_records(
    stack: Settings, settings: Settings
) -> None:
    ensure_topics(settings)
    _produce(settings, 0, 8, abort_after=5)  # the log ends with aborted records and a marker

    def lander() -> None:
        time.sleep(3.0)
        land(settings, PAGE_VIEWS)

    thread = threading.Thread(target=lander)
    started = time.monotonic()
    thread.start()
    try:
        window_ms = settings.batch.window_s * 1000
        cut = (int(time.time() * 1000) // window_ms + 2) * window_ms  # above every event
        waiting = _waiting(settings, 60.0)
        report = run_cycle(waiting, cut_ms=cut, trino=False, views=[VIEW], allow_future_cut=True)
    finally:
        thread.join()
    waited = time.monotonic() - started
    landed = report["landed"][PAGE_VIEWS.name]
    assert landed["landing"] == "waited"
    assert 2.5 < landed["waited_s"] <= waited < 60
    assert report["ok"] and report["views"][VIEW.name]["status"] == "published"
    assert _landed_ids(settings) == sorted(f"e{i}" for i in range(8))  # landed once, by it
