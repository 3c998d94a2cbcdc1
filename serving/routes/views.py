"""Views as resources: the catalog, merged answers per key, and each version's lineage."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status

from lambdalab.errors import NotFound
from serving.deps import BatchDep, ReadKey, SettingsDep, SpeedDep
from serving.merge import iso_ms
from serving.models import ERRORS, MergedAnswer, ViewSummary
from serving.pipeline import batch_status, now_ms
from serving.query import merged_query
from views.definition import ViewDef
from views.registry import all_views, get_view

router = APIRouter(prefix="/views", tags=["views"], responses=ERRORS)
MAX_BUCKETS = 10_000
DEFAULT_BUCKETS = 24
UNPROCESSABLE = 422


def _view(name: str) -> ViewDef:
    try:
        return get_view(name)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc


def _ms(name: str, moment: datetime) -> int:
    if moment.tzinfo is None:
        msg = f"'{name}' must carry a timezone, e.g. 2026-01-01T00:00:00Z (got {moment})"
        raise HTTPException(UNPROCESSABLE, detail=msg)
    try:
        return int(moment.astimezone(UTC).timestamp() * 1000)
    except (OverflowError, ValueError, OSError) as exc:
        msg = f"'{name}' is out of range ({moment.isoformat()}): {exc}"
        raise HTTPException(UNPROCESSABLE, detail=msg) from exc


def bucket_span(view: ViewDef, start: datetime | None, end: datetime | None) -> tuple[int, int]:
    """[from, to) in ms: ``from`` aligned down to its bucket; defaults to the last 24 buckets."""
    width = view.bucket_s * 1000
    to_ms = _ms("to", end) if end else view.bucket_of(now_ms()) + width
    from_ms = _ms("from", start) if start else to_ms - DEFAULT_BUCKETS * width
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
    summary="Merged answer: batch view @ cut ⊕ realtime since cut",
)
def query_view(
    request: Request,
    view: str,
    _: ReadKey,
    settings: SettingsDep,
    batch: BatchDep,
    speed: SpeedDep,
    key: Annotated[str, Query(description="view key (key fields joined by \\x1f)")],
    start: Annotated[
        datetime | None, Query(alias="from", description="ISO-8601 with timezone")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="exclusive end, ISO")] = None,
    sketches: Annotated[bool, Query(description="also return HLL sketches (base64)")] = False,
) -> dict[str, Any]:
    """Per event-time bucket in [from, to): the batch part, the realtime part, the merge.

    One batch version (and its cut) is used throughout; the realtime part covers the ingest
    windows at or after that cut. Provenance says which version, cut, Kafka offsets and
    freshness the answer reflects.
    """
    definition = _view(view)
    span = bucket_span(definition, start, end)
    started = time.perf_counter()
    out = merged_query(settings, batch, speed, definition, key, span, sketches=sketches)
    request.app.state.telemetry.observe_query(view, time.perf_counter() - started, out)
    return {**out, "from": iso_ms(span[0]), "to": iso_ms(span[1])}


@router.get("/{view}/lineage", summary="Lineage of the current batch version")
def lineage(view: str, _: ReadKey, batch: BatchDep) -> dict[str, Any]:
    """The ``_lineage.json`` of the view's current version: cut, inputs, offsets, timings."""
    _view(view)
    info = batch.current(view)
    if info is None:
        msg = f"view {view!r} has no published batch version yet; run a batch cycle"
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=msg)
    return {"version": info.version, "path": info.path, "lineage": info.lineage}


__all__ = ["bucket_span", "router"]
