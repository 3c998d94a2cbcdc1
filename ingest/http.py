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
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ingest.producer import EventProducer
from ingest.validation import check, parse_body
from lambdalab.errors import IngestRejected, ServiceUnavailable
from lambdalab.schema import STREAMS
from lambdalab.settings import Settings

router = APIRouter(tags=["ingest"])


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


@router.post("/events", summary="Append events of the default stream (all or nothing)")
async def post_events(request: Request) -> Any:
    """Validate a batch of events and append it to Kafka; answer after the broker acks."""
    return await _ingest(request, request.app.state.ingest)


@router.post("/streams/{stream}/events", summary="Append events of a declared stream")
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
