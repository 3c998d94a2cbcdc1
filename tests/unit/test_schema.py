"""The event schema: one declaration, validation with reasons naming the field."""

from __future__ import annotations

import orjson
import pytest

from lambdalab.schema import PAGE_VIEWS, parse_ts_ms
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
