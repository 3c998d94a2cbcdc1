"""Views as resources: the catalog, merged answers per key, and each version's lineage."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from ingest.validation import TIMESTAMP_PATTERN
from lambdalab.errors import NotFound
from lambdalab.schema import TS_MAX, TS_MIN, format_ts
from serving.deps import BatchDep, BatchSource, ReadKey, SpeedDep
from serving.merge import iso_ms
from serving.models import AUTH_ERRORS, Lineage, MergedAnswer, ViewSummary, errors
from serving.pipeline import batch_status, now_ms
from serving.query import merged_query
from views.definition import ViewDef
from views.registry import all_views, get_view

router = APIRouter(prefix="/views", tags=["views"], responses=AUTH_ERRORS)
MAX_BUCKETS = 10_000
DEFAULT_BUCKETS = 24
UNPROCESSABLE = 422
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RANGE = f"[{format_ts(TS_MIN)}, {format_ts(TS_MAX)})"
# `from` is an event time the platform accepts; `to`, exclusive, may also be TS_MAX itself:
# the end of the last bucket an event can fall in
END_PATTERN = (
    f"^(?:{TIMESTAMP_PATTERN[1:-1]}|{format_ts(TS_MAX)[:19]}(?:\\.0{{1,9}})?(?:Z|[+-]00:00))$"
)
BOUNDS = {"from": re.compile(TIMESTAMP_PATTERN), "to": re.compile(END_PATTERN)}
START = {
    "format": "date-time",
    "pattern": TIMESTAMP_PATTERN,
    "description": f"first bucket: RFC 3339 with a timezone, in {RANGE} in UTC",
}
END = {
    "format": "date-time",
    "pattern": END_PATTERN,
    "description": f"exclusive end: RFC 3339 with a timezone, in {RANGE[:-1]}] in UTC",
}


def known_view(name: str) -> ViewDef:
    """The registered view ``name``, or 404 naming the known ones."""
    try:
        return get_view(name)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc


def moment_ms(name: str, text: str) -> int:
    """Milliseconds since the epoch of the query bound ``name`` (its documented form)."""
    if not BOUNDS[name].fullmatch(text):
        within = RANGE if name == "from" else f"{RANGE[:-1]}]"
        msg = (
            f"'{name}' must be an RFC 3339 date-time with a timezone, in {within} in UTC, "
            f"e.g. 2026-01-01T00:00:00Z (got {text[:40]!r})"
        )
        raise HTTPException(UNPROCESSABLE, detail=msg)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment - EPOCH) // timedelta(milliseconds=1)


def bucket_span(view: ViewDef, start: str | None, end: str | None) -> tuple[int, int]:
    """[from, to) in ms: ``from`` aligned down to its bucket; defaults to the last 24 buckets."""
    width = view.bucket_s * 1000
    to_ms = moment_ms("to", end) if end is not None else view.bucket_of(now_ms()) + width
    from_ms = moment_ms("from", start) if start is not None else to_ms - DEFAULT_BUCKETS * width
    from_ms = view.bucket_of(from_ms)
    if to_ms <= from_ms:
        msg = f"'to' ({iso_ms(to_ms)}) must be after 'from' ({iso_ms(from_ms)})"
        raise HTTPException(UNPROCESSABLE, detail=msg)
    if (to_ms - from_ms) / width > MAX_BUCKETS:
        msg = f"range spans more than {MAX_BUCKETS} buckets of {view.bucket_s}s; narrow it"
        raise HTTPException(UNPROCESSABLE, detail=msg)
    return from_ms, to_ms


@router.get("", response_model=list[ViewSummary], summary="Every view and its batch version")
def list_views(_: ReadKey, batch: BatchDep) -> list[dict[str, Any]]:
    """Each view's definition, current batch version, its cut (ISO UTC) and age (s)."""
    current = batch_status(batch, now_ms())
    return [
        {"name": name, "definition": v.to_dict(), "fingerprint": v.fingerprint, **current[name]}
        for name, v in all_views().items()
    ]


@router.get(
    "/{view}",
    response_model=MergedAnswer,
    response_model_by_alias=True,
    responses=errors(404, 422, 503),
    summary="Merged answer: batch view @ cut ⊕ realtime since cut",
)
async def query_view(
    request: Request,
    view: str,
    _: ReadKey,
    batch: BatchDep,
    speed: SpeedDep,
    key: Annotated[str, Query(description="view key (key fields joined by \\x1f)")],
    start: Annotated[str | None, Query(alias="from", json_schema_extra=START)] = None,
    end: Annotated[str | None, Query(alias="to", json_schema_extra=END)] = None,
    sketches: Annotated[bool, Query(description="also return HLL sketches (base64)")] = False,
) -> Response:
    """Per event-time bucket in [from, to): the batch part, the realtime part, the merge.

    One batch version (and its cut) is used throughout; the realtime part covers the ingest
    windows at or after that cut. Provenance says which version, cut, Kafka offsets and
    freshness the answer reflects.

    ``from`` is aligned down to its bucket and defaults to 24 buckets before ``to``;
    ``to`` (exclusive) defaults to the end of the current bucket. ``to`` must be after
    ``from``, and [from, to) at most 10,000 buckets of the view's width: 422 otherwise.
    """
    definition = known_view(view)
    span = bucket_span(definition, start, end)
    started = time.perf_counter()
    settings = request.app.state.settings  # not a dependency: one fewer to solve per request
    args = (settings, batch, speed, definition, key, span)
    if _inline(batch, view):  # ~1 ms of CPU and one Redis round trip: no threadpool hop
        out = merged_query(*args, sketches=sketches)
    else:  # the version pointer needs HDFS, or a local copy is being built: off the loop
        out = await run_in_threadpool(merged_query, *args, sketches=sketches)
    request.app.state.telemetry.observe_query(view, time.perf_counter() - started, out)
    # Serialised here rather than validated against MergedAnswer (which still documents
    # it): the answer is built by serving.merge in that shape, and validating it again
    # costs more than the merge (tests/unit/test_serving_api.py checks the shape).
    body = {**out, "from": iso_ms(span[0]), "to": iso_ms(span[1])}
    return Response(dump_json(body), media_type="application/json")


def dump_json(body: Any) -> bytes:
    """``body`` as JSON: orjson, or the standard library for an int beyond 64 bits.

    Sums are exact Python ints and may exceed int64 (tests/integration/test_properties.py
    sends such values); orjson refuses those, ``json`` writes them exactly.
    """
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, separators=(",", ":")).encode()


def _inline(batch: BatchSource, view: str) -> bool:
    """Whether the batch source answers ``view``'s version pointer from memory."""
    fresh = getattr(batch, "fresh", None)
    return bool(fresh(view)) if callable(fresh) else False


@router.get(
    "/{view}/lineage",
    response_model=Lineage,
    responses=errors(404, 503),
    summary="Lineage of the current batch version",
)
def lineage(view: str, _: ReadKey, batch: BatchDep) -> dict[str, Any]:
    """The ``_lineage.json`` of the view's current version: cut, inputs, offsets, timings."""
    known_view(view)
    info = batch.current(view)
    if info is None:
        msg = f"view {view!r} has no published batch version yet; run a batch cycle"
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=msg)
    return {"version": info.version, "path": info.path, "lineage": info.lineage}


def document(openapi: dict[str, Any]) -> None:
    """Name the registered views in ``openapi``: ``{view}`` is one of them (404 otherwise)."""
    names = list(all_views())
    for path, item in openapi["paths"].items():
        if not path.startswith(f"{router.prefix}/{{view}}"):
            continue
        for operation in item.values():
            for parameter in operation["parameters"]:
                if (parameter["in"], parameter["name"]) == ("path", "view"):
                    parameter["schema"]["enum"] = names


__all__ = ["bucket_span", "document", "known_view", "moment_ms", "router"]
