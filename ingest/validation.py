"""Validation at the edge: the first place where bad input becomes a clear reason.

Parses a request body (one JSON object, a JSON array, or NDJSON) into candidate events
and validates each against the stream schema. Pure logic, no I/O: the HTTP router and
the file loader both use it, and unit tests run it on plain bytes. Numbers are read as
JSON Schema reads them (:func:`loads`): ``560.0`` is the integer 560.

:func:`event_json_schema` derives the JSON Schema of one event from the stream's
declaration: what the OpenAPI document tells clients, and what schemathesis generates
from. Every event it admits is one :meth:`Stream.validate` accepts (its timestamps are
the RFC 3339 subset of the ISO-8601 texts the kernel reads; ``tests/unit`` checks this
with generated texts).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from lambdalab.errors import DefinitionError, IngestRejected
from lambdalab.schema import EPOCH, MAX_STRING, TS_MAX, TS_MIN, Field, Stream, format_ts

NDJSON = "application/x-ndjson"
INT64 = (-(2**63), 2**63 - 1)  # the kernel's range of an "int" field, both ends included


class BodyError(IngestRejected):
    """The body is not parseable JSON / NDJSON; the message says where."""


@dataclass
class Checked:
    """Validation of a batch: the normalised events, and the reason of each rejected item."""

    events: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


def parse_body(body: bytes, content_type: str | None) -> list[Any]:
    """Candidate events of a body: NDJSON by content type, else one object or an array."""
    if content_type and content_type.split(";")[0].strip().lower() == NDJSON:
        return parse_ndjson(body)
    try:
        doc = loads(body)
    except orjson.JSONDecodeError as exc:
        msg = f"body is not valid JSON: {exc}"
        raise BodyError(msg) from exc
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        return [doc]
    msg = f"body must be an event object or an array of events, got {type(doc).__name__}"
    raise BodyError(msg)


def parse_ndjson(body: bytes) -> list[Any]:
    """One JSON value per non-empty line; a bad line is reported with its 1-based number."""
    items: list[Any] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(loads(line))
        except orjson.JSONDecodeError as exc:
            msg = f"line {number} is not valid JSON: {exc}"
            raise BodyError(msg) from exc
    return items


def loads(raw: bytes) -> Any:
    """One JSON document, its numbers read as JSON Schema reads them.

    A number written with a fraction or an exponent that is a whole number in the 64-bit
    range (``560.0``, ``5.6e2``, ``-0.0``) is that integer: JSON Schema calls it an
    integer, so the documented event schema admits it where an int is declared. orjson
    reads such numbers (and ints past 64 bits) as floats, inexactly, so a document with
    a float among its events' values is read again, exactly, by the standard library.

    Raises:
        orjson.JSONDecodeError: ``raw`` is not JSON.
    """
    doc = orjson.loads(raw)
    events = doc if isinstance(doc, list) else [doc]
    if not any(isinstance(v, float) for e in events if isinstance(e, dict) for v in e.values()):
        return doc
    try:
        return json.loads(raw, parse_float=_whole_or_float)
    except (ValueError, RecursionError):  # an int past the digit limit, deeper than json goes
        return doc


def _whole_or_float(text: str) -> int | float:
    exact = Decimal(text)
    if INT64[0] <= exact <= INT64[1] and exact == exact.to_integral_value():
        return int(exact)
    return float(text)


def check(stream: Stream, items: list[Any]) -> Checked:
    """Validate every item; ``rejected`` holds ``{"index", "reason"}`` per bad item."""
    out = Checked()
    for index, item in enumerate(items):
        event, reason = stream.validate(item)
        if event is None:
            out.rejected.append({"index": index, "reason": reason})
        else:
            out.events.append(event)
    return out


def event_json_schema(stream: Stream) -> dict[str, Any]:
    """The JSON Schema (2020-12, as OpenAPI 3.1 uses) of one event of ``stream``.

    Required fields are listed in ``required``; an optional field may also be ``null``;
    undeclared fields are refused (``additionalProperties: false``), as the kernel does.
    """
    return {
        "title": f"{stream.name} event",
        "type": "object",
        "properties": {f.name: _field_schema(f) for f in stream.fields},
        "required": [f.name for f in stream.fields if f.required],
        "additionalProperties": False,
    }


def _field_schema(f: Field) -> dict[str, Any]:
    if f.type == "timestamp" and f.time_format != "iso":
        schema: dict[str, Any] = {
            "anyOf": [_EPOCH_SCHEMAS[f.time_format], _TYPE_SCHEMAS["timestamp"]]
        }
        if not f.required:
            schema["anyOf"].append({"type": "null"})
        return schema
    schema = dict(_TYPE_SCHEMAS[f.type])
    if not f.required:
        schema["type"] = [schema["type"], "null"]
    return schema


def _two_digits(lo: int, hi: int) -> str:
    """A regex of the zero-padded numbers ``lo..hi`` (both below 100; ASCII digits only)."""
    parts = []
    for tens in range(lo // 10, hi // 10 + 1):
        first, last = max(lo, tens * 10) % 10, min(hi, tens * 10 + 9) % 10
        parts.append(f"{tens}{first}" if first == last else f"{tens}[{first}-{last}]")
    return f"(?:{'|'.join(parts)})"


def _month_days(first: tuple[int, int] = (1, 1), last: tuple[int, int] = (12, 31)) -> str:
    """``MM-DD`` of a year without February 29, from day ``first`` to ``last`` (month, day)."""
    lengths = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    months_of: dict[str, list[str]] = {}  # days regex -> the months that have those days
    for month in range(first[0], last[0] + 1):
        lo = first[1] if month == first[0] else 1
        hi = last[1] if month == last[0] else lengths[month - 1]
        months_of.setdefault(_two_digits(lo, hi), []).append(f"{month:02d}")
    return "|".join(f"(?:{'|'.join(ms)})-{days}" for days, ms in months_of.items())


def _timestamp_pattern() -> str:
    """RFC 3339 date-times with an offset, every one of them in [TS_MIN, TS_MAX) in UTC.

    Calendar-exact (month lengths, leap years). The first and last day of the range are
    written with an offset on the side that keeps them in range (UTC or west of it on
    1900-01-01, UTC or east of it on 8999-12-31); every other day takes any offset.
    """
    written_for = (datetime(1900, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))
    if written_for != (TS_MIN, TS_MAX):
        msg = f"the timestamp pattern is written for [1900, 9000), not [{TS_MIN}, {TS_MAX})"
        raise DefinitionError(msg)
    digit = "[0-9]"
    years = f"(?:190[1-9]|19[1-9]{digit}|[2-7]{digit}{{3}}|8[0-8]{digit}{{2}}|899[0-8])"
    leap = "(?:(?:19|[2-8][0-9])(?:0[48]|[2468][048]|[13579][26])|(?:[2468][048]|[357][26])00)"
    dates = (
        f"{years}-(?:{_month_days()})|{leap}-02-29"
        f"|1900-(?:{_month_days(first=(1, 2))})|8999-(?:{_month_days(last=(12, 30))})"
    )
    time = f"T(?:[01]{digit}|2[0-3]):[0-5]{digit}:[0-5]{digit}(?:\\.{digit}{{1,9}})?"
    offset = f"(?:[01]{digit}|2[0-3]):[0-5]{digit}"
    return (
        f"^(?:(?:{dates}){time}(?:Z|[+-]{offset})"
        f"|1900-01-01{time}(?:Z|[+]00:00|-{offset})"
        f"|8999-12-31{time}(?:Z|-00:00|[+]{offset}))$"
    )


TIMESTAMP_PATTERN = _timestamp_pattern()
_TYPE_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string", "maxLength": MAX_STRING},
    "int": {"type": "integer", "minimum": INT64[0], "maximum": INT64[1]},
    "float": {
        "type": "number",
        "minimum": -sys.float_info.max,
        "maximum": sys.float_info.max,
        "description": "a finite 64-bit float; an integer is read as the nearest float",
    },
    "bool": {"type": "boolean"},
    "timestamp": {
        "type": "string",
        "format": "date-time",
        "pattern": TIMESTAMP_PATTERN,
        "description": (
            f"RFC 3339 with an offset, in [{format_ts(TS_MIN)}, {format_ts(TS_MAX)}) once "
            "converted to UTC; stored as UTC with milliseconds"
        ),
    },
}
_RANGE = f"[{format_ts(TS_MIN)}, {format_ts(TS_MAX)})"
_EPOCH_SCHEMAS: dict[str, dict[str, Any]] = {
    "epoch_s": {
        "type": "number",
        "minimum": (TS_MIN - EPOCH).total_seconds(),
        "exclusiveMaximum": (TS_MAX - EPOCH).total_seconds(),
        "description": (
            f"seconds since 1970-01-01T00:00:00Z, in {_RANGE}; a fraction is kept to the "
            "millisecond (floored); stored as UTC with milliseconds"
        ),
    },
    "epoch_ms": {
        "type": "integer",
        "minimum": (TS_MIN - EPOCH) // timedelta(milliseconds=1),
        "exclusiveMaximum": (TS_MAX - EPOCH) // timedelta(milliseconds=1),
        "description": f"milliseconds since 1970-01-01T00:00:00Z, in {_RANGE}",
    },
}
