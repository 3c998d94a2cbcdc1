"""Schema evolution: which changes of a stream with stored data are allowed, and old files."""

from __future__ import annotations

import pyarrow as pa
import pytest

from batch.master import conform, to_table
from lambdalab.schema import Field, Stream

V1 = Stream(
    "sensors",
    (Field("event_id", "string"), Field("n", "int"), Field("event_time", "timestamp")),
)


def _v(*extra: Field, base: tuple[Field, ...] = V1.fields) -> Stream:
    return Stream("sensors", (*base, *extra))


@pytest.mark.parametrize(
    "declared",
    [
        _v(Field("unit", "string", required=False, default="celsius")),
        _v(Field("unit", "string", required=False)),  # no default: null in old events
        _v(base=(Field("event_id", "string"), Field("n", "int", required=False),
                 Field("event_time", "timestamp", time_format="epoch_ms"))),
    ],
)  # fmt: skip
def test_allowed_evolutions(declared: Stream) -> None:
    assert declared.evolution_problems(V1.record()) == []


@pytest.mark.parametrize(
    ("declared", "problem"),
    [
        (Stream("sensors", (Field("event_id", "string"), Field("event_time", "timestamp"))),
         "field 'n' was removed"),
        (_v(base=(Field("event_id", "string"), Field("n", "float"),
                  Field("event_time", "timestamp"))),
         "field 'n' changed type from int to float"),
        (_v(Field("unit", "string")), "field 'unit' was added as required"),
        (_v(Field("unit", "string", required=False, default="k")).evolution_problems(
            _v(Field("unit", "string", required=False, default="c")).record()),
         "field 'unit' changed its default from 'c' to 'k'"),
    ],
)  # fmt: skip
def test_refused_evolutions_say_why(declared: Stream | list[str], problem: str) -> None:
    problems = declared if isinstance(declared, list) else declared.evolution_problems(V1.record())
    assert problem in " ".join(problems)


def test_an_optional_field_with_a_default_is_never_null() -> None:
    v2 = _v(Field("unit", "string", required=False, default="celsius"))
    event, _ = v2.validate({"event_id": "a", "n": 1, "event_time": "2026-01-01T00:00:00Z"})
    assert event is not None and event["unit"] == "celsius"


def test_an_old_master_file_is_read_in_the_new_shape() -> None:
    v2 = _v(
        Field("unit", "string", required=False, default="celsius"),
        Field("ratio", "float", required=False),
        Field("seen", "timestamp", required=False, default="2026-01-01T00:00:00.000Z"),
    )
    event = {"event_id": "a", "n": 1, "event_time": "2026-01-01T00:00:00.000Z"}
    row = {
        "topic": "t", "partition": 0, "offset": 0, "ingest_ts": 0, "key": None,
        "value": b"{}", "event": event,
    }  # fmt: skip
    old = to_table(V1, [row])
    new = conform(old, v2)
    assert new.schema.field("unit").type == pa.string()
    got = new.select(["event_id", "unit", "ratio", "seen"]).to_pylist()[0]
    assert (got["event_id"], got["unit"], got["ratio"]) == ("a", "celsius", None)
    assert got["seen"].isoformat() == "2026-01-01T00:00:00+00:00"
    valid, _ = v2.validate(event)  # a new event that leaves the fields out: their defaults
    current = to_table(v2, [{**row, "event": valid}])
    assert conform(current, v2).equals(current)
    assert current.select(["unit", "seen"]).to_pylist() == new.select(["unit", "seen"]).to_pylist()
