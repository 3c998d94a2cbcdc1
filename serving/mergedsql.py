"""SQL over the merged views: batch version at its cut ⊕ realtime since the cut, in DuckDB.

``POST /sql/merged`` answers one read-only statement over relations named like the views
it mentions. Each such relation is the union of two parts, read once per request exactly
as a merged point query reads them (:mod:`serving.query`): the rows of one batch version
(this host's local copy, :mod:`batch.localcopy`, scanned zero-copy from its memory map)
and one realtime snapshot of every key since that version's cut
(``SpeedReader.view_snapshot``). A (key, bucket) may thus appear twice, once per part
(column ``part``): the measures are partial aggregates and queries aggregate them with
``sum`` (count and sum measures, exact integers), ``min``/``max``, an avg as
``sum(x_sum) / sum(x_count)``, and the sketch functions ``hll_estimate(sketch)``,
``theta_estimate(sketch)``, ``kll_quantile_bigint(sketch, q)`` and
``kll_quantile_double(sketch, q)`` -- the estimate (quantile) of the union of the sketches
it aggregates, i.e. of the merged sketch of each result row. Because ⊕ is associative
and commutative any grouping of the partials is exact whichever side of the cut a record fell on.

The statement runs in a fresh in-memory DuckDB with file access disabled and its
configuration locked, after the same lexical read-only gate as ``/sql``
(:mod:`serving.sqlguard`), with ``api.sql_row_limit``, ``api.sql_timeout_s`` and the
``api.sql_memory`` limit.
"""

from __future__ import annotations

import base64
import functools
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lambdalab.errors import LambdaLabError, ValidationFailed
from lambdalab.settings import Settings
from serving.deps import BatchSource, SpeedSource
from serving.merge import provenance
from serving.query import merged_parts
from serving.sqlguard import check_read_only, strip_noise
from views import registry
from views.definition import ESCAPE, KEY_SEP, NULL_KEY, ViewDef
from views.measures import SQL_FUNCTIONS

if TYPE_CHECKING:
    from serving.realtime import RealtimeTables

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPED = re.compile(r"\\(\\|u001f)")


class SqlTimeout(LambdaLabError):
    """The statement ran longer than ``api.sql_timeout_s`` and was interrupted."""


@dataclass(frozen=True)
class MergedSql:
    """One answered statement: its rows and, per view it read, the parts' provenance."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    views: dict[str, dict[str, Any]]
    elapsed_s: float


def referenced(statement: str) -> list[ViewDef]:
    """The registered views a statement names (unquoted), in name order.

    Raises:
        ValidationFailed: it names none (the message lists the views there are).
    """
    words = {w.lower() for w in _WORD.findall(strip_noise(statement))}
    views = registry.all_views()
    named = [views[n] for n in sorted(views) if n in words]
    if not named:
        msg = f"the statement reads no view: name one of {', '.join(sorted(views))} (unquoted)"
        raise ValidationFailed(msg)
    return named


def run_merged_sql(
    settings: Settings,
    batch: BatchSource,
    speed: SpeedSource,
    sql: str,
    tables: RealtimeTables | None = None,
) -> MergedSql:
    """Run one read-only statement over the merged views it names.

    ``tables`` (the app's) reuses the realtime part while the speed layer has not committed.

    Raises:
        ValidationFailed: not a single read-only statement, names no view, or DuckDB
            refused it (syntax, unknown column, types, the memory limit).
        SqlTimeout: it ran longer than ``api.sql_timeout_s``.
        PartUnavailable: a backend did not answer and api.availability is "consistent".
    """
    import duckdb

    statement = check_read_only(sql)
    started = time.perf_counter()
    con = duckdb.connect(config={"memory_limit": settings.api.sql_memory, "threads": 2})
    try:
        views = {
            v.name: _relation(con, settings, batch, speed, v, tables) for v in referenced(statement)
        }
        _functions(con)
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        columns, rows, truncated = _execute(con, statement, settings)
    finally:
        con.close()
    return MergedSql(columns, rows, truncated, views, round(time.perf_counter() - started, 3))


def _relation(
    con: Any,
    settings: Settings,
    batch: BatchSource,
    speed: SpeedSource,
    view: ViewDef,
    tables: RealtimeTables | None,
) -> dict[str, Any]:
    """Register ``view``'s two parts and the relation unioning them; return its provenance."""
    if tables is None:
        local, cells, prov = merged_parts(settings, batch, speed, view)
        table = realtime_table(view, cells)
    else:
        read = functools.partial(tables.read, speed, view)
        local, table, prov = merged_parts(settings, batch, speed, view, realtime=read)
    con.register(f"__rt_{view.name}", table)
    parts = [_part_select(view, f"__rt_{view.name}", "realtime")]
    if local is not None:
        con.register(f"__batch_{view.name}", local.table)
        parts.insert(0, _part_select(view, f"__batch_{view.name}", "batch"))
    con.execute(f'CREATE TEMP VIEW "{view.name}" AS {" UNION ALL ".join(parts)}')
    return provenance(prov)


def _part_select(view: ViewDef, source: str, part: str) -> str:
    keys = [f'"{k}"' for k in view.keys]
    measures = [
        f'CAST("{name}" AS {duck}) AS "{name}"'
        for kind in view.kinds
        for name, _, duck in kind.columns()
    ]
    cols = [f"'{part}' AS part", *keys, "key", "bucket_ms", "epoch_ms(bucket_ms) AS bucket"]
    return f"SELECT {', '.join(cols + measures)} FROM {source}"


def realtime_table(view: ViewDef, cells: dict[str, dict[int, dict[str, Any]]]) -> pa.Table:
    """The realtime cells as an Arrow table with the batch version's columns and types."""
    flat = [(key, bucket, row) for key, buckets in cells.items() for bucket, row in buckets.items()]
    keys = [key for key, _, _ in flat]
    split: list[list[str]] = [keys]
    if len(view.keys) > 1:
        parts = [k.split(KEY_SEP) for k in keys]
        split = [[p[i] for p in parts] for i in range(len(view.keys))]
    columns: dict[str, pa.Array] = {
        name: pa.array([_field(p) for p in parts], pa.string())
        for name, parts in zip(view.keys, split, strict=True)
    }
    columns["key"] = pa.array(keys, pa.string())
    columns["bucket_ms"] = pa.array([bucket for _, bucket, _ in flat], pa.int64())
    for kind in view.kinds:
        columns.update(kind.arrow([row.get(kind.name) for _, _, row in flat]))
    return pa.table(columns)


def _field(part: str) -> str | None:
    """:func:`field_value`, skipping the work for the common part with nothing escaped."""
    if "\\" not in part and part != NULL_KEY:
        return part
    return field_value(part)


def field_value(part: str) -> str | None:
    """A key field's value as text (None when missing), from its rendered key part.

    The inverse of :func:`views.definition.key_part`: the batch version stores each key
    field this way, so both parts of a merged relation filter and group alike.
    """
    if part == NULL_KEY:
        return None
    if part == ESCAPE + NULL_KEY:
        return NULL_KEY
    return _ESCAPED.sub(lambda m: ESCAPE if m.group(1) == ESCAPE else KEY_SEP, part)


def _functions(con: Any) -> None:
    """The sketch functions (:data:`views.measures.SQL_FUNCTIONS`), e.g. ``hll_estimate``.

    Each is an aggregate macro: the estimate (or quantile) of the union of the sketches it
    aggregates, i.e. of the merged sketch of each result row.
    """
    import duckdb
    from duckdb import sqltypes

    for name, params, func, types, result in SQL_FUNCTIONS:
        args = [duckdb.list_type(sqltypes.BLOB), *(getattr(sqltypes, t) for t in types)]
        con.create_function(f"__{name}", func, args, getattr(sqltypes, result))
        names = ", ".join(["sketch", *params])
        call = ", ".join(["list(sketch)", *params])
        con.execute(f"CREATE TEMP MACRO {name}({names}) AS __{name}({call})")


def _execute(con: Any, statement: str, settings: Settings) -> tuple[list[str], list[Any], bool]:
    import duckdb

    limit = settings.api.sql_row_limit
    timer = threading.Timer(settings.api.sql_timeout_s, con.interrupt)
    timer.start()
    try:
        cursor = con.execute(statement)
        rows = cursor.fetchmany(limit + 1)
        columns = [d[0] for d in cursor.description or []]
    except duckdb.InterruptException as exc:
        msg = f"query exceeded api.sql_timeout_s={settings.api.sql_timeout_s}s"
        raise SqlTimeout(msg) from exc
    except duckdb.Error as exc:
        msg = f"DuckDB refused the query ({type(exc).__name__}): {exc}"
        raise ValidationFailed(msg) from exc
    finally:
        timer.cancel()
    return columns, [[_json(v) for v in r] for r in rows[:limit]], len(rows) > limit


def _json(value: Any) -> Any:
    """A JSON-ready value: exact sums as ints, instants as ISO text, sketches as base64."""
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, datetime):
        text = value.isoformat()
        return text + "Z" if value.tzinfo is None else text.replace("+00:00", "Z")
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return value
