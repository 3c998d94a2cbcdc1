"""The event schema: one declaration, validation with reasons naming the field."""

from __future__ import annotations

import math
import sys

import orjson
import pytest

from lambdalab.errors import DefinitionError
from lambdalab.schema import PAGE_VIEWS, Field, Stream, parse_ts_ms, value_text
from tests.events import pageview

GOOD = pageview(bytes=512, event_time="2026-11-25T07:00:00+00:00")


def test_valid_event_is_normalised() -> None:
    event, why = PAGE_VIEWS.validate(GOOD)
    assert why is None
    assert event is not None
    assert event["event_time"] == "2026-11-25T07:00:00.000Z"
    assert parse_ts_ms(event["event_time"]) == 1795590000000


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"bytes": "12"}, "field 'bytes' must be an integer"),
        ({"bytes": True}, "field 'bytes' must be an integer"),
        ({"url": None}, "field 'url' is required"),
        ({"event_time": "yesterday"}, "field 'event_time' is not an ISO-8601"),
        ({"event_time": "2026-11-25T07:00:00"}, "field 'event_time' must carry a timezone"),
        ({"event_time": "2026-11-25T07:00:00x+05:45"}, "field 'event_time' is not an ISO"),
        ({"event_time": "2026-11-25 07:00:00Z"}, "field 'event_time' is not an ISO"),
        ({"event_time": "20261125T070000Z"}, "field 'event_time' is not an ISO"),
        ({"event_time": "2026-11-25T07:00:00+05"}, "field 'event_time' is not an ISO"),
        ({"event_time": "2026-11-25T07:00:00\x00Z"}, "field 'event_time' is not an ISO"),
        ({"event_time": "\uff12026-11-25T07:00:00Z"}, "field 'event_time' is not an ISO"),
        ({"colour": "red"}, "unknown field(s): colour"),
        ({"url": "x" * 3000}, "field 'url' is longer than"),
    ],
)
def test_invalid_events_name_the_field(change: dict[str, object], reason: str) -> None:
    event, why = PAGE_VIEWS.validate({**GOOD, **change})
    assert event is None
    assert why is not None
    assert reason in why


def test_decode_reports_bad_bytes() -> None:
    assert PAGE_VIEWS.decode(b"{not json")[1].startswith("not valid JSON")  # type: ignore[union-attr]
    assert PAGE_VIEWS.decode(None)[1] == "record has no value"
    assert "JSON object" in (PAGE_VIEWS.decode(b"[1,2]")[1] or "")
    event, why = PAGE_VIEWS.decode(orjson.dumps(GOOD))
    assert why is None
    assert event is not None
    assert PAGE_VIEWS.decode(PAGE_VIEWS.encode(event)) == (event, None)


def test_derived_forms_follow_the_declaration() -> None:
    names = [f.name for f in PAGE_VIEWS.arrow_fields()]
    assert names == list(PAGE_VIEWS.field_names)
    assert PAGE_VIEWS.spark_ddl().count("`") == 2 * len(PAGE_VIEWS.fields)


TYPED = Stream(
    name="typed",
    fields=(
        Field("event_id", "string"),
        Field("price", "float"),
        Field("ok", "bool"),
        Field("ratio", "float", required=False),
        Field("event_time", "timestamp"),
    ),
)
TYPED_GOOD = {"event_id": "t1", "price": 1.5, "ok": True, "event_time": "2026-11-25T07:00:00Z"}


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (1.5, 1.5),
        (-0.0, -0.0),
        (7, 7.0),  # a JSON integer for a float field becomes a float
        (2**53 + 1, float(2**53)),  # past 2**53: the nearest double (documented rounding)
        (2**1023, float(2**1023)),
        (sys.float_info.max, sys.float_info.max),
        (5e-324, 5e-324),
    ],
)
def test_float_fields_hold_finite_floats(given: object, stored: float) -> None:
    event, why = TYPED.validate({**TYPED_GOOD, "price": given})
    assert why is None
    assert event is not None
    assert type(event["price"]) is float
    assert event["price"] == stored


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"price": True}, "field 'price' must be a number, got a boolean"),
        ({"price": "1.5"}, "field 'price' must be a number, got a string"),
        ({"price": [1.0]}, "field 'price' must be a number, got an array"),
        ({"price": math.nan}, "field 'price' must be a finite number"),
        ({"price": math.inf}, "field 'price' must be a finite number"),
        ({"ratio": -math.inf}, "field 'ratio' must be a finite number"),
        ({"price": 2**1024}, "field 'price' is beyond the range of a 64-bit float"),
        ({"price": None}, "field 'price' is required"),
        ({"ok": 1}, "field 'ok' must be true or false, got an integer"),
        ({"ok": 0}, "field 'ok' must be true or false, got an integer"),
        ({"ok": "true"}, "field 'ok' must be true or false, got a string"),
        ({"ok": 1.0}, "field 'ok' must be true or false, got a number"),
        ({"ok": {}}, "field 'ok' must be true or false, got an object"),
    ],
)
def test_float_and_bool_refusals_name_the_field(change: dict[str, object], reason: str) -> None:
    event, why = TYPED.validate({**TYPED_GOOD, **change})
    assert event is None
    assert why is not None
    assert reason in why


def test_bool_fields_take_only_true_and_false() -> None:
    for flag in (True, False):
        event, _ = TYPED.validate({**TYPED_GOOD, "ok": flag})
        assert event is not None
        assert event["ok"] is flag
    event, _ = TYPED.validate({**TYPED_GOOD, "ratio": None})
    assert event is not None
    assert event["ratio"] is None


def test_float_and_bool_round_trip_through_kafka_bytes_and_parquet() -> None:
    import pyarrow as pa

    from batch.master import to_table

    event, _ = TYPED.validate({**TYPED_GOOD, "price": 3, "ratio": 0.1})
    assert event is not None
    assert TYPED.decode(TYPED.encode(event)) == (event, None)
    row = {
        "topic": "t", "partition": 0, "offset": 0, "ingest_ts": 0, "key": None,
        "value": TYPED.encode(event), "event": event,
    }  # fmt: skip
    table = to_table(TYPED, [row])
    assert table.schema.field("price").type == pa.float64()
    assert table.schema.field("ok").type == pa.bool_()
    assert table.column("price").to_pylist() == [3.0]
    assert table.column("ok").to_pylist() == [True]
    assert "`price` DOUBLE" in TYPED.spark_ddl() and "`ok` BOOLEAN" in TYPED.spark_ddl()


def test_a_field_of_unknown_type_is_refused_naming_the_stream_and_field() -> None:
    with pytest.raises(DefinitionError, match="stream 'x': field 'n': unknown type 'double'"):
        Stream("x", (Field("n", "double"), Field("t", "timestamp")), id_field="n", time_field="t")  # type: ignore[arg-type]


def test_value_text_is_what_spark_casts_to_a_string() -> None:
    assert [value_text(v) for v in (True, False, 7, "a")] == ["true", "false", "7", "a"]


EPOCHS = Stream(
    name="epochs",
    fields=(
        Field("s", "timestamp", time_format="epoch_s"),
        Field("ms", "timestamp", time_format="epoch_ms", required=False),
    ),
    id_field="s",
    time_field="s",
)


@pytest.mark.parametrize(
    ("s", "ms", "want_s", "want_ms"),
    [
        (0, 0, "1970-01-01T00:00:00.000Z", "1970-01-01T00:00:00.000Z"),
        (1.001, 1001, "1970-01-01T00:00:01.001Z", "1970-01-01T00:00:01.001Z"),
        (1.0019, -1, "1970-01-01T00:00:01.001Z", "1969-12-31T23:59:59.999Z"),  # floored
        (-0.0005, None, "1969-12-31T23:59:59.999Z", None),
        (1700000000.123, 1700000000123, "2023-11-14T22:13:20.123Z", "2023-11-14T22:13:20.123Z"),
        (-2208988800, -2208988800000, "1900-01-01T00:00:00.000Z", "1900-01-01T00:00:00.000Z"),
        (221845391999.999, 221845391999999, "8999-12-31T23:59:59.999Z", "8999-12-31T23:59:59.999Z"),
        ("2026-03-01T10:15:00+01:00", "2026-03-01T09:15:00.000Z",
         "2026-03-01T09:15:00.000Z", "2026-03-01T09:15:00.000Z"),  # ISO text too (the log's)
    ],
)  # fmt: skip
def test_epoch_fields_become_the_normal_iso_text(
    s: object, ms: object, want_s: str, want_ms: str | None
) -> None:
    event, why = EPOCHS.validate({"s": s, "ms": ms})
    assert why is None
    assert event == {"s": want_s, "ms": want_ms}
    assert EPOCHS.validate(event) == (event, None)  # the edge's output validates unchanged
    assert EPOCHS.decode(EPOCHS.encode(event)) == (event, None)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"s": True}, "field 's' must be a number of seconds since 1970-01-01"),
        ({"s": [1]}, "field 's' must be a number of seconds"),
        ({"s": math.nan}, "field 's' must be a finite number of seconds"),
        ({"s": -2208988800.001}, "field 's' is outside the accepted range"),
        ({"s": 221845392000}, "field 's' is outside the accepted range"),
        ({"s": 10**30}, "field 's' is outside the accepted range"),
        ({"s": "1700000000"}, "field 's' is not an ISO-8601 timestamp"),
        ({"ms": 1.5}, "field 'ms' must be an integer number of milliseconds"),
        ({"ms": False}, "field 'ms' must be an integer number of milliseconds"),
        ({"ms": 221845392000000}, "field 'ms' is outside the accepted range"),
        ({"ms": -2208988800001}, "field 'ms' is outside the accepted range"),
    ],
)
def test_epoch_refusals_name_the_field(change: dict[str, object], reason: str) -> None:
    event, why = EPOCHS.validate({"s": 0, **change})
    assert event is None
    assert why is not None
    assert reason in why


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            (Field("n", "int", time_format="epoch_s"),),
            "field 'n': time_format applies to timestamp",
        ),
        ((Field("u", "timestamp", time_format="unix"),), "field 'u': unknown time_format 'unix'"),  # type: ignore[arg-type]
        ((Field("n", "int", default=3),), "field 'n': a default is for an optional field"),
        ((Field("n", "int", False, default="3"),), "field 'n': default '3' is not a valid value"),
        ((Field("n", "int"), Field("n", "string")), "field 'n' is declared twice"),
        ((Field("bad name", "int"),), "field 'bad name': a field name must be an identifier"),
    ],
)
def test_a_bad_declaration_names_the_stream_and_the_field(
    fields: tuple[Field, ...], message: str
) -> None:
    with pytest.raises(DefinitionError, match=f"stream 's': {message}"):
        Stream("s", (Field("id", "string"), Field("t", "timestamp"), *fields), "id", "t")


def test_the_id_and_time_fields_must_be_declared() -> None:
    with pytest.raises(DefinitionError, match="stream 's': time_field 'when' is not one of"):
        Stream("s", (Field("id", "string"),), "id", "when")
    with pytest.raises(DefinitionError, match="time_field 'id' must be a timestamp field"):
        Stream("s", (Field("id", "string"),), "id", "id")


def test_the_default_stream_is_the_named_one_or_the_projects_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lambdalab import schema
    from lambdalab.errors import NotFound

    first = schema.Stream(
        "aa", (schema.Field("event_id", "string"), schema.Field("event_time", "timestamp"))
    )
    monkeypatch.setattr(schema, "STREAMS", {"aa": first, "pageviews": schema.PAGE_VIEWS})
    assert schema.default_stream(None) is first
    assert schema.default_stream("pageviews") is schema.PAGE_VIEWS
    with pytest.raises(NotFound, match="unknown stream 'nope'"):
        schema.default_stream("nope")
    monkeypatch.setattr(schema, "STREAMS", {})
    with pytest.raises(NotFound, match="declares no stream"):
        schema.default_stream(None)
