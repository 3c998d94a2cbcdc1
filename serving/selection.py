"""Selections over the merged answer: filter view keys, group, roll up, order, page.

Pure logic, no I/O. The serving layer reads one batch version and one realtime snapshot
(:mod:`serving.query`) as *cells* -- view key -> event-time bucket -> partial measures --
and hands both parts here. Every output row is the view's measure algebra
(:func:`views.compute.combine`) over the cells it covers, from either part, so a row is
exact whichever side of the cut each record fell on, however the keys are grouped and the
buckets rolled up: ⊕ is associative and commutative.

Keys are compared as rendered key parts (:func:`views.definition.key_part`): a missing
value is ``(none)``, and the text a filter names is the text the key listing returns.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from serving.merge import iso_ms, render_row
from views.compute import combine
from views.definition import KEY_SEP, ViewDef

Cells = dict[str, dict[int, dict[str, Any]]]  # view key -> bucket start ms -> measures
Group = tuple[str, ...]  # the rendered parts of the grouped key fields, in group_by order
BUCKET = "bucket"  # the one order term that is not a measure


@dataclass(frozen=True)
class KeyFilter:
    """Which view keys a query reads; every condition given must hold.

    Attributes:
        equals: key field -> the rendered values it may equal (one of them).
        prefixes: key field -> prefixes its rendered value may start with (one of them).
        key_prefix: a prefix of the whole rendered key (the key listing's ``prefix``).
    """

    equals: Mapping[str, frozenset[str]] = field(default_factory=dict)
    prefixes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    key_prefix: str = ""

    def matcher(self, view: ViewDef) -> Callable[[str], bool]:
        """A predicate on ``view``'s rendered keys (what the readers take as ``keep``)."""
        at = {name: i for i, name in enumerate(view.keys)}
        equals = [(at[f], values) for f, values in self.equals.items()]
        prefixes = [(at[f], tuple(p)) for f, p in self.prefixes.items()]
        start = self.key_prefix

        def keep(key: str) -> bool:
            if not key.startswith(start):
                return False
            if not equals and not prefixes:
                return True
            parts = key.split(KEY_SEP)
            if len(parts) != len(at):  # not a key of this definition
                return False
            return all(parts[i] in values for i, values in equals) and all(
                parts[i].startswith(p) for i, p in prefixes
            )

        return keep


@dataclass(frozen=True)
class Order:
    """One order term: a measure (an HLL by its estimate) or ``bucket``, either direction."""

    name: str
    descending: bool = False

    @classmethod
    def parse(cls, text: str) -> Order:
        """``views`` ascending, ``-views`` descending."""
        return cls(text[1:], True) if text.startswith("-") else cls(text)

    def __str__(self) -> str:
        return f"-{self.name}" if self.descending else self.name


@dataclass(frozen=True)
class Selection:
    """What a query asks of the merged cells of one view.

    Attributes:
        keys: which view keys are read.
        group_by: the key fields rows are grouped by (empty: every key merged).
        span: [from, to) in ms, ``from`` aligned to a bucket of the view.
        width_ms: rollup bucket width, a multiple of the view's; None: the whole span.
        order: order terms; ties are broken by the group's fields, then the bucket.
        sketches: also render HLL sketches (base64).
    """

    keys: KeyFilter
    group_by: tuple[str, ...]
    span: tuple[int, int]
    width_ms: int | None
    order: tuple[Order, ...] = ()
    sketches: bool = False

    def rollup(self, bucket_ms: int) -> int:
        """Start of the rollup bucket holding a view bucket: every ``width`` from ``from``."""
        start = self.span[0]
        if self.width_ms is None:
            return start
        return start + (bucket_ms - start) // self.width_ms * self.width_ms

    def position(self, row: Mapping[str, Any]) -> list[Any]:
        """The row's place in the order, as plain values (what a cursor keeps)."""
        group = [row["key"][f] for f in self.group_by]
        return [_value(row, term.name) for term in self.order] + group + [row["bucket_ms"]]

    def sort_key(self, position: Sequence[Any]) -> tuple[Any, ...]:
        """A total order on positions: the terms (no value last), then group, then bucket."""
        terms = len(self.order)
        out: list[Any] = []
        for term, value in zip(self.order, position[:terms], strict=True):
            out.append(
                (True, 0) if value is None else (False, -value if term.descending else value)
            )
        return (*out, *position[terms:])

    def valid_position(self, position: Any) -> bool:
        """Whether ``position`` (from a client's cursor) has this selection's shape."""
        shape = len(self.order) + len(self.group_by) + 1
        if not isinstance(position, list) or len(position) != shape:
            return False
        terms, group = position[: len(self.order)], position[len(self.order) : -1]
        return (
            all(v is None or _finite(v) for v in terms)
            and all(isinstance(v, str) for v in group)
            and _integer(position[-1])
        )


def _finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _value(row: Mapping[str, Any], name: str) -> Any:
    return row["bucket_ms"] if name == BUCKET else row[name]


def grouped(
    view: ViewDef, parts: Iterable[Cells], selection: Selection
) -> dict[tuple[Group, int], dict[str, Any]]:
    """Per (group, rollup bucket): the measures merged over every cell it covers.

    ``parts`` are the batch cells of one version and the realtime cells since its cut; a
    cell counts when its key passes the filter and its bucket lies in the span.
    """
    keep = selection.keys.matcher(view)
    at = [view.keys.index(f) for f in selection.group_by]
    lo, hi = selection.span
    covered: dict[tuple[Group, int], list[dict[str, Any]]] = defaultdict(list)
    for cells in parts:
        for key, buckets in cells.items():
            if not keep(key):
                continue
            fields = key.split(KEY_SEP)
            group = tuple(fields[i] for i in at)
            for bucket, row in buckets.items():
                if lo <= bucket < hi:
                    covered[(group, selection.rollup(bucket))].append(row)
    return {cell: combine(view, rows) for cell, rows in covered.items()}


def rows(view: ViewDef, parts: Iterable[Cells], selection: Selection) -> list[dict[str, Any]]:
    """Every row of the selection, rendered (HLL as estimates) and in its total order."""
    out = [
        {
            "key": dict(zip(selection.group_by, group, strict=True)),
            "bucket": iso_ms(bucket),
            "bucket_ms": bucket,
            **render_row(view, row, sketches=selection.sketches),
        }
        for (group, bucket), row in grouped(view, parts, selection).items()
    ]
    out.sort(key=lambda row: selection.sort_key(selection.position(row)))
    return out


@dataclass(frozen=True)
class Page:
    """One page of an ordered listing and where the next one starts (None: the last)."""

    items: list[Any]
    after: list[Any] | None


def page(
    items: list[Any],
    sort_key: Callable[[Any], Any],
    position: Callable[[Any], list[Any]],
    after: list[Any] | None,
    limit: int,
) -> Page:
    """The ``limit`` items that follow position ``after`` in ``items`` (sorted by ``sort_key``).

    Keyset paging: ``after`` is the position of the last item of the previous page, so an
    item is on exactly one page as long as its position does not change in between.
    """
    start = 0
    if after is not None:
        start = bisect.bisect_right([sort_key(position(i)) for i in items], sort_key(after))
    chosen = items[start : start + limit]
    more = start + limit < len(items)
    return Page(chosen, position(chosen[-1]) if more and chosen else None)


def keys_in(
    view: ViewDef, parts: Iterable[Cells], keys: KeyFilter, span: tuple[int, int]
) -> list[str]:
    """The view keys with a cell in ``span`` in any part that pass ``keys``, sorted."""
    keep = keys.matcher(view)
    lo, hi = span
    found = {
        key
        for cells in parts
        for key, buckets in cells.items()
        if keep(key) and any(lo <= b < hi for b in buckets)
    }
    return sorted(found)
