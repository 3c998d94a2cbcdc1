"""The serving merge against the plain-Python oracle: batch @ cut ⊕ realtime since cut.

Events get an ingest time and an event time; the batch part is every event with ingest
time < cut, the realtime part every event at or after it (both aggregated by tests/oracle.py,
independently of views.compute); the merged answer must equal the oracle over all events,
for every bucket, whatever the cut.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from datasketches import hll_sketch

from serving.merge import Provenance, answer, freshness, iso_ms
from tests import oracle
from tests.events import EventFactory
from views.definition import HLL_LG_K, Measure, ViewDef
from views.registry import get_view

HOUR = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _timed(make_event: EventFactory, n: int) -> list[tuple[int, dict[str, Any]]]:
    """(ingest ms, event) pairs, one a second from T0; a fifth arrive 1 to 4 hours late."""
    make = make_event.configured(
        urls=("/p0", "/p1", "/p2"),
        users=40,
        sizes=(1, 10_000),
        late_fraction=0.2,
        late_by_s=(HOUR / 1000, 4 * HOUR / 1000),
    )
    return [(T0 + i * 1_000, make(at=T0 + i * 1_000)) for i in range(n)]


def _oracle(view: ViewDef, events: list[dict[str, Any]], key: str) -> dict[int, dict[str, Any]]:
    """The oracle's rows of one key per bucket (hll kept as the set of distinct values)."""
    return oracle.by_bucket(oracle.measures(view, events), key)


def _as_part(view: ViewDef, rows: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The stored form of oracle rows: hll sets become serialized sketches."""
    out = {}
    for b, row in rows.items():
        stored = dict(row)
        for m in view.measures:
            if m.kind == "hll":
                sk = hll_sketch(HLL_LG_K)
                for v in row[m.name]:
                    sk.update(v)
                stored[m.name] = bytes(sk.serialize_compact())
        out[b] = stored
    return out


@pytest.mark.parametrize("view_name", ["pageviews_by_url_hourly", "visitors_by_url_hourly"])
@pytest.mark.parametrize("cut_index", [0, 137, 400, 800])
def test_merged_answer_equals_oracle_over_all_events(
    view_name: str, cut_index: int, make_event: EventFactory
) -> None:
    view = get_view(view_name)
    timed = _timed(make_event, 800)
    cut = T0 + cut_index * 1_000
    key = "/p1"
    batch = _as_part(view, _oracle(view, [e for i, e in timed if i < cut], key))
    realtime = _as_part(view, _oracle(view, [e for i, e in timed if i >= cut], key))
    prov = Provenance(version=3, cut_ms=cut, freshness_ms=timed[-1][0])
    got = answer(view, key, batch, realtime, prov)
    expected = _oracle(view, [e for _, e in timed], key)
    assert [r["bucket_ms"] for r in got["merged"]] == sorted(expected)
    for row in got["merged"]:
        want = expected[row["bucket_ms"]]
        for m in view.measures:
            if m.kind == "hll":
                exact = len(want[m.name])
                assert row[m.name] == pytest.approx(exact, rel=0.05, abs=1)
            else:
                assert row[m.name] == want[m.name], (row["bucket"], m.name)


def test_provenance_names_version_cut_parts_and_offsets() -> None:
    view = get_view("bytes_by_referrer_daily")
    batch = {T0: {"bytes": 10, "views": 1}}
    realtime = {T0: {"bytes": 5, "views": 2}, T0 + 86_400_000: {"bytes": 7, "views": 1}}
    prov = Provenance(
        version=2, cut_ms=T0 + 60_000, freshness_ms=T0 + 90_000, speed_offsets={1: 40, 0: 12}
    )
    got = answer(view, "ref", batch, realtime, prov)
    assert got["version"] == 2
    assert got["cut"] == "2026-01-01T00:01:00.000Z"
    assert got["batch"] == {str(T0): {"bytes": 10, "views": 1}}
    assert got["realtime"][str(T0 + 86_400_000)] == {"bytes": 7, "views": 1}
    assert got["merged"][0] == {"bucket": iso_ms(T0), "bucket_ms": T0, "bytes": 15, "views": 3}
    assert got["freshness"] == "2026-01-01T00:01:30.000Z"
    assert got["speed_offsets"] == {"0": 12, "1": 40}
    assert got["partial"] is False and got["missing"] == []


def test_hll_sketch_is_returned_base64_when_asked() -> None:
    view = ViewDef("v", "pageviews", ("url",), 3600, (Measure("u", "hll", "user_id"),))
    part = _as_part(view, {T0: {"u": {"a", "b", "c"}}})
    got = answer(view, "k", part, {}, Provenance(), sketches=True)
    blob = base64.b64decode(got["merged"][0]["u_sketch"])
    assert hll_sketch.deserialize(blob).get_estimate() == pytest.approx(3, abs=0.01)
    assert got["merged"][0]["u"] == pytest.approx(3, abs=0.01)


def test_freshness_is_the_cut_when_realtime_is_missing_or_older() -> None:
    assert freshness(Provenance(cut_ms=100, freshness_ms=50)) == 100
    assert freshness(Provenance(cut_ms=100, freshness_ms=150)) == 150
    assert freshness(Provenance(cut_ms=100, freshness_ms=150, missing=["realtime"])) == 100
    assert freshness(Provenance()) is None


def test_min_max_without_values_stay_null() -> None:
    view = get_view("pageviews_by_url_hourly")
    got = answer(
        view, "k", {T0: {"views": 0, "min_bytes": None, "max_bytes": None}}, {}, Provenance()
    )
    assert got["merged"][0]["min_bytes"] is None
