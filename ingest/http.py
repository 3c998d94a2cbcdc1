"""``POST /streams/{stream}/events`` and ``POST /events``: the HTTP producers of the log.

``POST /events`` takes events of the stream named by the ``default_stream`` setting;
``POST /streams/{stream}/events`` those of any declared stream. Each accepts one JSON event,
a JSON array, or NDJSON (``Content-Type: application/x-ndjson``). The serving layer
mounts this router behind a write-scoped API key. It answers 200 only after the broker
has acknowledged every event (acks=all, idempotent producer).

Policy for a batch with invalid items: **all or nothing**. If any item is invalid the
whole request is rejected with 422 and ``errors: [{"index": i, "reason": ...}]``; nothing
is sent, so nothing is half-accepted and the client simply retries the fixed batch.
Other answers: 400 unparseable body (with the parse error), 401/403 API key, 413 body
over ``api.max_body_bytes`` or more than ``api.max_events_per_request`` events (the
message names the limit), 503 when Kafka does not acknowledge.

The OpenAPI document describes each body as derived from its stream's declaration
(:func:`document`, called by the serving app when it builds its document): ``POST /events``
with the default stream's event, and one ``POST /streams/<name>/events`` path per declared
stream, since OpenAPI cannot tie a body's schema to the value of a path parameter.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ingest.producer import EventProducer
from ingest.validation import NDJSON, check, event_json_schema, parse_body
from lambdalab.errors import IngestRejected, ServiceUnavailable
from lambdalab.schema import STREAMS, default_stream
from lambdalab.settings import Settings

STREAM_PATH = "/streams/{stream}/events"


class Offset(BaseModel):
    """Where one accepted event was written in its stream's topic."""

    partition: int
    offset: int


class Accepted(BaseModel):
    """Every event of the request is in the log (the broker acknowledged each one)."""

    accepted: int = Field(description="number of events written")
    offsets: list[Offset] = Field(description="one per event, in the order sent")


class Refused(BaseModel):
    """Nothing was written; ``detail`` says why (the parse error, the limit, the broker)."""

    detail: str


class ItemReason(BaseModel):
    """One invalid item of the request: its 0-based index and what is wrong with it."""

    index: int
    reason: str


class Invalid(BaseModel):
    """Some events are invalid: nothing was written; each invalid item with its reason."""

    detail: str
    errors: list[ItemReason]


RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": Refused, "description": "the body is not JSON or NDJSON (says where)"},
    413: {
        "model": Refused,
        "description": "body over api.max_body_bytes, or more than api.max_events_per_request "
        "events (names the limit)",
    },
    422: {"model": Invalid, "description": "invalid events: nothing was sent (all or nothing)"},
    503: {
        "model": Refused,
        "description": "Kafka did not acknowledge: treat the batch as not accepted",
    },
}

router = APIRouter(tags=["ingest"], responses=RESPONSES)


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        _too_large(f"body of {declared} bytes exceeds the limit api.max_body_bytes={limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            _too_large(f"body exceeds the limit api.max_body_bytes={limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(detail: str) -> None:
    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=detail)


@router.post(
    "/events",
    response_model=Accepted,
    summary="Append events of the default stream (all or nothing)",
)
async def post_events(request: Request) -> Any:
    """Validate a batch of events and append it to Kafka; answer after the broker acks."""
    producer: EventProducer | None = request.app.state.ingest
    if producer is None:
        name = request.app.state.settings.default_stream or "(the project's first)"
        msg = f"the producer of the default stream {name} is not running (see the API's log)"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=msg)
    return await _ingest(request, producer)


@router.post(
    STREAM_PATH,
    response_model=Accepted,
    responses={404: {"model": Refused, "description": "no stream of that name is declared"}},
    summary="Append events of a declared stream (all or nothing)",
)
async def post_stream_events(stream: str, request: Request) -> Any:
    """Like ``POST /events``, for any stream declared in ``lambdalab.schema.STREAMS``."""
    declared = STREAMS.get(stream)
    if declared is None:
        known = ", ".join(sorted(STREAMS))
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"unknown stream {stream!r}; declared: {known}"
        )
    default: EventProducer | None = getattr(request.app.state, "ingest", None)
    if default is not None and default.stream.name == stream:
        return await _ingest(request, default)
    producers: dict[str, EventProducer] = getattr(request.app.state, "stream_producers", {})
    request.app.state.stream_producers = producers  # closed by the app on shutdown
    if stream not in producers:
        producers[stream] = EventProducer(request.app.state.settings, declared)
    return await _ingest(request, producers[stream])


async def _ingest(request: Request, producer: EventProducer) -> Any:
    settings: Settings = request.app.state.settings
    body = await _read_limited(request, settings.api.max_body_bytes)
    try:
        items = parse_body(body, request.headers.get("content-type"))
    except IngestRejected as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from exc
    limit = settings.api.max_events_per_request
    if len(items) > limit:
        _too_large(f"{len(items)} events exceed the limit api.max_events_per_request={limit}")
    checked = check(producer.stream, items)
    if checked.rejected:
        detail = (
            f"{len(checked.rejected)} of {len(items)} events are invalid; "
            "nothing was sent, fix them and resend the whole batch"
        )
        return JSONResponse(
            {"detail": detail, "errors": checked.rejected},
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    try:
        metas = await run_in_threadpool(producer.send_many, checked.events)
    except ServiceUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from exc
    offsets = [{"partition": m.partition, "offset": m.offset} for m in metas]
    return {"accepted": len(metas), "offsets": offsets}


def request_body(event: dict[str, Any], max_events: int) -> dict[str, Any]:
    """The OpenAPI request body of one stream: JSON (an event or an array) or NDJSON.

    Args:
        event: the JSON Schema of one event (or a ``$ref`` to it).
        max_events: ``api.max_events_per_request``, the longest array.
    """
    many = {"type": "array", "items": event, "maxItems": max_events}
    return {
        "required": True,
        "description": "events validated all or nothing",
        "content": {
            "application/json": {"schema": {"oneOf": [event, many]}},
            NDJSON: {"schema": {**many, "description": "one event per line"}},
        },
    }


def document(openapi: dict[str, Any], settings: Settings) -> None:
    """Write the ingest request bodies, derived from the streams, into ``openapi``.

    Each declared stream's event schema becomes the component ``<stream>_event``.
    ``POST /events`` takes events of ``settings.default_stream``; ``POST {STREAM_PATH}``
    is replaced by one path per stream declared now, each with its stream's body.
    """
    paths: dict[str, Any] = openapi["paths"]
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    bodies = {}
    for name, stream in sorted(STREAMS.items()):
        components[f"{name}_event"] = event_json_schema(stream)
        ref = {"$ref": f"#/components/schemas/{name}_event"}
        bodies[name] = request_body(ref, settings.api.max_events_per_request)
    default = default_stream(settings.default_stream).name if STREAMS else None
    if "/events" in paths and default in bodies:
        paths["/events"]["post"]["requestBody"] = bodies[default]
    template = paths.pop(STREAM_PATH, {}).get("post")
    if template is None:
        return
    for name, body in bodies.items():
        operation = copy.deepcopy(template)
        operation["operationId"] = f"post_{name}_events"
        operation["parameters"] = [p for p in operation["parameters"] if p["name"] != "stream"]
        if not operation["parameters"]:
            del operation["parameters"]
        del operation["responses"]["404"]  # a declared stream's own path
        operation["requestBody"] = body
        paths[STREAM_PATH.replace("{stream}", name)] = {"post": operation}
