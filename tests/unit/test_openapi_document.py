"""The OpenAPI document, walked without services: bodies, statuses, and what they admit.

Every operation documents its request body (the ingest bodies derived from the stream
declarations) and one response per status its handlers can answer, each error with the
JSON ``{"detail": ...}`` shape the handlers send. The event schema admits only events the
kernel accepts. tests/integration/test_openapi.py then runs schemathesis against it.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

import jsonschema_rs
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.validation import TIMESTAMP_PATTERN, check, event_json_schema, loads, parse_body
from lambdalab.schema import PAGE_VIEWS, STREAMS, TS_MAX, Field, Stream, default_stream, format_ts
from lambdalab.settings import Settings
from serving.app import create_app
from tests.events import pageview
from views.definition import Measure, ViewDef
from views.registry import all_views

AUTH = {401, 403}
SECURED = {200, *AUTH, 500}  # every operation may answer 500, as JSON
INGEST = {200, 400, *AUTH, 413, 422, 500, 503}
# Each operation and every status its handlers (and dependencies) can answer.
STATUSES = {
    ("get", "/views"): SECURED,
    ("get", "/views/{view}"): {*SECURED, 404, 422, 503},  # unknown view, bad range, backend down
    ("get", "/views/{view}/lineage"): {*SECURED, 404, 503},
    # one path per view (its own key fields): bad parameters or cursor, backend down
    **{
        ("get", f"/views/{name}/{op}"): {*SECURED, 422, 503}
        for name in all_views()
        for op in ("rows", "keys")
    },
    ("post", "/sql"): {*SECURED, 400, 422, 503, 504},  # refused, bad body, Trino down, timeout
    ("post", "/sql/merged"): {*SECURED, 400, 422, 503, 504},  # refused, body, a part down, timeout
    ("get", "/pipeline"): SECURED,  # a backend down is an `error` in the snapshot, not a 503
    ("get", "/pipeline/history"): SECURED,  # samples kept in memory: nothing to be down
    ("get", "/health"): {200, 500},
    ("get", "/metrics"): {200, 500},
    ("get", "/dashboard"): {200, 500},
    ("post", "/events"): INGEST,
    **{("post", f"/streams/{name}/events"): INGEST for name in STREAMS},
}


MAX_EVENTS = 7


@pytest.fixture
def document(settings: Settings) -> dict[str, Any]:
    api = settings.api.model_copy(update={"max_events_per_request": MAX_EVENTS})
    return create_app(settings.model_copy(update={"api": api})).openapi()


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    return document["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def test_every_operation_documents_each_status_it_answers(document: dict[str, Any]) -> None:
    found = {op: {int(s) for s in o["responses"]} for op, o in _operations(document).items()}
    assert found == STATUSES


def test_every_error_is_documented_as_the_json_the_handlers_send(
    document: dict[str, Any],
) -> None:
    for (method, path), operation in _operations(document).items():
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            schema = _resolve(document, response["content"]["application/json"]["schema"])
            assert "detail" in schema["required"], (method, path, status)
            assert schema["properties"]["detail"]["type"] == "string"
    assert "HTTPValidationError" not in orjson.dumps(document).decode()  # not what we send


def test_a_secured_operation_documents_401_and_403(document: dict[str, Any]) -> None:
    for op, operation in _operations(document).items():
        secured = bool(operation.get("security"))
        assert secured == ({int(s) for s in operation["responses"]} >= AUTH), op


def test_every_body_is_documented_and_only_writes_take_one(document: dict[str, Any]) -> None:
    for (method, path), operation in _operations(document).items():
        body = operation.get("requestBody")
        assert (body is not None) == (method == "post"), (method, path)
        if body is not None:
            assert body["required"] is True
            assert all("schema" in media for media in body["content"].values()), path


def test_ingest_bodies_are_derived_from_the_stream_declarations(
    document: dict[str, Any], settings: Settings
) -> None:
    assert "/streams/{stream}/events" not in document["paths"]  # one path per stream instead
    routes = {"/events": default_stream(settings.default_stream)}
    routes |= {f"/streams/{name}/events": stream for name, stream in STREAMS.items()}
    for path, stream in routes.items():
        content = document["paths"][path]["post"]["requestBody"]["content"]
        one, many = content["application/json"]["schema"]["oneOf"]
        assert _resolve(document, one) == event_json_schema(stream)
        assert many == {"type": "array", "items": one, "maxItems": MAX_EVENTS}
        lines = content["application/x-ndjson"]["schema"]
        assert (lines["items"], lines["maxItems"]) == (one, MAX_EVENTS)


CLICKS = Stream(
    "clicks",
    (Field("id", "string"), Field("n", "int", required=False), Field("at", "timestamp")),
    id_field="id",
    time_field="at",
)


def test_a_declared_stream_gets_its_own_path_and_body(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(STREAMS, "clicks", CLICKS)
    document = create_app(settings).openapi()
    body = document["paths"]["/streams/clicks/events"]["post"]["requestBody"]
    one, _ = body["content"]["application/json"]["schema"]["oneOf"]
    assert _resolve(document, one) == event_json_schema(CLICKS)


def test_a_view_parameter_names_the_registered_views(document: dict[str, Any]) -> None:
    for path in ("/views/{view}", "/views/{view}/lineage"):
        (view,) = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "view"]
        assert view["schema"]["enum"] == list(all_views())


def test_a_query_ends_at_the_latest_at_the_end_of_the_last_bucket(
    document: dict[str, Any],
) -> None:
    params = {
        p["name"]: p["schema"] for p in document["paths"]["/views/{view}"]["get"]["parameters"]
    }
    last_end = format_ts(TS_MAX)  # where the bucket of the latest accepted event ends
    assert not re.fullmatch(params["from"]["pattern"], last_end)
    assert re.fullmatch(params["to"]["pattern"], last_end)
    assert not re.fullmatch(params["to"]["pattern"], "9000-01-01T00:00:00.001Z")
    assert params["from"]["pattern"] == TIMESTAMP_PATTERN


def test_the_event_schema_follows_the_declaration() -> None:
    schema = event_json_schema(CLICKS)
    assert schema["required"] == ["id", "at"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["n"]["type"] == ["integer", "null"]
    assert schema["properties"]["n"]["maximum"] == 2**63 - 1
    assert schema["properties"]["at"]["pattern"] == TIMESTAMP_PATTERN


EVENT = jsonschema_rs.validator_for(event_json_schema(PAGE_VIEWS))


@pytest.mark.parametrize(
    ("patch", "valid"),
    [
        ({}, True),
        ({"referrer": None}, True),
        ({"referrer": "https://r"}, True),
        ({"bytes": 560.0}, True),  # JSON Schema: an integer; the edge reads it as 560
        ({"bytes": 2**63}, False),
        ({"bytes": True}, False),
        ({"url": "x" * 2049}, False),
        ({"colour": "red"}, False),
        ({"user_id": None}, False),
        ({"event_time": "2026-01-01T00:00:00"}, False),
        ({"event_time": "1899-12-31T23:59:59.999Z"}, False),
    ],
)
def test_what_the_schema_admits_the_edge_accepts(patch: dict[str, Any], valid: bool) -> None:
    event = pageview(**patch)
    assert EVENT.is_valid(event) is valid
    body = json.dumps(event).encode()  # json writes 560.0 as it is (and ints past 64 bits)
    checked = check(PAGE_VIEWS, parse_body(body, "application/json"))
    assert (not checked.rejected) is valid, checked.rejected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"560.0", 560),
        (b"5.6e2", 560),
        (b"-0.0", 0),
        (b"9007199254740993.0", 9007199254740993),  # past 2**53: a float would round it
        (b"9223372036854775807.0", 2**63 - 1),
        (b"9223372036854775808.0", float(2**63)),  # past 64 bits: stays a float, refused
        (b"1.0000000000000000000001", 1.0),  # not whole: a float, refused for an int
        (b"18446744073709551616", 2**64),  # an int past 64 bits stays exact (orjson: float)
    ],
)
def test_numbers_are_read_as_json_schema_reads_them(text: bytes, value: Any) -> None:
    got = loads(b'{"bytes": ' + text + b"}")["bytes"]
    assert (got, type(got)) == (value, type(value))


TIMES = re.compile(TIMESTAMP_PATTERN)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(TIMESTAMP_PATTERN, fullmatch=True))
def test_every_documented_time_is_one_the_kernel_accepts(text: str) -> None:
    event, reason = PAGE_VIEWS.validate(pageview(event_time=text))
    assert event is not None, reason


@pytest.mark.parametrize("year", [1900, 1904, 2000, 2023, 2024, 2100, 8800, 8999])
def test_the_documented_dates_are_the_calendars(year: int) -> None:
    for month in range(1, 13):
        for day in range(1, 32):
            text = f"{year:04d}-{month:02d}-{day:02d}T12:00:00Z"
            try:
                date(year, month, day)
            except ValueError:
                assert not TIMES.fullmatch(text), text
            else:
                assert TIMES.fullmatch(text), text


@pytest.mark.parametrize(
    ("text", "documented"),
    [
        ("1900-01-01T00:00:00Z", True),
        ("1900-01-01T00:00:00-05:00", True),  # 05:00 UTC
        ("1900-01-01T05:00:00+01:00", False),  # in range, but east of UTC on the first day
        ("1900-01-01T00:30:00+01:00", False),  # 1899-12-31T23:30Z
        ("1900-01-02T00:00:00+23:59", True),
        ("8999-12-31T23:59:59.999999999Z", True),
        ("8999-12-31T23:00:00+01:00", True),
        ("8999-12-31T23:00:00-01:00", False),  # 9000-01-01T00:00Z
        ("9000-01-01T00:00:00Z", False),
        ("2026-01-01T00:00:00.123Z", True),
        ("2026-01-01T00:00:00.Z", False),
        ("2026-01-01 00:00:00Z", False),  # the kernel reads it; the document says RFC 3339
        ("2026-01-01T24:00:00Z", False),
        ("2026-01-01T00:00:00+24:00", False),
        ("2026-01-01t00:00:00z", False),
        ("\uff12\uff10\uff12\uff16-01-01T00:00:00Z", False),  # fullwidth digits: not ASCII
    ],
)
def test_the_range_edges_of_the_documented_times(text: str, documented: bool) -> None:
    assert bool(TIMES.fullmatch(text)) is documented
    if documented:
        event, reason = PAGE_VIEWS.validate(pageview(event_time=text))
        assert event is not None, reason


def test_each_view_has_its_own_rows_and_keys_paths_with_its_own_parameters(
    document: dict[str, Any],
) -> None:
    assert "/views/{view}/rows" not in document["paths"]
    assert "/views/{view}/keys" not in document["paths"]
    for name, view in all_views().items():
        rows = {p["name"]: p for p in document["paths"][f"/views/{name}/rows"]["get"]["parameters"]}
        keys = {p["name"]: p for p in document["paths"][f"/views/{name}/keys"]["get"]["parameters"]}
        for field in view.keys:
            for params in (rows, keys):
                assert params[field]["schema"] == {"type": "array", "items": {"type": "string"}}
                assert params[f"{field}.prefix"]["explode"] is True
        assert rows["group_by"]["schema"]["items"]["enum"] == list(view.keys)
        measures = [m.name for m in view.measures] + ["bucket"]
        assert rows["order_by"]["schema"]["items"]["enum"] == [
            *measures,
            *(f"-{m}" for m in measures),
        ]
        assert "view" not in rows and "prefix" in keys


@pytest.mark.parametrize(
    ("bucket_s", "admitted", "refused"),
    [
        (3600, ["all", "1h", "6h", "1d", "2w"], ["30m", "3600s", "0h", "1", "", "1H", "1d "]),
        (86400, ["all", "1d", "7d", "1w"], ["24h", "1h"]),
        (60, ["5m", "1h", "1d"], ["30s", "90s"]),
        (5400, ["all", "1d", "1w"], ["90m", "3h"]),
        (7, ["all", "1w"], ["7s", "1d"]),
    ],
)
def test_rollup_admits_exactly_the_multiples_of_the_bucket_it_documents(
    bucket_s: int, admitted: list[str], refused: list[str]
) -> None:
    from serving.routes.rows import rollup_ms, rollup_pattern

    view = ViewDef("v", "pageviews", ("url",), bucket_s, (Measure("n", "count"),))
    pattern = re.compile(rollup_pattern(view))
    for text in admitted:
        assert pattern.fullmatch(text), text
        width = rollup_ms(view, text)
        assert width is None or width % (bucket_s * 1000) == 0, text
    for text in refused:
        assert not pattern.fullmatch(text), text
