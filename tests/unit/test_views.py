"""View definitions and the measure algebra, checked on plain Python lists."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambdalab.boundary import window_of
from lambdalab.errors import DefinitionError, NotFound
from tests import oracle
from tests.events import EventFactory
from views.compute import aggregate, combine
from views.definition import (
    HLL_MARK,
    Measure,
    ViewDef,
    hll_estimate,
    hll_item,
    hll_of,
    hll_rse,
    hll_union,
    merge,
)
from views.registry import all_views, get_view

HOUR = 3_600_000


def _timed(make_event: EventFactory, n: int) -> list[tuple[int, dict[str, object]]]:
    """(ingest ms, event) pairs four a second; a quarter arrive two hours late."""
    base = 1_795_590_000_000
    make = make_event.configured(
        urls=tuple(f"/p{i}" for i in range(5)),
        users=51,
        referrers=(None, "a.example", "b.example"),
        sizes=(1, 9000),
        late_fraction=0.25,
        late_by_s=(2 * HOUR / 1000, 2 * HOUR / 1000),
    )
    return [(base + i * 250, make(at=base + i * 250)) for i in range(n)]


def test_registry_has_the_default_views() -> None:
    assert set(all_views()) == {
        "pageviews_by_url_hourly",
        "visitors_by_url_hourly",
        "bytes_by_referrer_daily",
    }
    with pytest.raises(NotFound, match="unknown view 'nope'"):
        get_view("nope")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"keys": ("colour",)}, "key 'colour' is not a field"),
        ({"measures": (Measure("s", "sum", "url"),)}, "sum reads a field of type int or float"),
        ({"measures": (Measure("c", "count", "url"),)}, "takes no field"),
        ({"measures": (Measure("m", "median", "bytes"),)}, "unknown kind"),  # type: ignore[arg-type]
        ({"bucket_s": 0}, "bucket_s must be positive"),
    ],
)
def test_bad_definitions_are_refused(kwargs: dict[str, object], reason: str) -> None:
    base: dict[str, object] = {
        "name": "v",
        "stream": "pageviews",
        "keys": ("url",),
        "bucket_s": 60,
        "measures": (Measure("c", "count"),),
    }
    with pytest.raises(DefinitionError, match=reason):
        ViewDef(**{**base, **kwargs})  # type: ignore[arg-type]


def test_fingerprint_changes_with_the_definition() -> None:
    v = get_view("pageviews_by_url_hourly")
    changed = ViewDef(v.name, v.stream, v.keys, 1800, v.measures)
    assert v.fingerprint != changed.fingerprint
    assert (
        v.fingerprint
        == ViewDef(v.name, v.stream, v.keys, v.bucket_s, v.measures, v.description).fingerprint
    )


@pytest.mark.parametrize("kind", ["count", "sum", "min", "max"])
def test_merge_is_a_commutative_monoid(kind: str) -> None:
    values = [3, 1, 4, 1, 5, None]
    rng = random.Random(1)
    for a, b in pairwise(values):
        assert merge(kind, a, b) == merge(kind, b, a)
    shuffled = values[:]
    rng.shuffle(shuffled)
    acc1 = acc2 = None if kind in ("min", "max") else 0
    for v in values:
        acc1 = merge(kind, acc1, v)
    for v in shuffled:
        acc2 = merge(kind, acc2, v)
    assert acc1 == acc2


def test_hll_union_is_order_free_and_close_to_exact() -> None:
    users = [f"user-{i}" for i in range(20_000)]
    a, b = hll_of(users[:12_000]), hll_of(users[8_000:])
    assert hll_estimate(hll_union([a, b])) == hll_estimate(hll_union([b, a]))
    assert abs(hll_estimate(hll_union([a, b])) - 20_000) <= 3 * hll_rse() * 20_000


@pytest.mark.parametrize("view_name", sorted(all_views()))
def test_aggregate_split_anywhere_equals_whole(view_name: str, make_event: EventFactory) -> None:
    """Any split of the records (batch side / speed side) merges to the same answer."""
    view = get_view(view_name)
    events = _timed(make_event, 400)
    whole = aggregate(view, events, 60)
    for cut in (0, 57, 200, 399):
        left, right = aggregate(view, events[:cut], 60), aggregate(view, events[cut:], 60)
        by_kb: dict[tuple[str, int], list[dict[str, object]]] = {}
        for part in (left, right):
            for (_w, key, bucket), row in part.items():
                by_kb.setdefault((key, bucket), []).append(row)
        whole_kb: dict[tuple[str, int], list[dict[str, object]]] = {}
        for (_w, key, bucket), row in whole.items():
            whole_kb.setdefault((key, bucket), []).append(row)
        assert by_kb.keys() == whole_kb.keys()
        for kb, parts in by_kb.items():
            assert _comparable(combine(view, parts)) == _comparable(combine(view, whole_kb[kb]))


def _comparable(row: dict[str, object]) -> dict[str, object]:
    """Sketch bytes may differ in internal order; their estimates may not."""
    return {k: hll_estimate(v) if isinstance(v, bytes) else v for k, v in row.items()}


def test_aggregate_matches_plain_python_oracle(make_event: EventFactory) -> None:
    view = get_view("pageviews_by_url_hourly")
    events = _timed(make_event, 300)
    got = aggregate(view, events, 60)
    want = oracle.measures_by_window(view, events, 60)  # {views, min_bytes, max_bytes}
    assert set(got) == set(want)
    for cell, row in want.items():
        assert got[cell] == row
    assert window_of(1_795_590_059_999, 60) == 1_795_590_000_000


SKETCHED = st.text(alphabet=st.sampled_from(["\x1f", "a", "\\", "\x00"]), max_size=4) | st.text(
    max_size=4
)


@given(SKETCHED, SKETCHED)
def test_hll_item_is_injective_and_counts_the_empty_string(a: str, b: str) -> None:
    assert (hll_item(a) == hll_item(b)) == (a == b)
    assert hll_item(a)  # DataSketches ignores "": every value must count, "" too
    assert hll_item(a) == a or a == "" or a.startswith(HLL_MARK)  # others keep their sketch
    assert round(hll_estimate(hll_of([a]))) == 1
    assert round(hll_estimate(hll_of([a, b]))) == (1 if a == b else 2)


def test_a_float_field_cannot_key_a_view_and_a_bool_key_reads_as_spark_casts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lambdalab import schema
    from lambdalab.errors import DefinitionError
    from lambdalab.schema import Field, Stream
    from views.definition import Measure, ViewDef, key_part

    typed = Stream(
        name="typed",
        fields=(Field("price", "float"), Field("ok", "bool"), Field("event_time", "timestamp")),
        id_field="price",
    )
    monkeypatch.setitem(schema.STREAMS, "typed", typed)
    with pytest.raises(DefinitionError, match="view v: key 'price' is a float field"):
        ViewDef("v", "typed", ("price",), 60, (Measure("n", "count"),))
    view = ViewDef("v", "typed", ("ok",), 60, (Measure("n", "count"),))
    assert view.key_of({"ok": True}) == "true"
    assert [key_part(False), key_part(None)] == ["false", "(none)"]


def test_hll_items_of_bools_match_spark_and_floats_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lambdalab import schema
    from lambdalab.errors import DefinitionError
    from lambdalab.schema import Field, Stream
    from views.compute import aggregate
    from views.definition import Measure, ViewDef, hll_of

    typed = Stream(
        name="typed",
        fields=(Field("price", "float"), Field("ok", "bool"), Field("event_time", "timestamp")),
        id_field="price",
    )
    monkeypatch.setitem(schema.STREAMS, "typed", typed)
    with pytest.raises(
        DefinitionError,
        match="measure 'p': hll reads a field of type string or int or bool or timestamp; "
        "field 'price' is float",
    ):
        ViewDef("v", "typed", ("ok",), 60, (Measure("p", "hll", "price"),))
    view = ViewDef("v", "typed", (), 60, (Measure("oks", "hll", "ok"),))
    event = {"price": 1.0, "ok": True, "event_time": "2026-01-01T00:00:00.000Z"}
    (row,) = aggregate(view, [(0, event)], 60).values()
    assert row["oks"] == hll_of(["true"])  # what Spark's cast to string feeds its sketch
