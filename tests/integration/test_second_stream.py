"""Adding a stream is one declaration: a second stream flows through every layer.

A `clicks` stream with its own fields (and its own event-time field) is declared in the
test, with one view over it. Its events go to their own topic, land in their own master
dataset, get a batch version and realtime views, and merge in the serving layer -- each
checked against a plain-Python oracle -- while the default stream's speed state is left
alone by the new stream's consumer.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from batch.archiver import land
from batch.master import read_master
from batch.reader import BatchReader
from batch.tasks import run_cycle
from ingest.producer import EventProducer
from lambdalab import schema
from lambdalab.hdfs import webhdfs
from lambdalab.schema import PAGE_VIEWS, Field, Stream, format_ts
from lambdalab.settings import Settings
from lambdalab.topics import ensure_topics
from serving.query import merged_query
from speed.consumer import catch_up
from speed.reader import SpeedReader
from tests import oracle as truth
from tests.events import pageview
from views import registry
from views.definition import Measure, ViewDef

CLICKS = Stream(
    name="clicks",
    fields=(
        Field("event_id", "string"),
        Field("element", "string"),
        Field("user_id", "string"),
        Field("weight", "int"),
        Field("clicked_at", "timestamp"),
    ),
    time_field="clicked_at",
)


@pytest.fixture
def clicks_view(monkeypatch: pytest.MonkeyPatch) -> ViewDef:
    monkeypatch.setitem(schema.STREAMS, "clicks", CLICKS)
    view = ViewDef(
        name="clicks_by_element_10min",
        stream="clicks",
        keys=("element",),
        bucket_s=600,
        measures=(Measure("clicks", "count"), Measure("weight", "sum", "weight")),
    )
    known = registry.all_views()
    monkeypatch.setattr(registry, "all_views", lambda: {**known, view.name: view})
    return view


def _clicks(n: int) -> list[dict[str, Any]]:
    rng = random.Random(5)
    now = datetime.now(UTC)
    return [
        {
            "event_id": f"c{i}",
            "element": rng.choice(["buy", "cart", "search"]),
            "user_id": f"u{rng.randint(0, 20)}",
            "weight": rng.randint(1, 9),
            "clicked_at": format_ts(now - timedelta(minutes=rng.choice([0, 0, 35]))),
        }
        for i in range(n)
    ]


def _post_over_http(settings: Settings, events: list[dict[str, Any]]) -> None:
    from fastapi.testclient import TestClient

    from serving.app import create_app

    write = {"X-API-Key": settings.api.write_keys[0]}
    with TestClient(create_app(settings)) as client:
        ok = client.post("/streams/clicks/events", json=events, headers=write)
        assert ok.status_code == 200, ok.text
        assert ok.json()["accepted"] == len(events)
        bad = client.post(
            "/streams/clicks/events", json=[{**events[0], "clicked_at": 3}], headers=write
        )
        assert bad.status_code == 422
        assert "clicked_at" in bad.json()["errors"][0]["reason"]
        unknown = client.post("/streams/nope/events", json=events[:1], headers=write)
        assert unknown.status_code == 404
        assert "unknown stream 'nope'" in unknown.json()["detail"]


def test_a_declared_stream_flows_through_every_layer(
    stack: Settings, settings: Settings, clicks_view: ViewDef
) -> None:
    assert settings.topic_for("clicks") == f"{settings.namespace}.events.clicks"
    ensure_topics(settings)
    clicks = _clicks(500)
    pageviews = EventProducer(settings, PAGE_VIEWS)
    pageviews.send_many(
        [pageview(event_id="p1", url="/x", bytes=5, event_time=format_ts(datetime.now(UTC)))]
    )
    pageviews.close()
    producer = EventProducer(settings, CLICKS)
    producer.send_many(clicks[200:])
    producer.close()
    _post_over_http(settings, clicks[:200])

    # the default stream's speed layer first; the new consumer's rebuild must not touch it
    catch_up(settings, PAGE_VIEWS)
    catch_up(settings, CLICKS, views={clicks_view.name: clicks_view})
    speed = SpeedReader(settings)
    assert sum(speed.offsets("pageviews_by_url_hourly").values()) == 1
    assert speed.partials("pageviews_by_url_hourly", "/x", 0, 0, 2**62)
    assert sum(speed.offsets(clicks_view.name).values()) == len(clicks)

    oracle = truth.measures(clicks_view, clicks)  # (element, bucket) -> {clicks, weight}
    for (element, bucket), want in oracle.items():
        got = speed.partials(clicks_view.name, element, 0, bucket, bucket + 600_000)
        assert got == {bucket: want}

    # the master dataset of the new stream holds exactly its events, with its own columns
    manifest = land(settings, CLICKS)
    assert manifest["rows"] == len(clicks)
    table = read_master(webhdfs(settings), settings, "clicks")
    assert sorted(table.column("event_id").to_pylist()) == sorted(e["event_id"] for e in clicks)
    assert "clicked_at" in table.column_names

    # a batch version over all of it (cut after every record), then the merged answer
    cut = (int(datetime.now(UTC).timestamp() * 1000) // 60_000 + 2) * 60_000
    report = run_cycle(
        settings, cut_ms=cut, views=[clicks_view], trino=False, allow_future_cut=True
    )
    assert report["views"][clicks_view.name]["status"] == "published"
    batch = BatchReader(settings)
    version = batch.current(clicks_view.name)
    assert version is not None
    for (element, bucket), want in oracle.items():
        rows = batch.rows(clicks_view.name, version.version, element, bucket, bucket + 600_000)
        assert {m: rows[bucket][m] for m in want} == want
        answer = merged_query(
            settings, batch, speed, clicks_view, element, (bucket, bucket + 600_000)
        )
        merged = {m: answer["merged"][0][m] for m in want}
        assert merged == want  # batch covers all, realtime since the cut adds nothing
