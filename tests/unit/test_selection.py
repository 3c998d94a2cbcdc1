"""Queries over many keys against the plain-Python oracle, for any split of the events.

Events get an ingest time; the batch part is every event before a cut, the realtime part
every event at or after it, each aggregated by tests/oracle.py (never views.compute) and
stored as the layers store it (HLL as sketches). Whatever the cut, the filter, the group,
the rollup and the order, :func:`serving.selection.rows` over both parts must equal the
oracle over all events, filtered, grouped, rolled up and ordered here in plain Python;
and paging through it must return every row exactly once, in order.
"""

from __future__ import annotations

import os
from typing import Any

from datasketches import hll_sketch
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.selection import KeyFilter, Order, Selection, keys_in, page, rows
from tests import oracle
from views.definition import HLL_LG_K, Measure, ViewDef, hll_item

# The unit suite stays under 10 s (50 and 25 examples);
# LAMBDALAB_HYPOTHESIS_EXAMPLES=1000 for a long run.
EXAMPLES = int(os.environ.get("LAMBDALAB_HYPOTHESIS_EXAMPLES", "50"))

HOUR = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
VIEW = ViewDef(
    name="by_url_referrer",
    stream="pageviews",
    keys=("url", "referrer"),
    bucket_s=3600,
    measures=(
        Measure("views", "count"),
        Measure("bytes", "sum", "bytes"),
        Measure("low", "min", "bytes"),
        Measure("high", "max", "bytes"),
        Measure("visitors", "hll", "user_id"),
    ),
)
URLS = ("/a", "/ab", "/b", "(none)", "a\x1fb", "\\")
REFERRERS = (None, "g", "news", "(none)")
# rendered key parts a filter may name (the literal "(none)" renders as "\(none)")
PARTS = {
    "url": ["/a", "/ab", "/b", "\\(none)", "a\\u001fb", "\\\\", "/zz"],
    "referrer": ["(none)", "g", "news", "\\(none)"],
}
PREFIXES = ["/", "/a", "\\", "(", "a", ""]


@st.composite
def timed_events(draw: st.DrawFn) -> list[tuple[int, dict[str, Any]]]:
    """(ingest ms, event) pairs: small pools so keys, buckets and visitors repeat."""
    n = draw(st.integers(0, 40))
    out = []
    for i in range(n):
        out.append(
            (
                T0 + i * 60_000,
                {
                    "event_id": f"e{i}",
                    "url": draw(st.sampled_from(URLS)),
                    "user_id": f"u{draw(st.integers(0, 12))}",
                    "referrer": draw(st.sampled_from(REFERRERS)),
                    "bytes": draw(st.integers(-(2**63), 2**63 - 1) | st.integers(0, 50)),
                    "event_time": oracle_time(draw(st.integers(0, 6 * HOUR - 1))),
                },
            )
        )
    return out


def oracle_time(offset_ms: int) -> str:
    from datetime import UTC, datetime, timedelta

    moment = datetime.fromtimestamp(T0 / 1000, tz=UTC) + timedelta(milliseconds=offset_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@st.composite
def selections(draw: st.DrawFn) -> Selection:
    """Any filter, group, rollup, order and span the API can express for VIEW."""
    equals = {
        f: frozenset(draw(st.lists(st.sampled_from(PARTS[f]), min_size=1, max_size=3)))
        for f in draw(st.lists(st.sampled_from(VIEW.keys), unique=True, max_size=2))
    }
    prefixes = {
        f: tuple(draw(st.lists(st.sampled_from(PREFIXES), min_size=1, max_size=2)))
        for f in draw(st.lists(st.sampled_from(VIEW.keys), unique=True, max_size=1))
    }
    group_by = tuple(draw(st.permutations(VIEW.keys))[: draw(st.integers(0, 2))])
    lo = T0 + draw(st.integers(-2, 4)) * HOUR
    span = (lo, lo + draw(st.integers(1, 8)) * HOUR - draw(st.sampled_from([0, 1, 1800_000])))
    width = draw(st.sampled_from([None, HOUR, 2 * HOUR, 3 * HOUR, 24 * HOUR]))
    names = [m.name for m in VIEW.measures] + ["bucket"]
    terms = draw(st.lists(st.sampled_from(names), unique=True, max_size=2))
    order = tuple(Order(name, draw(st.booleans())) for name in terms)
    return Selection(KeyFilter(equals, prefixes), group_by, span, width, order)


def stored(cells: dict[tuple[str, int], oracle.Row]) -> dict[str, dict[int, dict[str, Any]]]:
    """Oracle cells in the layers' form: key -> bucket -> row, HLL sets as sketches."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for (key, bucket), row in cells.items():
        kept = dict(row)
        for m in VIEW.measures:
            if m.kind == "hll":
                sketch = hll_sketch(HLL_LG_K)
                for value in row[m.name]:
                    sketch.update(hll_item(value))
                kept[m.name] = bytes(sketch.serialize_compact())
        out.setdefault(key, {})[bucket] = kept
    return out


def parts_of(timed: list[tuple[int, dict[str, Any]]], cut: int) -> list[Any]:
    """The batch part (ingest < cut) and the realtime part (ingest >= cut)."""
    batch = [e for ingest, e in timed if ingest < cut]
    realtime = [e for ingest, e in timed if ingest >= cut]
    return [stored(oracle.measures(VIEW, batch)), stored(oracle.measures(VIEW, realtime))]


def expected(events: list[dict[str, Any]], sel: Selection) -> list[dict[str, Any]]:
    """The oracle's answer to ``sel`` over ``events``, in the documented order."""
    found = oracle.selected(
        VIEW,
        events,
        span=sel.span,
        width_ms=sel.width_ms,
        group_by=sel.group_by,
        equals={f: set(v) for f, v in sel.keys.equals.items()},
        prefixes={f: list(p) for f, p in sel.keys.prefixes.items()},
    )
    return oracle.ordered(found, sel.group_by, [(t.name, t.descending) for t in sel.order])


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    """A row with HLL values as counts: an estimate rounds to the exact count here."""
    out = {"key": row["key"], "bucket_ms": row["bucket_ms"]}
    for m in VIEW.measures:
        value = row[m.name]
        out[m.name] = len(value) if isinstance(value, set) else value
        if m.kind == "hll" and not isinstance(value, set):
            out[m.name] = round(value)
    return out


@settings(max_examples=EXAMPLES, deadline=None)
@given(timed_events(), st.integers(0, 41), selections())
def test_any_split_answers_as_the_oracle_over_all_events(
    timed: list[tuple[int, dict[str, Any]]], cut_index: int, sel: Selection
) -> None:
    got = rows(VIEW, parts_of(timed, T0 + cut_index * 60_000), sel)
    want = expected([e for _, e in timed], sel)
    assert [_comparable(r) for r in got] == [_comparable(r) for r in want]


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(timed_events(), st.integers(0, 41), selections(), st.integers(1, 7))
def test_paging_returns_every_row_once_in_order(
    timed: list[tuple[int, dict[str, Any]]], cut_index: int, sel: Selection, limit: int
) -> None:
    listed = rows(VIEW, parts_of(timed, T0 + cut_index * 60_000), sel)
    seen: list[dict[str, Any]] = []
    after = None
    for _ in range(len(listed) + 1):
        chosen = page(listed, sel.sort_key, sel.position, after, limit)
        assert len(chosen.items) <= limit
        seen += chosen.items
        after = chosen.after
        if after is None:
            break
        assert sel.valid_position(after)
    assert seen == listed


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(timed_events(), st.integers(0, 41), st.sampled_from(PREFIXES), st.integers(1, 5))
def test_the_key_listing_is_every_key_of_either_part_once(
    timed: list[tuple[int, dict[str, Any]]], cut_index: int, prefix: str, limit: int
) -> None:
    span = (T0, T0 + 4 * HOUR)
    found = keys_in(
        VIEW, parts_of(timed, T0 + cut_index * 60_000), KeyFilter(key_prefix=prefix), span
    )
    truth = {k for k, b in oracle.measures(VIEW, [e for _, e in timed]) if span[0] <= b < span[1]}
    assert found == sorted(k for k in truth if k.startswith(prefix))
    paged, after = [], None
    for _ in range(len(found) + 1):
        chosen = page(found, tuple, lambda key: [key], after, limit)
        paged += chosen.items
        after = chosen.after
        if after is None:
            break
    assert paged == found


def test_a_top_n_by_distinct_visitors_merges_sketches_across_the_cut() -> None:
    events = [
        {"url": u, "referrer": None, "user_id": f"u{i}", "bytes": 1, "event_time": oracle_time(0)}
        for u, n in (("/a", 3), ("/b", 5), ("/c", 4))
        for i in range(n)
    ]
    timed = [(T0 + i * 60_000, e) for i, e in enumerate(events)]
    sel = Selection(KeyFilter(), ("url",), (T0, T0 + HOUR), None, (Order("visitors", True),))
    listed = rows(VIEW, parts_of(timed, T0 + 6 * 60_000), sel)  # /b straddles the cut
    top = page(listed, sel.sort_key, sel.position, None, 2)
    assert [(r["key"]["url"], round(r["visitors"])) for r in top.items] == [("/b", 5), ("/c", 4)]
    assert top.after == [top.items[-1]["visitors"], "/c", T0]


def test_rows_without_a_value_sort_last_both_ways() -> None:
    parts = [{"/a": {T0: {"views": 1, "bytes": 0, "low": None, "high": None, "visitors": None}}}]
    parts.append({"/b": {T0: {"views": 1, "bytes": 5, "low": 5, "high": 5, "visitors": None}}})
    view = ViewDef("v", "pageviews", ("url",), 3600, VIEW.measures)
    for descending in (False, True):
        sel = Selection(KeyFilter(), ("url",), (T0, T0 + HOUR), HOUR, (Order("low", descending),))
        assert [r["key"]["url"] for r in rows(view, parts, sel)] == ["/b", "/a"]
