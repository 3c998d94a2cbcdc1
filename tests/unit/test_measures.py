"""The measure kinds' algebra, encodings and params, against plain-Python oracles.

Each kind, over every field type it accepts: its Python form over random values split in
three parts and merged in any order equals the form over all of them (associative,
commutative, identity) and the oracle; its Redis encoding round-trips; a definition with
params round-trips through ``to_dict``/``from_dict`` and a bad one is refused naming the
view, the measure and the field. Spark parity: tests/integration/test_measure_parity.py.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambdalab.errors import DefinitionError
from speed.store import decode_value, plan_view
from views.compute import aggregate, combine
from views.definition import Measure, ViewDef
from views.measures import (
    HLL_MARK,
    KINDS,
    Kind,
    Quantiles,
    kind_of,
    quantile_label,
    theta_intersection,
)

pytestmark = pytest.mark.unit

INT64 = st.integers(-(2**63), 2**63 - 1)
EDGE_INTS = st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63), 2**53 + 1, -(2**53) - 1])
INTS = st.one_of(INT64, EDGE_INTS)
FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e200, max_value=1e200),
    st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 1e-300, 1.5, -2.25]),
)
TEXTS = st.one_of(st.text(max_size=8), st.sampled_from(["", HLL_MARK, HLL_MARK + "a", "é", "😀"]))
TIMES = st.integers(0, 253_402_300_799_999).map(
    lambda ms: f"{ms // 1000:011d}"  # sortable stand-in for ISO text: compared as text
)
VALUES = {
    "int": INTS,
    "float": FLOATS,
    "string": TEXTS,
    "timestamp": TIMES,
    "bool": st.booleans(),
}
CASES = [
    ("count", None),
    ("sum", "int"),
    ("sum", "float"),
    ("min", "int"),
    ("min", "float"),
    ("min", "timestamp"),
    ("max", "int"),
    ("max", "float"),
    ("max", "timestamp"),
    ("avg", "int"),
    ("avg", "float"),
    ("hll", "string"),
    ("hll", "int"),
    ("hll", "bool"),
    ("theta", "string"),
    ("theta", "bool"),
    ("theta", "int"),
    ("theta", "float"),
    ("quantiles", "int"),
    ("quantiles", "float"),
]


def test_every_kind_is_covered() -> None:
    assert {kind for kind, _ in CASES} == set(KINDS)


def _kind(name: str, field_type: str | None) -> Kind:
    measure = Measure("m", name, None if field_type is None else "f")  # type: ignore[arg-type]
    return kind_of(measure, field_type)


def _fold(kind: Kind, values: list[Any]) -> Any:
    """The speed layer's form of ``values``: step per event, then finish."""
    acc = {kind.name: kind.identity()}
    step = kind.step()
    for v in values:
        step(acc, {"f": v})
    return kind.finish(acc[kind.name])


def _oracle(name: str, values: list[Any]) -> Any:
    """What the rendered answer must be, from the plain values."""
    present = [v for v in values if v is not None]
    if name == "count":
        return len(values)
    if name == "sum":
        return sum(present)
    if name in ("min", "max"):
        return (min if name == "min" else max)(present) if present else None
    if name == "avg":
        return sum(present) / len(present) if present else None
    if name in ("hll", "theta"):
        return float(len({str(v) if isinstance(v, str) else v for v in present}))
    return _exact_quantiles(present, (0.5, 0.95, 0.99))


def _exact_quantiles(values: list[Any], qs: tuple[float, ...]) -> dict[str, Any]:
    """KLL's inclusive quantile of exact data: the smallest value of rank >= q."""
    ordered = sorted(values)
    out = {}
    for q in qs:
        out[quantile_label(q)] = (
            None if not ordered else ordered[max(0, math.ceil(q * len(ordered)) - 1)]
        )
    return out


def _agree(name: str, field_type: str | None, got: Any, want: Any, scale: float = 0.0) -> bool:
    """Equal, or for float sums and averages within the rounding of a double sum.

    Summing n doubles in another order may differ by up to about n·ε·Σ|x| (``scale``):
    1.0 + 1e200 - 1e200 is 0.0 one way and 1.0 the other, so a relative tolerance alone
    cannot hold when values cancel.
    """
    if field_type == "float" and name in ("sum", "avg"):
        return got is want or math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-300 + 1e-12 * scale)
    if name == "hll":  # below ~lg_k items HLL is exact (coupon list)
        return abs(got - want) <= 0.01 * max(1.0, want)
    return bool(got == want)


@pytest.mark.parametrize(("name", "field_type"), CASES)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_merge_is_a_commutative_monoid_equal_to_the_oracle(
    name: str, field_type: str | None, data: st.DataObject
) -> None:
    values = VALUES.get(field_type or "int", INTS)
    parts = [
        data.draw(st.lists(st.one_of(st.none(), values), max_size=12), label=f"part{i}")
        for i in range(3)
    ]
    kind = _kind(name, field_type)
    a, b, c = (_fold(kind, p) for p in parts)
    whole = _fold(kind, parts[0] + parts[1] + parts[2])
    left = kind.merge(kind.merge(a, b), c)
    right = kind.merge(a, kind.merge(c, b))
    every = parts[0] + parts[1] + parts[2]
    scale = sum(abs(v) for v in every if isinstance(v, float))
    assert kind.render(left) == kind.render(right) or _agree(
        name, field_type, kind.render(left), kind.render(right), scale
    )
    assert kind.render(kind.merge(kind.identity(), whole)) == kind.render(whole)
    assert _agree(name, field_type, kind.render(left), _oracle(name, every), scale)
    merged_all = kind.render(kind.merge_all([a, None, b, c]))
    assert _agree(name, field_type, merged_all, kind.render(left), scale)
    if whole is not None:
        assert kind.render(kind.decode(_raw(kind.encode(whole)))) == kind.render(whole)


def _raw(encoded: bytes | str) -> bytes:
    """What Redis hands back for a value written with HSET."""
    return encoded if isinstance(encoded, bytes) else encoded.encode()


def test_int_sums_and_averages_are_exact_beyond_int64() -> None:
    big = [2**63 - 1] * 3
    assert _kind("sum", "int").render(_fold(_kind("sum", "int"), big)) == 3 * (2**63 - 1)
    avg = _kind("avg", "int")
    assert _fold(avg, [*big, None]) == (3 * (2**63 - 1), 3)  # kept exact, rendered once
    assert avg.render(_fold(avg, [*big, None])) == float(2**63 - 1)
    assert avg.decode(_raw(avg.encode((3 * 2**63, 3)))) == (3 * 2**63, 3)
    assert avg.render(avg.identity()) is None


def test_quantiles_render_named_labels_and_beyond_k_stay_within_rank_error() -> None:
    kind = kind_of(Measure("lat", "quantiles", "f", k=64, quantiles=(0.5, 0.999)), "int")
    assert isinstance(kind, Quantiles)
    values = list(range(10_000))
    rendered = kind.render(_fold(kind, values))
    assert set(rendered) == {"p50", "p99_9"}
    eps = kind.load(_fold(kind, values)).normalized_rank_error(False)
    for q, label in ((0.5, "p50"), (0.999, "p99_9")):
        rank = rendered[label] / len(values)  # values are 0..n-1: a value is its rank
        assert abs(rank - q) <= eps


def test_theta_intersection_counts_the_common_values() -> None:
    kind = _kind("theta", "string")
    a = _fold(kind, [f"u{i}" for i in range(100)])
    b = _fold(kind, [f"u{i}" for i in range(60, 200)])
    assert kind.render(theta_intersection([a, b])) == 40.0
    assert kind.render(kind.merge(a, b)) == 200.0


def test_empty_strings_count_in_sketches() -> None:
    for name in ("hll", "theta"):
        kind = _kind(name, "string")
        assert kind.render(_fold(kind, ["", HLL_MARK, "a"])) == pytest.approx(3, abs=0.01)


# --- definitions -----------------------------------------------------------------------


def _view(*measures: Measure) -> ViewDef:
    return ViewDef("v", "pageviews", ("url",), 3600, tuple(measures))


def test_params_round_trip_and_change_the_fingerprint() -> None:
    view = _view(
        Measure("q", "quantiles", "bytes", k=100, quantiles=(0.5, 0.9)),
        Measure("t", "theta", "user_id", lg_k=10),
        Measure("a", "avg", "bytes"),
    )
    again = ViewDef.from_dict(view.to_dict())
    assert again == view
    assert again.fingerprint == view.fingerprint
    other = _view(
        Measure("q", "quantiles", "bytes", k=100, quantiles=(0.5, 0.95)),
        Measure("t", "theta", "user_id", lg_k=10),
        Measure("a", "avg", "bytes"),
    )
    assert other.fingerprint != view.fingerprint
    assert "k" not in _view(Measure("c", "count")).to_dict()["measures"][0]


@pytest.mark.parametrize(
    ("measure", "reason"),
    [
        (Measure("q", "quantiles", "bytes", k=3), "measure 'q' \\(field 'bytes'\\): k must"),
        (
            Measure("q", "quantiles", "bytes", quantiles=(1.5,)),
            "measure 'q' \\(field 'bytes'\\): quantiles must",
        ),
        (
            Measure("q", "quantiles", "bytes", quantiles=()),
            "measure 'q' \\(field 'bytes'\\): quantiles",
        ),
        (Measure("t", "theta", "user_id", lg_k=40), "measure 't' \\(field 'user_id'\\): lg_k must"),
        (
            Measure("s", "sum", "bytes", lg_k=12),
            "measure 's' \\(field 'bytes'\\): sum takes no param 'lg_k'",
        ),
        (
            Measure("a", "avg", "url"),
            "measure 'a': avg reads a field of type int or float; field 'url' is string",
        ),
        (
            Measure("q", "quantiles", "user_id"),
            "measure 'q': quantiles reads .* field 'user_id' is string",
        ),
        (Measure("a", "avg", "nope"), "measure 'a' reads unknown field 'nope'"),
    ],
)
def test_bad_measures_are_refused_naming_view_measure_and_field(
    measure: Measure, reason: str
) -> None:
    with pytest.raises(DefinitionError, match=f"view v: {reason}"):
        _view(measure)


# --- the speed layer's path: aggregate, store, read back, merge, render --------------------


def test_speed_path_of_every_new_kind_equals_the_oracle() -> None:
    view = _view(
        Measure("mean", "avg", "bytes"),
        Measure("users", "theta", "user_id"),
        Measure("sizes", "quantiles", "bytes", quantiles=(0.0, 0.5, 1.0)),
    )
    hour = 1_714_557_600_000
    events: list[dict[str, Any]] = [
        {
            "url": "/a",
            "user_id": f"u{i % 7}",
            "bytes": (i * 37) % 101 - 50,
            "event_time": "2024-05-01T10:00:00.000Z",
        }
        for i in range(50)
    ]
    half = len(events) // 2
    stored: dict[tuple[str, str], bytes | None] = {}
    for chunk in (events[:half], events[half:]):  # two poll batches read-merge-written
        cells = aggregate(view, [(hour, e) for e in chunk], 60)
        plan = plan_view(view, cells, stored, lambda key: key)
        for key, fields in plan.put.items():
            for fld, value in fields.items():
                stored[(key, fld)] = _raw(value)
    parts = [
        {k.name: decode_value(k, raw) for k in view.kinds if fld.endswith(k.name)}
        for (_, fld), raw in stored.items()
    ]
    merged = combine(view, parts)
    got = {k.name: k.render(merged[k.name]) for k in view.kinds}
    sizes: list[int] = [e["bytes"] for e in events]
    assert got["mean"] == sum(sizes) / len(sizes)
    assert got["users"] == 7.0
    assert got["sizes"] == {"p0": min(sizes), "p50": sorted(sizes)[24], "p100": max(sizes)}
