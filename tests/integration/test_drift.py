"""The two-codebase drift check over real master-dataset files on HDFS."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest

from batch.master import commit_file, to_table
from lab import drift
from lab.handwritten import pageviews_speed
from lambdalab.hdfs import webhdfs
from lambdalab.paths import MasterFile
from lambdalab.schema import PAGE_VIEWS, format_ts
from lambdalab.settings import Settings

BASE_MS = 1_795_590_000_000


def _land_synthetic(settings: Settings, n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows, events = [], []
    for offset in range(n):
        ingest = BASE_MS + offset * 100
        event_ms = ingest - rng.choice([0, 0, 3_600_000 * 3])
        event = {
            "event_id": f"e{offset}",
            "url": f"/p{rng.randint(0, 3)}",
            "user_id": f"u{rng.randint(0, 30)}",
            "referrer": None,
            "bytes": rng.randint(1, 5000),
            "event_time": format_ts(datetime.fromtimestamp(event_ms / 1000, tz=UTC)),
        }
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


def _oracle(events: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, int]]:
    sizes: dict[tuple[str, int], list[int]] = defaultdict(list)
    for e in events:
        ms = int(datetime.fromisoformat(e["event_time"].replace("Z", "+00:00")).timestamp() * 1000)
        sizes[(e["url"], ms // 3_600_000 * 3_600_000)].append(e["bytes"])
    return {
        k: {"views": len(v), "min_bytes": min(v), "max_bytes": max(v)} for k, v in sizes.items()
    }


def test_two_copies_agree_and_match_the_oracle(stack: Settings, settings: Settings) -> None:
    events = _land_synthetic(settings, 1500, seed=3)
    report = drift.check(settings)
    assert report.records == 1500
    assert not report.drifted, report.differences[:3]
    assert pageviews_speed.compute(events) == _oracle(events)


def test_drift_is_detected(
    stack: Settings, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _land_synthetic(settings, 600, seed=4)
    original = pageviews_speed.compute

    def off_by_one_hour(events: Any) -> Any:  # a "fix" made in one codebase only
        return {(url, hour + 3_600_000): row for (url, hour), row in original(events).items()}

    monkeypatch.setattr(pageviews_speed, "compute", off_by_one_hour)
    report = drift.check(settings)
    assert report.drifted
    assert report.cells_speed == report.cells_batch
