"""Schema evolution on the real stack: an optional field added to a stream with data.

Events of v1 land; the stream gains an optional field with a default (v2); events of v2
land; a new view keyed by the new field is built by a batch cycle and by the speed layer.
Each layer, and the merge, equals a plain-Python oracle that gives the v1 events (stored
without the field, in Kafka and in Parquet) the default. Removing or retyping a field of
the stored stream is refused at the archiver's start with a message to declare a new
stream, and nothing is landed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from batch.archiver import land
from batch.master import check_schema, read_master, schema_record_path
from batch.trino_tables import TrinoTables
from ingest.producer import EventProducer
from lambdalab import schema
from lambdalab.errors import SchemaRefused
from lambdalab.hdfs import webhdfs
from lambdalab.schema import Field, Stream, format_ts
from lambdalab.settings import Settings
from lambdalab.topics import end_offsets, ensure_topics
from speed.consumer import catch_up
from tests import oracle as truth
from tests.answers import every_layer_equals
from views import registry
from views.definition import ViewDef

BASE = (
    Field("event_id", "string"),
    Field("site", "string"),
    Field("n", "int"),
    Field("event_time", "timestamp"),
)
V1 = Stream("sensors", BASE)
V2 = Stream("sensors", (*BASE, Field("unit", "string", required=False, default="celsius")))
REMOVED = Stream("sensors", (BASE[0], BASE[1], BASE[3], V2.fields[-1]))
RETYPED = Stream("sensors", (BASE[0], BASE[1], Field("n", "float"), BASE[3], V2.fields[-1]))
VIEW = {
    "name": "sensors_by_unit",
    "stream": "sensors",
    "keys": ["unit", "site"],
    "bucket_s": 3600,
    "measures": [{"name": "readings", "kind": "count"}, {"name": "n", "kind": "sum", "field": "n"}],
}


def _events(prefix: str, count: int, units: list[str | None] | None = None) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    out = []
    for i in range(count):
        event: dict[str, Any] = {
            "event_id": f"{prefix}{i}",
            "site": ["north", "south", "east"][i % 3],
            "n": i,
            "event_time": format_ts(now - timedelta(hours=i % 2)),
        }
        if units is not None and units[i % len(units)] is not None:
            event["unit"] = units[i % len(units)]
        out.append(event)
    return out


def _send(settings: Settings, stream: Stream, events: list[dict[str, Any]]) -> None:
    producer = EventProducer(settings, stream)
    producer.send_many([stream.validate(e)[0] for e in events])
    producer.close()


def test_an_optional_field_added_to_a_stream_with_data(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(schema.STREAMS, "sensors", V1)
    ensure_topics(settings)
    client = webhdfs(settings)
    old = _events("a", 45)
    _send(settings, V1, old)
    assert land(settings, V1)["rows"] == len(old)
    with client.read(schema_record_path(settings, "sensors")) as reader:
        assert orjson.loads(reader.read()) == V1.record()  # recorded on the first landing

    tables = TrinoTables(settings)
    tables.ensure_schema()
    tables.register_master(V1)
    monkeypatch.setitem(schema.STREAMS, "sensors", V2)
    new = _events("b", 30, units=["kelvin", None, "celsius"])  # None: left out, the default
    _send(settings, V2, new)
    assert land(settings, V2)["rows"] == len(new)
    with client.read(schema_record_path(settings, "sensors")) as reader:
        assert orjson.loads(reader.read()) == V2.record()  # the allowed evolution recorded

    # Trino's table over the master dataset gains the column; older files read null there
    tables.register_master(V2)
    _, counted = tables.query("SELECT unit, count(*) FROM master_sensors GROUP BY unit")
    stored_units = [e.get("unit") or "celsius" for e in new]
    want_units = {None: len(old), **{u: stored_units.count(u) for u in set(stored_units)}}
    assert dict(counted) == want_units

    # the oracle: the default for every event without the field, v1 or v2 (plain Python)
    expected = [{**e, "unit": e.get("unit") or "celsius"} for e in old + new]
    stored = read_master(client, settings, "sensors")
    units = dict(
        zip(stored.column("event_id").to_pylist(), stored.column("unit").to_pylist(), strict=True)
    )
    assert units == {e["event_id"]: e["unit"] for e in expected}

    view = ViewDef.from_dict(VIEW)
    known = registry.all_views()
    monkeypatch.setattr(registry, "all_views", lambda: {**known, view.name: view})
    oracle = truth.measures(view, expected)
    assert {key.split("\x1f")[0] for key, _ in oracle} == {"celsius", "kelvin"}

    catch_up(settings, V2, views={view.name: view})  # the speed layer re-reads v1 records too
    every_layer_equals(settings, view, oracle)

    assert check_schema(client, settings, V2, record=False) == "unchanged"
    # removing or retyping a field of the stored stream: refused, nothing landed
    _send(settings, V2, _events("c", 3))
    topic = settings.topic_for("sensors")
    for declared, problem in (
        (REMOVED, "field 'n' was removed"),
        (RETYPED, "field 'n' changed type from int to float"),
    ):
        monkeypatch.setitem(schema.STREAMS, "sensors", declared)
        with pytest.raises(SchemaRefused, match="declare a new stream") as refused:
            land(settings, declared)
        assert problem in str(refused.value)
        with pytest.raises(SchemaRefused, match=problem):  # `lambdalab project check --stored`
            check_schema(client, settings, declared, record=False)
    assert read_master(client, settings, "sensors").num_rows == len(old) + len(new)
    assert sum(end_offsets(settings, topic).values()) == len(old) + len(new) + 3
