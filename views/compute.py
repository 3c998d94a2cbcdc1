"""The speed-layer form of a view: apply a definition to events in plain Python.

Pure logic, no I/O: the speed consumer feeds it one poll batch at a time and writes the
partial aggregates it returns. Partials are keyed by (ingest window, view key, event-time
bucket), the layout the time boundary needs (docs/architecture.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from lambdalab.boundary import window_of
from lambdalab.schema import get_stream, parse_ts_ms
from views.definition import ViewDef, hll_item, hll_union, identity, merge

Cell = tuple[int, str, int]  # (ingest window start ms, view key, event bucket start ms)


def aggregate(
    view: ViewDef, records: Iterable[tuple[int, dict[str, Any]]], window_s: int
) -> dict[Cell, dict[str, Any]]:
    """Partial aggregates of ``view`` over (ingest_ms, validated event) pairs."""
    from datasketches import hll_sketch

    from views.definition import HLL_LG_K

    cells: dict[Cell, dict[str, Any]] = {}
    sketches: dict[tuple[Cell, str], Any] = {}
    stream_time = get_stream(view.stream).time_field
    for ingest_ms, event in records:
        cell = (
            window_of(ingest_ms, window_s),
            view.key_of(event),
            view.bucket_of(parse_ts_ms(event[stream_time])),
        )
        acc = cells.get(cell)
        if acc is None:
            acc = cells[cell] = {m.name: identity(m.kind) for m in view.measures}
        for m in view.measures:
            if m.kind == "count":
                acc[m.name] += 1
            elif m.kind == "hll":
                value = event.get(m.field or "")
                if value is not None:
                    sk = sketches.get((cell, m.name))
                    if sk is None:
                        sk = sketches[(cell, m.name)] = hll_sketch(HLL_LG_K)
                    sk.update(hll_item(str(value)))
            else:
                value = event.get(m.field or "")
                if value is not None:
                    acc[m.name] = merge(m.kind, acc[m.name], value)
    for (cell, name), sk in sketches.items():
        cells[cell][name] = bytes(sk.serialize_compact())
    return cells


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
