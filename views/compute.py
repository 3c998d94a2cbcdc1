"""The speed-layer form of a view: apply a definition to events in plain Python.

Pure logic, no I/O: the speed consumer feeds it one poll batch at a time and writes the
partial aggregates it returns. Partials are keyed by (ingest window, view key, event-time
bucket), the layout the time boundary needs (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lambdalab.boundary import window_of
from lambdalab.schema import get_stream, parse_ts_ms
from views.definition import ViewDef
from views.dimension import Table
from views.transform import transformed

Cell = tuple[int, str, int]  # (ingest window start ms, view key, event bucket start ms)
TimedEvent = tuple[int, int, dict[str, Any]]  # (ingest window start ms, event ms, event)


def aggregate(
    view: ViewDef,
    records: Iterable[tuple[int, dict[str, Any]]],
    window_s: int,
    tables: Mapping[str, Table] | None = None,
) -> dict[Cell, dict[str, Any]]:
    """Partial aggregates of ``view`` over (ingest_ms, validated event) pairs."""
    stream_time = get_stream(view.stream).time_field
    timed = (
        (window_of(ingest_ms, window_s), parse_ts_ms(e[stream_time]), e) for ingest_ms, e in records
    )
    return aggregate_timed(view, timed, tables)


def aggregate_timed(
    view: ViewDef, records: Iterable[TimedEvent], tables: Mapping[str, Table] | None = None
) -> dict[Cell, dict[str, Any]]:
    """Partial aggregates of ``view`` over (ingest window, event_ms, validated event) triples.

    The view's transforms run first (:func:`views.transform.transformed`: enrich from
    ``tables``, one dimension version each, derive, filter).

    The speed consumer's hot loop: it computes each record's ingest window and event time
    once for all its views. Each measure's kind gives one update function
    (:meth:`views.measures.Kind.step`) and each distinct key value is rendered once, so the
    per-event work is one call per measure; sketches stay live objects until the end.
    """
    records = transformed(view, records, tables)
    bucket_of = view.bucket_of
    steps = [kind.step() for kind in view.kinds]
    finishing = [kind for kind in view.kinds if kind.finishes]
    fresh = {kind.name: kind.identity() for kind in view.kinds}
    key_of = _key_renderer(view)
    cells: dict[Cell, dict[str, Any]] = {}
    for window, event_ms, event in records:
        cell = (window, key_of(event), bucket_of(event_ms))
        acc = cells.get(cell)
        if acc is None:
            acc = cells[cell] = fresh.copy()
        for step in steps:
            step(acc, event)
    for acc in cells.values() if finishing else ():
        for kind in finishing:
            acc[kind.name] = kind.finish(acc[kind.name])
    return cells


def _key_renderer(view: ViewDef) -> Callable[[dict[str, Any]], str]:
    """``view.key_of``, remembering the rendering of each distinct raw key value."""
    rendered: dict[Any, str] = {}
    names = view.keys

    def key_of(event: dict[str, Any]) -> str:
        raw = event.get(names[0]) if len(names) == 1 else tuple(event.get(k) for k in names)
        key = rendered.get(raw)
        if key is None:
            key = rendered[raw] = view.key_of(event)
        return key

    return key_of


def combine(view: ViewDef, parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Merge several partial rows of one (key, bucket) into one."""
    rows = list(parts)
    return {k.name: k.merge_all([row.get(k.name) for row in rows]) for k in view.kinds}
