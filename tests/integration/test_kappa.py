"""Kappa (replay the log through the streaming code) equals Lambda (batch @ cut ⊕ speed)."""

from __future__ import annotations

import time

from batch.tasks import run_cycle
from ingest.producer import EventProducer
from lab import kappa
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from speed.consumer import catch_up
from speed.reader import SpeedReader
from tests.events import EventFactory
from views.registry import all_views


def test_replay_equals_the_merged_answers(
    stack: Settings, settings: Settings, make_event: EventFactory
) -> None:
    make = make_event.configured(  # a third of the events 90 minutes late
        urls=tuple(f"/k{i}" for i in range(6)),
        users=41,
        referrers=(None, "r.example"),
        sizes=(1, 999),
        late_fraction=1 / 3,
        late_by_s=(90 * 60.0, 90 * 60.0),
        id_prefix="k",
    )
    settings = settings.model_copy(
        update={"batch": settings.batch.model_copy(update={"window_s": 2, "clock_skew_s": 0})}
    )
    producer = EventProducer(settings, PAGE_VIEWS)
    first, second, third = make.many(400), make.many(300), make.many(200)
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
    assert cut is not None  # the last view's version (mypy loses the loop's narrowing)
    realtime = SpeedReader(settings).partials(
        "pageviews_by_url_hourly", "/k0", cut.cut_ms, 0, 2**62
    )
    assert sum(row["views"] for row in realtime.values()) > 0
