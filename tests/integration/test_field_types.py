"""Float, bool and epoch-time fields, through every layer of the real stack.

A ``readings`` stream with a float, an optional float, a bool field and an event time in
epoch seconds (with a fraction): hostile values at
the HTTP edge are a 422 naming the field, and a raw record with one goes to the
dead-letter topic with its reason; valid events land in the master dataset as float64 and
bool columns, and a view keyed by the bool field answers the same in the batch layer
(Spark), the speed layer (Python) and the merge as a plain-Python oracle.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from kafka import KafkaProducer

from batch.archiver import land
from batch.master import read_master
from lambdalab import schema
from lambdalab.deadletters import read_dead_letters
from lambdalab.hdfs import webhdfs
from lambdalab.schema import Field, Stream, format_ts
from lambdalab.settings import Settings
from lambdalab.topics import ensure_topics
from serving.app import create_app
from speed.consumer import catch_up
from tests import oracle as truth
from tests.answers import every_layer_equals
from views import registry
from views.definition import ViewDef

READINGS = Stream(
    name="readings",
    fields=(
        Field("event_id", "string"),
        Field("celsius", "float"),
        Field("humidity", "float", required=False),
        Field("ok", "bool"),
        Field("n", "int"),
        Field("at", "timestamp", time_format="epoch_s"),
    ),
    time_field="at",
)
VIEW_DEF = {
    "name": "readings_by_ok",
    "stream": "readings",
    "keys": ["ok"],
    "bucket_s": 3600,
    "measures": [
        {"name": "readings", "kind": "count"},
        {"name": "n", "kind": "sum", "field": "n"},
    ],
}
WRITE = {"X-API-Key": "dev-write-key"}


@pytest.fixture
def readings(monkeypatch: pytest.MonkeyPatch) -> ViewDef:
    monkeypatch.setitem(schema.STREAMS, "readings", READINGS)
    view = ViewDef.from_dict(VIEW_DEF)
    known = registry.all_views()
    monkeypatch.setattr(registry, "all_views", lambda: {**known, view.name: view})
    return view


def _events(n: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "event_id": f"r{i}",
            "celsius": [20, 21.5, -3.25, 1e300][i % 4],  # an int for a float field too
            "humidity": None if i % 3 == 0 else i / 7,
            "ok": i % 5 != 0,
            "n": i,
            "at": (now - timedelta(hours=i % 2)).timestamp() + i / 1000,  # epoch seconds
        }
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"celsius": "20.5"}, "field 'celsius' must be a number"),
        ({"celsius": True}, "field 'celsius' must be a number"),
        ({"humidity": [1]}, "field 'humidity' must be a number"),
        ({"ok": 1}, "field 'ok' must be true or false"),
        ({"ok": "false"}, "field 'ok' must be true or false"),
    ],
)
def test_a_bad_float_or_bool_is_a_422_naming_the_field(
    settings: Settings, readings: ViewDef, change: dict[str, Any], needle: str
) -> None:
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/streams/readings/events", json=[{**_events(1)[0], **change}], headers=WRITE
        )
    assert r.status_code == 422, r.text
    assert needle in r.json()["errors"][0]["reason"]


def test_floats_and_bools_flow_through_every_layer(settings: Settings, readings: ViewDef) -> None:
    view = readings
    ensure_topics(settings)
    events = _events(60)
    with TestClient(create_app(settings)) as client:
        ok = client.post("/streams/readings/events", json=events, headers=WRITE)
        assert ok.status_code == 200, ok.text
        # NaN cannot be written in JSON: the body is refused before any field is read
        nan = client.post(
            "/streams/readings/events",
            content=b'{"event_id":"x","celsius":NaN,"ok":true,"n":1,"at":1700000000}',
            headers={**WRITE, "Content-Type": "application/json"},
        )
        assert nan.status_code == 400, nan.text
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    poison = {**events[1], "event_id": "poison", "ok": 1}
    producer.send(settings.topic_for("readings"), value=orjson.dumps(poison), partition=0)
    raw = {**events[2], "event_id": "raw", "at": int(events[2]["at"])}  # an epoch, unnormalised
    producer.send(settings.topic_for("readings"), value=orjson.dumps(raw), partition=1)
    events.append(raw)
    producer.flush()
    producer.close()

    valid = [READINGS.validate(e)[0] for e in events]
    assert all(v is not None for v in valid)
    assert valid[0] is not None and type(valid[0]["celsius"]) is float  # 20 became 20.0
    assert valid[0]["at"].endswith("Z")  # the epoch became the normal ISO text

    catch_up(settings, READINGS, views={view.name: view})
    manifest = land(settings, READINGS)
    assert (manifest["rows"], manifest["dead_letters"]) == (len(events), 1)
    letters = list(read_dead_letters(settings).values())
    assert any("field 'ok' must be true or false" in x["reason"] for x in letters)

    table = read_master(webhdfs(settings), settings, "readings")
    assert table.schema.field("celsius").type == pa.float64()
    assert table.schema.field("ok").type == pa.bool_()
    assert table.schema.field("at").type == pa.timestamp("ms", tz="UTC")
    times = dict(
        zip(table.column("event_id").to_pylist(), table.column("at").to_pylist(), strict=True)
    )
    stored = {  # the epoch time field is a timestamp column like an ISO one
        r["event_id"]: r
        for r in table.select(["event_id", "celsius", "humidity", "ok"]).to_pylist()
    }
    for want in valid:
        assert want is not None
        got = stored[want["event_id"]]
        assert (got["celsius"], got["humidity"], got["ok"]) == (
            want["celsius"], want["humidity"], want["ok"],
        )  # fmt: skip
        assert format_ts(times[want["event_id"]]) == want["at"]

    oracle = truth.measures(view, [v for v in valid if v is not None])
    assert {key for key, _ in oracle} == {"true", "false"}
    every_layer_equals(settings, view, oracle)
