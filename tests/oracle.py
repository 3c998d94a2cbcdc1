"""The independent oracle: what a view must answer, recomputed in plain Python.

Every test that checks a view's numbers compares them with this module. It recomputes each
measure from the view definition's fields over events the test made itself, and never
calls ``views.compute``, ``speed.*`` or ``batch.*``: a layer that gets a measure, a bucket
or a window wrong disagrees with it. count, sum, min and max are exact; an ``hll`` measure
is kept as the exact set of distinct values, and each test compares a sketch's estimate
with ``len(set)`` within the sketch's error.

The view key is the definition's own ``ViewDef.key_of``: the rendered key is part of the
view's contract, which Spark (``batch.compile``) and Python (``views.compute``) both
implement; ``tests/integration/test_edge_values.py`` checks it at the edges of every type.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from lambdalab.schema import get_stream
from views.definition import ViewDef

Row = dict[str, Any]  # measure name -> exact value (hll: the set of distinct values)
Cell = tuple[str, int]  # (view key, event-time bucket start ms)
WindowCell = tuple[int, str, int]  # (ingest window start ms, view key, bucket start ms)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms_of(text: str) -> int:
    """Milliseconds since the epoch of an ISO-8601 time with a zone (exact, no float)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment - EPOCH) // timedelta(milliseconds=1)


def floor_to(ms: int, width_ms: int) -> int:
    """Start of the ``width_ms``-wide interval holding ``ms`` (floors below 1970 too)."""
    return ms - ms % width_ms


def cell_of(view: ViewDef, event: dict[str, Any]) -> Cell:
    """(key, event-time bucket) of an event, reading the stream's own time field."""
    moment = ms_of(str(event[get_stream(view.stream).time_field]))
    return view.key_of(event), floor_to(moment, view.bucket_s * 1000)


def empty_row(view: ViewDef) -> Row:
    """Every measure at its identity: 0 for count/sum, None for min/max, {} for hll."""
    ident = {"count": 0, "sum": 0, "min": None, "max": None}
    return {m.name: set() if m.kind == "hll" else ident[m.kind] for m in view.measures}


def fold(view: ViewDef, row: Row, event: dict[str, Any]) -> None:
    """Add one event to a row; a missing value counts but adds to no other measure."""
    for m in view.measures:
        value = event.get(m.field) if m.field else None
        if m.kind == "count":
            row[m.name] += 1
        elif value is None:
            continue
        elif m.kind == "sum":
            row[m.name] += value
        elif m.kind == "min":
            row[m.name] = value if row[m.name] is None else min(row[m.name], value)
        elif m.kind == "max":
            row[m.name] = value if row[m.name] is None else max(row[m.name], value)
        else:
            row[m.name].add(str(value))


def measures(view: ViewDef, events: Iterable[dict[str, Any]]) -> dict[Cell, Row]:
    """Exact measures of ``view`` per (key, bucket) over ``events``."""
    out: dict[Cell, Row] = {}
    for event in events:
        cell = cell_of(view, event)
        fold(view, out.setdefault(cell, empty_row(view)), event)
    return out


def measures_by_window(
    view: ViewDef, timed: Iterable[tuple[int, dict[str, Any]]], window_s: int
) -> dict[WindowCell, Row]:
    """Exact measures per (ingest window, key, bucket) over (ingest ms, event) pairs."""
    out: dict[WindowCell, Row] = {}
    for ingest_ms, event in timed:
        cell = (floor_to(ingest_ms, window_s * 1000), *cell_of(view, event))
        fold(view, out.setdefault(cell, empty_row(view)), event)
    return out


def by_bucket(cells: dict[Cell, Row], key: str) -> dict[int, Row]:
    """The rows of one key, by bucket start (the shape of a merged answer)."""
    return {bucket: row for (k, bucket), row in cells.items() if k == key}


def selected(
    view: ViewDef,
    events: Iterable[dict[str, Any]],
    *,
    span: tuple[int, int],
    width_ms: int | None,
    group_by: tuple[str, ...] = (),
    equals: dict[str, set[str]] | None = None,
    prefixes: dict[str, list[str]] | None = None,
) -> list[dict[str, Any]]:
    """What a many-key query must answer: exact rows per (group, rollup bucket).

    A cell counts when its bucket is in ``span`` = [from, to) and its rendered key fields
    pass the filters (a field equals one of ``equals[field]`` and starts with one of
    ``prefixes[field]``). Rollup buckets start at ``from``, ``width_ms`` apart (None: one
    for the whole span). Rows are ``{"key": {field: part}, "bucket_ms": ..., measure: ...}``
    in the default order (group fields, then bucket); hll values are exact sets.
    """
    lo, hi = span
    out: dict[tuple[tuple[str, ...], int], Row] = {}
    for (key, bucket), row in measures(view, events).items():
        fields = dict(zip(view.keys, key.split("\x1f"), strict=True))
        if not lo <= bucket < hi or not _passes(fields, equals or {}, prefixes or {}):
            continue
        start = lo if width_ms is None else lo + (bucket - lo) // width_ms * width_ms
        acc = out.setdefault((tuple(fields[f] for f in group_by), start), empty_row(view))
        for m in view.measures:
            acc[m.name] = _union(m.kind, acc[m.name], row[m.name])
    return [
        {"key": dict(zip(group_by, group, strict=True)), "bucket_ms": bucket, **row}
        for (group, bucket), row in sorted(out.items())
    ]


def ordered(
    rows: list[dict[str, Any]], group_by: tuple[str, ...], order: list[tuple[str, bool]]
) -> list[dict[str, Any]]:
    """``rows`` by (measure or "bucket", descending) terms, rows without a value last in
    either direction, ties by the group's fields then the bucket (an hll by its exact count)."""

    def position(row: dict[str, Any]) -> tuple[Any, ...]:
        terms = []
        for name, descending in order:
            value = row["bucket_ms"] if name == "bucket" else row[name]
            value = len(value) if isinstance(value, set) else value
            terms.append((1, 0) if value is None else (0, -value if descending else value))
        return (*terms, *(row["key"][f] for f in group_by), row["bucket_ms"])

    return sorted(rows, key=position)


def _passes(
    fields: dict[str, str], equals: dict[str, set[str]], prefixes: dict[str, list[str]]
) -> bool:
    return all(fields[f] in values for f, values in equals.items()) and all(
        any(fields[f].startswith(p) for p in ps) for f, ps in prefixes.items()
    )


def _union(kind: str, a: Any, b: Any) -> Any:
    if kind in ("count", "sum"):
        return a + b
    if kind == "hll":
        return a | b
    if a is None or b is None:
        return b if a is None else a
    return min(a, b) if kind == "min" else max(a, b)
