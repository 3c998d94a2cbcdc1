"""Unit tests of edge validation: body parsing and per-item reasons naming the field."""

from __future__ import annotations

from pathlib import Path

import jsonschema_rs
import orjson
import pytest

from ingest.files import read_events
from ingest.validation import BodyError, check, event_json_schema, parse_body
from lambdalab.schema import PAGE_VIEWS, Field, Stream
from tests.events import pageview

GOOD = pageview(url="https://x/1", event_time="2025-01-01T00:00:00.000Z")


def test_one_object_array_and_ndjson() -> None:
    import orjson

    assert parse_body(orjson.dumps(GOOD), "application/json") == [GOOD]
    assert parse_body(orjson.dumps([GOOD, GOOD]), None) == [GOOD, GOOD]
    nd = orjson.dumps(GOOD) + b"\n\n" + orjson.dumps(GOOD) + b"\n"
    assert parse_body(nd, "application/x-ndjson; charset=utf-8") == [GOOD, GOOD]


@pytest.mark.parametrize(
    ("body", "ctype", "needle"),
    [
        (b"{nope", "application/json", "not valid JSON"),
        (b"42", "application/json", "got int"),
        (b'{"a": 1}\n{bad', "application/x-ndjson", "line 2"),
    ],
)
def test_bad_bodies_say_where(body: bytes, ctype: str, needle: str) -> None:
    with pytest.raises(BodyError, match=needle):
        parse_body(body, ctype)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"bytes": "ten"}, "bytes"),
        ({"bytes": True}, "bytes"),
        ({"url": 5}, "url"),
        ({"event_time": "yesterday"}, "event_time"),
        ({"event_time": "2025-01-01T00:00:00"}, "event_time"),
        ({"user_id": None}, "user_id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_reasons_name_the_field(patch: dict, field: str) -> None:
    bad = {**GOOD, **patch}
    checked = check(PAGE_VIEWS, [GOOD, bad, GOOD])
    assert len(checked.events) == 2
    assert len(checked.rejected) == 1
    assert checked.rejected[0]["index"] == 1
    assert field in checked.rejected[0]["reason"]


def test_missing_field_is_named() -> None:
    bad = {k: v for k, v in GOOD.items() if k != "url"}
    checked = check(PAGE_VIEWS, [bad])
    assert checked.rejected == [{"index": 0, "reason": "field 'url' is required"}]


def test_file_lines_are_numbered(tmp_path: Path) -> None:
    import orjson

    path = tmp_path / "e.ndjson"
    path.write_bytes(
        orjson.dumps(GOOD) + b"\n" + b"{oops\n" + b"\n" + orjson.dumps({**GOOD, "bytes": "x"})
    )
    rows = list(read_events(path, PAGE_VIEWS))
    assert [(n, e is None) for n, e, _ in rows] == [(1, False), (2, True), (4, True)]
    assert "bytes" in rows[2][2]


TYPED = Stream(
    name="typed",
    fields=(
        Field("event_id", "string"),
        Field("price", "float"),
        Field("ok", "bool", required=False),
        Field("event_time", "timestamp"),
    ),
)
TYPED_EVENT = jsonschema_rs.validator_for(event_json_schema(TYPED))


@pytest.mark.parametrize(
    ("price", "ok", "valid", "stored"),
    [
        (b"1.5", b"true", True, 1.5),
        (b"2", b"false", True, 2.0),  # an integer for a float field becomes a float
        (b"2.0", b"null", True, 2.0),
        (b"1e300", b"true", True, 1e300),
        (b"9007199254740993", b"true", True, 9007199254740992.0),  # nearest double
        (b"123456789012345678901234567890", b"true", True, 1.2345678901234568e29),
        (b"1.7976931348623157e308", b"true", True, 1.7976931348623157e308),
        (b'"1.5"', b"true", False, None),
        (b"true", b"true", False, None),
        (b"1.5", b"1", False, None),
        (b"1.5", b'"true"', False, None),
    ],
)
def test_float_and_bool_what_the_schema_admits_the_edge_accepts(
    price: bytes, ok: bytes, valid: bool, stored: float | None
) -> None:
    body = (
        b'{"event_id": "t", "price": ' + price + b', "ok": ' + ok
        + b', "event_time": "2026-01-01T00:00:00Z"}'
    )  # fmt: skip
    assert TYPED_EVENT.is_valid(orjson.loads(body)) is valid
    checked = check(TYPED, parse_body(body, "application/json"))
    assert (not checked.rejected) is valid, checked.rejected
    if valid:
        assert type(checked.events[0]["price"]) is float
        assert checked.events[0]["price"] == stored
    else:
        reason = checked.rejected[0]["reason"]
        assert "'price'" in reason or "'ok'" in reason


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_non_finite_numbers_never_pass_the_edge(literal: bytes) -> None:
    body = b'{"event_id": "t", "price": ' + literal + b', "event_time": "2026-01-01T00:00:00Z"}'
    with pytest.raises(BodyError, match="not valid JSON"):
        parse_body(body, "application/json")  # JSON has no such number; orjson refuses it


EPOCHS = Stream(
    name="epochs",
    fields=(
        Field("s", "timestamp", time_format="epoch_s"),
        Field("ms", "timestamp", time_format="epoch_ms", required=False),
    ),
    id_field="s",
    time_field="s",
)
EPOCH_EVENT = jsonschema_rs.validator_for(event_json_schema(EPOCHS))


@pytest.mark.parametrize(
    ("s", "ms", "valid"),
    [
        (b"1700000000", b"1700000000000", True),
        (b"1700000000.5", b"null", True),
        (b"1.7e9", b"1.7e12", True),  # whole numbers written with an exponent
        (b'"2026-01-01T00:00:00Z"', b'"2026-01-01T00:00:00Z"', True),
        (b"-2208988800", b"-2208988800000", True),
        (b"-2208988800.5", b"0", False),
        (b"221845392000", b"0", False),
        (b"0", b"221845392000000", False),
        (b"0", b"0.5", False),
        (b"true", b"0", False),
        (b'"1700000000"', b"0", False),
    ],
)
def test_epoch_what_the_schema_admits_the_edge_accepts(s: bytes, ms: bytes, valid: bool) -> None:
    body = b'{"s": ' + s + b', "ms": ' + ms + b"}"
    assert EPOCH_EVENT.is_valid(orjson.loads(body)) is valid
    checked = check(EPOCHS, parse_body(body, "application/json"))
    assert (not checked.rejected) is valid, checked.rejected
