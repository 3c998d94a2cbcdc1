"""Cuts only move forward and sit on window boundaries (batch layer, real HDFS and Spark)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from batch.master import commit_file, to_table
from batch.publish import VersionStore
from batch.tasks import run_cycle
from lambdalab.errors import BatchError
from lambdalab.hdfs import webhdfs
from lambdalab.paths import MasterFile
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from tests.events import pageview
from views.registry import get_view

VIEW = get_view("pageviews_by_url_hourly")
W_MS = 60_000
T0 = 1_790_000_000_000 - 1_790_000_000_000 % (3600 * 1000)


@pytest.fixture(scope="module")
def spark(stack: Settings) -> Iterator[Any]:
    from batch.spark import spark_session

    session = spark_session(stack, app_name="lambdalab-test-cuts")
    yield session


def _land_window(settings: Settings, window: int, first: int, n: int) -> None:
    rows = []
    for i in range(n):
        offset = first + i
        ingest = T0 + window * W_MS + i
        event = pageview(event_id=f"e{offset}", url="/a")
        rows.append(
            {
                "topic": settings.topic_for(PAGE_VIEWS.name),
                "partition": 0,
                "offset": offset,
                "ingest_ts": datetime.fromtimestamp(ingest / 1000, tz=UTC),
                "key": None,
                "value": b"{}",
                "event": event,
            }
        )
    mf = MasterFile(T0 + window * W_MS, 0, first, first + n - 1)
    commit_file(webhdfs(settings), settings, PAGE_VIEWS, mf, to_table(PAGE_VIEWS, rows))


def test_an_unaligned_cut_is_refused(stack: Settings, settings: Settings, spark: Any) -> None:
    _land_window(settings, 0, 0, 3)
    with pytest.raises(BatchError, match="not an ingest-window boundary"):
        run_cycle(settings, cut_ms=T0 + W_MS + 1, land=False, trino=False, views=[VIEW])


def test_a_cut_below_the_current_one_is_refused_and_nothing_changes(
    stack: Settings, settings: Settings, spark: Any
) -> None:
    _land_window(settings, 0, 0, 3)
    _land_window(settings, 1, 3, 4)
    later = run_cycle(
        settings, cut_ms=T0 + 2 * W_MS, land=False, trino=False, views=[VIEW], spark=spark
    )
    assert later["ok"] and later["views"][VIEW.name]["status"] == "published"
    store = VersionStore(settings)
    before = store.published(VIEW.name)
    with pytest.raises(BatchError, match="cuts never go back"):
        run_cycle(settings, cut_ms=T0 + W_MS, land=False, trino=False, views=[VIEW], spark=spark)
    assert store.published(VIEW.name) == before
    # A cut below every master file (no input at all) is refused the same way.
    with pytest.raises(BatchError, match="cuts never go back"):
        run_cycle(settings, cut_ms=T0 - 60 * W_MS, land=False, trino=False, views=[VIEW])
    assert store.published(VIEW.name) == before
    assert int(store.lineage(VIEW.name, before[0])["cut_ms"]) == T0 + 2 * W_MS
    with pytest.raises(BatchError, match="cuts never go back"):
        store.publish(VIEW.name, "/nowhere", {"cut_ms": T0 + W_MS})


def test_a_cut_after_the_last_complete_window_is_refused(
    stack: Settings, settings: Settings
) -> None:
    """Events of the windows below such a cut may still arrive: they would be in neither
    layer (the batch version has no room for them, and the speed layer expires them)."""
    import time

    from lambdalab.boundary import cut_at

    complete = cut_at(settings, int(time.time() * 1000))
    with pytest.raises(BatchError, match="after the last complete ingest window"):
        run_cycle(settings, cut_ms=complete + 2 * W_MS, land=False, trino=False, views=[VIEW])
    assert VersionStore(settings).published(VIEW.name) == []
