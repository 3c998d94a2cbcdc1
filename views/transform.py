"""A view's transforms, checked once and applied alike by both layers before aggregating.

A view may enrich its events from dimension tables, derive fields with expressions
(:mod:`views.expr`) and filter them (``where``), in that order (:data:`TRANSFORMS`);
then the key, bucket and measures see the transformed event. :func:`check_transforms`
types every field once for a definition; :func:`transformed` is the speed layer's form
(per event, in Python) and :func:`spark_transformed` the batch layer's (on the records
DataFrame, before the groupBy). Side by side, they read in parallel:

=========  ======================================  ======================================
step       Python (speed)                          Spark (batch)
=========  ======================================  ======================================
enrich     ``table.get(event[on])``; missing: NULL  broadcast LEFT JOIN on ``on == key``
derive     ``event[name] = to_python(expr)(event)``  ``withColumn(name, to_spark(expr))``
where      keep if the value ``is True``             ``.where(to_spark(expr))`` (NULL drops)
=========  ======================================  ======================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from lambdalab.errors import DefinitionError, LambdaLabError
from lambdalab.schema import get_stream
from views.dimension import Table, get_dimension
from views.expr import Node, parse, to_python, to_spark

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from views.definition import ViewDef

# Columns of the master dataset beside the event's fields (batch.master.COORDINATES) and of
# a batch view's output: a transform may not add a field of these names.
RESERVED = frozenset({"topic", "partition", "offset", "ingest_ts", "key", "value", "bucket_ms"})
Event = dict[str, Any]
Typed = tuple[dict[str, str], dict[str, Node], Node | None]


def check_transforms(view: ViewDef) -> Typed:
    """(field types, derived name -> typed expression, typed where) of ``view``.

    Raises:
        DefinitionError: an unknown dimension or field, a name clash, an expression that
            does not parse or type-check, a ``where`` that is not a bool; naming the view,
            the transform and the problem.
    """
    types = {f.name: str(f.type) for f in get_stream(view.stream).fields}
    for e in view.enrich:
        _check_enrich(view.name, e, types)
    nodes: dict[str, Node] = {}
    for d in view.derive:
        _new_name(view.name, d.name, types, "derive")
        node = _parse(view.name, f"derive {d.name!r} = {d.expr!r}", d.expr, types)
        if node.type == "null":
            msg = f"view {view.name}: derive {d.name!r} = {d.expr!r}: has no type (only NULL)"
            raise DefinitionError(msg)
        nodes[d.name] = node
        types[d.name] = node.type
    where = None
    if view.where is not None:
        where = _parse(view.name, f"where {view.where!r}", view.where, types)
        if where.type not in ("bool", "null"):
            msg = f"view {view.name}: where {view.where!r} is a {where.type}, not a bool"
            raise DefinitionError(msg)
    return types, nodes, where


def _parse(view: str, what: str, text: str, types: dict[str, str]) -> Node:
    try:
        return parse(text, types)
    except DefinitionError as exc:
        msg = f"view {view}: {what}: {exc}"
        raise DefinitionError(msg) from exc


def _new_name(view: str, name: str, types: Mapping[str, str], what: str) -> None:
    if not name.isidentifier() or name.startswith("__") or name in RESERVED:
        msg = f"view {view}: {what} field {name!r} must be an identifier, not reserved"
        raise DefinitionError(msg)
    if name in types:
        msg = f"view {view}: {what} field {name!r} is already a field of the view"
        raise DefinitionError(msg)


def _check_enrich(view: str, e: Any, types: dict[str, str]) -> None:
    try:
        dim = get_dimension(e.dimension)
    except LambdaLabError as exc:
        msg = f"view {view}: enrich: {exc}"
        raise DefinitionError(msg) from exc
    if e.on not in types:
        msg = f"view {view}: enrich from {dim.name}: 'on' field {e.on!r} is not a field"
        raise DefinitionError(msg)
    if types[e.on] != dim.key.type:
        msg = (
            f"view {view}: enrich from {dim.name}: {e.on!r} is a {types[e.on]}, the "
            f"dimension's key {dim.key.name!r} a {dim.key.type}"
        )
        raise DefinitionError(msg)
    values = dim.field_types()
    if not e.fields:
        msg = f"view {view}: enrich from {dim.name}: name the fields to add"
        raise DefinitionError(msg)
    for name in e.fields:
        if name not in values:
            msg = f"view {view}: enrich: {name!r} is not a field of dimension {dim.name}"
            raise DefinitionError(msg)
        _new_name(view, name, types, "enrich")
        types[name] = values[name]


# --- the speed layer's form ---------------------------------------------------------------


def transformed(
    view: ViewDef,
    records: Iterable[tuple[int, int, Event]],
    tables: Mapping[str, Table] | None = None,
) -> Iterable[tuple[int, int, Event]]:
    """``records`` (ingest window, event ms, event) after ``view``'s transforms.

    Events the ``where`` rejects are left out; the others are copies with the enriched
    and derived fields added (an event is shared by every view of its stream). Without
    transforms, ``records`` is returned as it is.

    Raises:
        DefinitionError: the view enriches from a dimension with no table in ``tables``.
    """
    if not (view.enrich or view.derive or view.where is not None):
        return records
    prepare = preparer(view, tables or {})
    return _kept(records, prepare)


def _kept(
    records: Iterable[tuple[int, int, Event]], prepare: Callable[[Event], Event | None]
) -> Iterator[tuple[int, int, Event]]:
    for window, event_ms, event in records:
        out = prepare(event)
        if out is not None:
            yield window, event_ms, out


def preparer(view: ViewDef, tables: Mapping[str, Table]) -> Callable[[Event], Event | None]:
    """One event -> its transformed copy, or None when ``where`` does not keep it."""
    lookups = []
    for e in view.enrich:
        if e.dimension not in tables:
            msg = (
                f"view {view.name} enriches from dimension {e.dimension!r}, but no version "
                f"of it is loaded (lambdalab dim load {e.dimension} FILE)"
            )
            raise DefinitionError(msg)
        dim = get_dimension(e.dimension)
        picks = tuple((name, dim.index(name)) for name in e.fields)
        lookups.append((e.on, picks, tables[e.dimension]))
    derived, keep = _compiled(view)

    def prepare(event: Event) -> Event | None:
        out = dict(event)
        for on, picks, table in lookups:
            row = table.get(out[on])
            for name, i in picks:
                out[name] = None if row is None else row[i]
        for name, evaluate in derived:
            out[name] = evaluate(out)
        if keep is not None and keep(out) is not True:
            return None
        return out

    return prepare


@lru_cache(maxsize=256)
def _compiled(view: ViewDef) -> tuple[tuple[tuple[str, Any], ...], Any]:
    """The derived fields' and the filter's Python closures, compiled once per definition."""
    _, nodes, where = check_transforms(view)
    derived = tuple((name, to_python(node)) for name, node in nodes.items())
    return derived, None if where is None else to_python(where)


# --- the batch layer's form ---------------------------------------------------------------


def spark_transformed(
    view: ViewDef, records: DataFrame, dimensions: Mapping[str, DataFrame] | None = None
) -> DataFrame:
    """The records DataFrame after ``view``'s transforms (before the groupBy).

    ``dimensions`` holds each enriching dimension's version as a DataFrame (its key and
    value columns, one row per key).

    Raises:
        DefinitionError: the view enriches from a dimension missing from ``dimensions``.
    """
    from pyspark.sql import functions as F

    for e in view.enrich:
        if dimensions is None or e.dimension not in dimensions:
            msg = f"view {view.name}: no version of dimension {e.dimension!r} to enrich from"
            raise DefinitionError(msg)
        dim = get_dimension(e.dimension)
        right = dimensions[e.dimension].select(
            F.col(f"`{dim.key.name}`").alias("__dim_key"), *[F.col(f"`{n}`") for n in e.fields]
        )
        joined = records.join(F.broadcast(right), F.col(f"`{e.on}`") == F.col("__dim_key"), "left")
        records = joined.drop("__dim_key")
    _, nodes, where = check_transforms(view)
    for name, node in nodes.items():
        records = records.withColumn(name, to_spark(node))
    return records if where is None else records.where(to_spark(where))
