"""Kappa (replay the log through the streaming code) equals Lambda (batch @ cut ⊕ speed)."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

from batch.tasks import run_cycle
from ingest.producer import EventProducer
from lab import kappa
from lambdalab.schema import PAGE_VIEWS, format_ts
from lambdalab.settings import Settings
from speed.consumer import catch_up
from speed.reader import SpeedReader
from views.registry import all_views


def _events(n: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    return [
        {
            "event_id": f"k{seed}-{i}",
            "url": f"/k{rng.randint(0, 5)}",
            "user_id": f"u{rng.randint(0, 40)}",
            "referrer": rng.choice([None, "r.example"]),
            "bytes": rng.randint(1, 999),
            "event_time": format_ts(now - timedelta(minutes=rng.choice([0, 0, 90]))),
        }
        for i in range(n)
    ]


def test_replay_equals_the_merged_answers(stack: Settings, settings: Settings) -> None:
    settings = settings.model_copy(
        update={"batch": settings.batch.model_copy(update={"window_s": 2, "clock_skew_s": 0})}
    )
    producer = EventProducer(settings, PAGE_VIEWS)
    first, second, third = _events(400, 1), _events(300, 2), _events(200, 3)
    producer.send_many(first)
    time.sleep(2.5)  # the first events' ingest window closes: the cut covers them
    producer.send_many(second)
    catch_up(settings, PAGE_VIEWS)
    report = run_cycle(settings, trino=False)
    producer.send_many(third)  # appended after the cut: only the speed layer has them
    assert report["ok"]
    # the Lambda side really has both parts: a published batch version and realtime windows
    assert {v["status"] for v in report["views"].values()} == {"published"}
    catch_up(settings, PAGE_VIEWS)
    producer.close()

    until = SpeedReader(settings).stream_offsets(PAGE_VIEWS.name)
    assert len(kappa.replay(settings, until, PAGE_VIEWS.name)) == len(first) + len(second) + len(
        third
    )
    from batch.reader import BatchReader

    for view in all_views().values():
        cut = BatchReader(settings).current(view.name)
        assert cut is not None
        assert cut.cut_ms > 0
        result = kappa.compare(settings, view)
        assert result.records == len(first) + len(second) + len(third)
        assert result.cells > 0
        assert result.mismatches == [], result.mismatches[:3]
    realtime = SpeedReader(settings).partials(
        "pageviews_by_url_hourly", "/k0", cut.cut_ms, 0, 2**62
    )
    assert sum(row["views"] for row in realtime.values()) > 0
