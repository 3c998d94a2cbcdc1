"""The two-codebase drift check over real master-dataset files on HDFS."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from batch.master import commit_file, to_table
from lab import drift
from lab.handwritten import pageviews_speed
from lambdalab.hdfs import webhdfs
from lambdalab.paths import MasterFile
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from tests import oracle
from tests.events import EventFactory
from views.registry import get_view

BASE_MS = 1_795_590_000_000


def _land_synthetic(settings: Settings, n: int, make_event: EventFactory) -> list[dict[str, Any]]:
    make = make_event.configured(
        urls=("/p0", "/p1", "/p2", "/p3"),
        users=31,
        referrers=(None,),
        sizes=(1, 5000),
        late_fraction=1 / 3,
        late_by_s=(3 * 3600.0, 3 * 3600.0),
    )
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for offset in range(n):
        ingest = BASE_MS + offset * 100
        event = make(at=ingest)
        events.append(event)
        rows.append(
            {
                "topic": settings.topic_for(PAGE_VIEWS.name),
                "partition": 0,
                "offset": offset,
                "ingest_ts": ingest,
                "key": None,
                "value": PAGE_VIEWS.encode(event),
                "event": event,
            }
        )
    client = webhdfs(settings)
    by_window: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_window[row["ingest_ts"] - row["ingest_ts"] % 60_000].append(row)
    for window, group in sorted(by_window.items()):
        mf = MasterFile(window, 0, group[0]["offset"], group[-1]["offset"])
        commit_file(client, settings, PAGE_VIEWS, mf, to_table(PAGE_VIEWS, group))
    return events


def _oracle(events: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """(url, hour) -> {views, min_bytes, max_bytes}: the registered view, from the oracle."""
    return oracle.measures(get_view("pageviews_by_url_hourly"), events)


def test_two_copies_agree_and_match_the_oracle(
    stack: Settings, settings: Settings, make_event: EventFactory
) -> None:
    events = _land_synthetic(settings, 1500, make_event)
    report = drift.check(settings)
    assert report.records == 1500
    assert not report.drifted, report.differences[:3]
    assert pageviews_speed.compute(events) == _oracle(events)


def test_drift_is_detected(
    stack: Settings, settings: Settings, monkeypatch: pytest.MonkeyPatch, make_event: EventFactory
) -> None:
    _land_synthetic(settings, 600, make_event)
    original = pageviews_speed.compute

    def off_by_one_hour(events: Any) -> Any:  # a "fix" made in one codebase only
        return {(url, hour + 3_600_000): row for (url, hour), row in original(events).items()}

    monkeypatch.setattr(pageviews_speed, "compute", off_by_one_hour)
    report = drift.check(settings)
    assert report.drifted
    assert report.cells_speed == report.cells_batch
