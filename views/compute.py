"""The speed-layer form of a view: apply a definition to events in plain Python.

Pure logic, no I/O: the speed consumer feeds it one poll batch at a time and writes the
partial aggregates it returns. Partials are keyed by (ingest window, view key, event-time
bucket), the layout the time boundary needs (docs/architecture.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from datasketches import hll_sketch

from lambdalab.boundary import window_of
from lambdalab.schema import get_stream, parse_ts_ms, value_text
from views.definition import HLL_LG_K, KINDS, ViewDef, hll_item, hll_union, identity, merge

Cell = tuple[int, str, int]  # (ingest window start ms, view key, event bucket start ms)
TimedEvent = tuple[int, int, dict[str, Any]]  # (ingest window start ms, event ms, event)


def aggregate(
    view: ViewDef, records: Iterable[tuple[int, dict[str, Any]]], window_s: int
) -> dict[Cell, dict[str, Any]]:
    """Partial aggregates of ``view`` over (ingest_ms, validated event) pairs."""
    stream_time = get_stream(view.stream).time_field
    timed = (
        (window_of(ingest_ms, window_s), parse_ts_ms(e[stream_time]), e) for ingest_ms, e in records
    )
    return aggregate_timed(view, timed)


def aggregate_timed(view: ViewDef, records: Iterable[TimedEvent]) -> dict[Cell, dict[str, Any]]:
    """Partial aggregates of ``view`` over (ingest window, event_ms, validated event) triples.

    The speed consumer's hot loop: it computes each record's ingest window and event time
    once for all its views. The measures are grouped by kind up front and each distinct
    key value is rendered once, so the per-event work is a few dict operations per measure.
    """
    bucket_of = view.bucket_of
    by_kind = _by_kind(view)
    counts, sums, mins, maxs = (by_kind[k] for k in ("count", "sum", "min", "max"))
    hlls = by_kind["hll"]
    fresh = {m.name: identity(m.kind) for m in view.measures}
    key_of = _key_renderer(view)
    cells: dict[Cell, dict[str, Any]] = {}
    sketches: dict[tuple[Cell, str], Any] = {}
    for window, event_ms, event in records:
        cell = (window, key_of(event), bucket_of(event_ms))
        acc = cells.get(cell)
        if acc is None:
            acc = cells[cell] = fresh.copy()
        for name, _ in counts:
            acc[name] += 1
        for name, fld in sums:
            value = event.get(fld)
            if value is not None:
                acc[name] += value
        for name, fld in mins:
            value = event.get(fld)
            if value is not None and (acc[name] is None or value < acc[name]):
                acc[name] = value
        for name, fld in maxs:
            value = event.get(fld)
            if value is not None and (acc[name] is None or value > acc[name]):
                acc[name] = value
        for name, fld in hlls:
            value = event.get(fld)
            if value is not None:
                sk = sketches.get((cell, name))
                if sk is None:
                    sk = sketches[(cell, name)] = hll_sketch(HLL_LG_K)
                sk.update(hll_item(value_text(value)))  # bool: true/false, as Spark
    for (cell, name), sk in sketches.items():
        cells[cell][name] = bytes(sk.serialize_compact())
    return cells


def _by_kind(view: ViewDef) -> dict[str, list[tuple[str, str]]]:
    """(measure name, field) of each measure, grouped by kind (every kind present)."""
    out: dict[str, list[tuple[str, str]]] = {kind: [] for kind in KINDS}
    for m in view.measures:
        out[m.kind].append((m.name, m.field or ""))
    return out


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
    out: dict[str, Any] = {m.name: identity(m.kind) for m in view.measures}
    hll_parts: dict[str, list[bytes]] = defaultdict(list)
    for part in parts:
        for m in view.measures:
            value = part.get(m.name)
            if m.kind == "hll":
                if value is not None:
                    hll_parts[m.name].append(value)
            else:
                out[m.name] = merge(m.kind, out[m.name], value)
    for name, blobs in hll_parts.items():
        out[name] = hll_union(blobs)
    return out
