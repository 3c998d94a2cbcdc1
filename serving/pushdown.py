"""A selection pushed down into DuckDB: one page of ``/rows`` over millions of keys.

:mod:`serving.selection` answers a selection in Python over cells, which is exact and
simple but builds a Python object per cell: seconds for a version with a million keys.
Here the same selection -- key filter, group by, rollup, order, keyset page -- runs in
DuckDB over this host's memory-mapped local copy of the batch version (zero-copy) and the
realtime snapshot since its cut (an Arrow table, :func:`serving.mergedsql.realtime_table`),
unioned, so only the rows of one page become Python objects. It is exact for the same
reason the Python path is: every output row aggregates the partial measures of the cells
it covers from both parts with the view's algebra (``sum`` for count and sum, ``min``,
``max``), and ⊕ is associative and commutative.

The order is :meth:`serving.selection.Selection.sort_key` spelled in SQL: per term a
"no value" flag (no value last) and the value (negated when descending), then the group's
key parts, then the bucket; a cursor's position continues strictly after its sort key.
Key parts compare as text in DuckDB (bytes of UTF-8, the order of Python's code points).

Only kinds with a DuckDB aggregate (``Kind.pushdown``: count, sum, min, max) are pushed
down (DuckDB cannot union DataSketches sketches; avg is a pair): a view with another kind
is answered by the Python path (:func:`supported`).
"""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal
from typing import Any

import pyarrow as pa

from serving.merge import iso_ms
from serving.selection import BUCKET, Page, Selection
from views.definition import ViewDef

_db: Any = None
_db_lock = threading.Lock()


def supported(view: ViewDef) -> bool:
    """Whether :func:`select_page` answers selections over ``view`` (each kind pushes down)."""
    return all(kind.pushdown for kind in view.kinds)


def select_page(
    view: ViewDef,
    batch: pa.Table | None,
    realtime: pa.Table,
    selection: Selection,
    after: list[Any] | None,
    limit: int,
    memory: str = "1GB",
) -> Page:
    """The ``limit`` rows of ``selection`` after position ``after``, and the next position.

    ``batch`` is the local copy's table (None without a published version) and
    ``realtime`` the realtime cells as a table with the same columns; both may hold
    cells outside the span or the filter.
    """
    con = _database(memory).cursor()  # opening a DuckDB database costs ~25 ms, a cursor µs
    try:
        tag = uuid.uuid4().hex  # names of this request's relations
        sources = [f"__rt_{tag}"]
        con.register(sources[0], realtime)
        if batch is not None:
            sources.insert(0, f"__batch_{tag}")
            con.register(sources[0], batch)
        sql, params = _statement(view, sources, selection, after, limit)
        found = con.execute(sql, params).fetchall()
    finally:
        for name in sources:
            con.unregister(name)
        con.close()
    groups = len(selection.group_by)
    items = [_row(view, selection, r[:groups], r[groups], r[groups + 1 :]) for r in found[:limit]]
    more = len(found) > limit
    return Page(items, selection.position(items[-1]) if more and items else None)


def _database(memory: str) -> Any:
    """The process's in-memory DuckDB for pushed-down selections (opened on first use)."""
    global _db
    with _db_lock:
        if _db is None:
            import duckdb

            _db = duckdb.connect(config={"memory_limit": memory, "threads": 2})
        return _db


def _statement(
    view: ViewDef, sources: list[str], selection: Selection, after: list[Any] | None, limit: int
) -> tuple[str, list[Any]]:
    """The page's SELECT and its parameters (every value the client gave is a parameter)."""
    filters: list[Any] = []
    where = _where(view, selection, filters)
    params = filters * len(sources)  # the filter is spelled once per part
    measures = [f'"{m.name}"' for m in view.measures]
    cells = " UNION ALL ".join(
        f"SELECT key, bucket_ms, {', '.join(measures)} FROM {s} WHERE {where}" for s in sources
    )
    parts = [_part(view, f) for f in selection.group_by]
    groups = [f"{p} AS g{i}" for i, p in enumerate(parts)]
    lo, width = selection.span[0], selection.width_ms
    bucket = f"{lo}::BIGINT" if width is None else f"{lo} + (bucket_ms - {lo}) // {width} * {width}"
    aggs = [
        f"{kind.pushdown or ''}".format(f'"{kind.name}"') + f' AS "{kind.name}"'
        for kind in view.kinds
    ]
    grouped = f"SELECT {', '.join([*groups, f'{bucket} AS b', *aggs])} FROM ({cells}) GROUP BY ALL"
    order = _order_columns(selection)
    names = [f"g{i}" for i in range(len(parts))]
    keyset = _after(order + names + ["b"], selection, after, params)
    outputs = ", ".join([*names, "b", *(f'"{m.name}"' for m in view.measures)])
    sql = (
        f"SELECT {outputs} FROM ({grouped}) WHERE {keyset} "
        f"ORDER BY {', '.join([*order, *names, 'b'])} LIMIT {int(limit) + 1}"
    )
    return sql, params


def _part(view: ViewDef, field: str) -> str:
    """The rendered key part of ``field`` (the key itself for a one-field view)."""
    if len(view.keys) == 1:
        return "key"
    return f"split_part(key, chr(31), {view.keys.index(field) + 1})"


def _where(view: ViewDef, selection: Selection, params: list[Any]) -> str:
    """Cells in the span whose key passes the filter (:meth:`KeyFilter.matcher` in SQL)."""
    keys = selection.keys
    lo, hi = selection.span
    terms = [f"bucket_ms >= {int(lo)}", f"bucket_ms < {int(hi)}"]
    if keys.key_prefix:
        terms.append("starts_with(key, ?)")
        params.append(keys.key_prefix)
    for field, values in keys.equals.items():
        terms.append(f"list_contains(?, {_part(view, field)})")
        params.append(sorted(values))
    for field, prefixes in keys.prefixes.items():
        ors = " OR ".join(f"starts_with({_part(view, field)}, ?)" for _ in prefixes)
        terms.append(f"({ors})" if prefixes else "false")
        params.extend(prefixes)
    return " AND ".join(terms)


def _order_columns(selection: Selection) -> list[str]:
    """Per order term its "no value" flag and its value, as :meth:`Selection.sort_key`."""
    out = []
    for term in selection.order:
        column = "b" if term.name == BUCKET else f'"{term.name}"'
        value = f"coalesce({column}, 0)"
        out += [f"({column} IS NULL)", f"-{value}" if term.descending else value]
    return out


def _after(
    columns: list[str], selection: Selection, after: list[Any] | None, params: list[Any]
) -> str:
    """Rows whose sort key is strictly greater than ``after``'s (keyset paging)."""
    if after is None:
        return "true"
    flat: list[Any] = []
    for item in selection.sort_key(after):
        flat.extend(item if isinstance(item, tuple) else (item,))
    ors = []
    for i in range(len(columns)):
        equal = [f"{c} = ?" for c in columns[:i]]
        ors.append("(" + " AND ".join([*equal, f"{columns[i]} > ?"]) + ")")
        params.extend([*flat[:i], flat[i]])
    return "(" + " OR ".join(ors) + ")"


def _row(
    view: ViewDef, selection: Selection, group: tuple[Any, ...], bucket: int, values: Any
) -> dict[str, Any]:
    """One output row as :func:`serving.selection.rows` renders it."""
    measures = {
        m.name: int(v) if isinstance(v, Decimal) else v
        for m, v in zip(view.measures, values, strict=True)
    }
    return {
        "key": dict(zip(selection.group_by, group, strict=True)),
        "bucket": iso_ms(bucket),
        "bucket_ms": bucket,
        **measures,
    }
