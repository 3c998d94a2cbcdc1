"""Validation at the edge: the first place where bad input becomes a clear reason.

Parses a request body (one JSON object, a JSON array, or NDJSON) into candidate events
and validates each against the stream schema. Pure logic, no I/O: the HTTP router and
the file loader both use it, and unit tests run it on plain bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from lambdalab.errors import IngestRejected
from lambdalab.schema import Stream

NDJSON = "application/x-ndjson"


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
        doc = orjson.loads(body)
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
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            msg = f"line {number} is not valid JSON: {exc}"
            raise BodyError(msg) from exc
    return items


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
