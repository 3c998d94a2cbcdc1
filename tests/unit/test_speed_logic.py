"""Pure parts of the speed layer: write planning, rebuild rule, horizon, metrics, reader."""

from __future__ import annotations

from typing import Any

from datasketches import hll_sketch
from prometheus_client import CollectorRegistry

from lambdalab.boundary import horizon
from lambdalab.paths import RedisKeys
from speed.metrics import SpeedMetrics
from speed.reader import _merge_windows
from speed.rebuild import needs_rebuild, rebuild_cut
from speed.store import merge_fields, plan_view
from views.compute import aggregate
from views.definition import Measure, ViewDef
from views.registry import all_views, get_view

VIEW = ViewDef(
    name="probe",
    stream="pageviews",
    keys=("url",),
    bucket_s=3600,
    measures=(
        Measure("views", "count"),
        Measure("total", "sum", "bytes"),
        Measure("low", "min", "bytes"),
        Measure("high", "max", "bytes"),
        Measure("users", "hll", "user_id"),
    ),
)


def _ev(url: str, user: str, size: int, minute: int) -> dict[str, Any]:
    return {
        "event_id": f"{url}{user}{minute}",
        "url": url,
        "user_id": user,
        "referrer": None,
        "bytes": size,
        "event_time": f"2024-05-01T10:{minute:02d}:00.000Z",
    }


def _rt(key: str) -> str:
    return f"rt:{key}"


def test_plan_merges_every_measure_with_stored_values() -> None:
    ingest = 1_714_557_600_000  # a window boundary
    records = [(ingest + 5, _ev("/a", "u1", 10, 1)), (ingest + 9, _ev("/a", "u2", 30, 2))]
    cells = aggregate(VIEW, records, 60)
    bucket = 1_714_557_600_000
    fld = RedisKeys.field
    old_users = hll_sketch(12)
    old_users.update("u9")
    current = {
        ("/a", fld(ingest, bucket, "views")): b"7",
        ("/a", fld(ingest, bucket, "total")): str(2**63 - 1).encode(),
        ("/a", fld(ingest, bucket, "low")): b"5",
        ("/a", fld(ingest, bucket, "high")): b"20",
        ("/a", fld(ingest, bucket, "users")): bytes(old_users.serialize_compact()),
    }
    plan = plan_view(VIEW, cells, current, _rt)
    put = plan.put["rt:/a"]
    assert put[fld(ingest, bucket, "views")] == "9"
    assert put[fld(ingest, bucket, "total")] == str(2**63 - 1 + 40)  # exact beyond int64
    assert put[fld(ingest, bucket, "low")] == "5"
    assert put[fld(ingest, bucket, "high")] == "30"
    est = hll_sketch.deserialize(put[fld(ingest, bucket, "users")]).get_estimate()
    assert round(est) == 3
    assert plan.windows == {ingest: {"/a"}}


def test_merge_fields_lists_every_measure_of_every_touched_cell() -> None:
    cells = aggregate(VIEW, [(60_000, _ev("/b", "u1", 1, 0)), (60_000, _ev("/b", "u1", 1, 0))], 60)
    (fields,) = merge_fields(VIEW, cells).values()
    assert sorted(f.rsplit("|", 1)[1] for f in fields) == ["high", "low", "total", "users", "views"]


def test_rebuild_rule() -> None:
    views = all_views()
    stored = {name: v.fingerprint for name, v in views.items()}
    assert needs_rebuild(5, stored, views) is None
    assert needs_rebuild(0, stored, views) is None  # offset 0 is an offset, not a loss
    assert "missing" in (needs_rebuild(None, stored, views) or "")
    assert "missing" in (needs_rebuild(None, {}, views) or "")
    changed = {**stored, "visitors_by_url_hourly": "old"}
    assert "visitors_by_url_hourly" in (needs_rebuild(0, changed, views) or "")
    assert rebuild_cut({"a": 120_000, "b": 60_000}) == 60_000
    assert rebuild_cut({"a": 120_000, "b": None}) is None
    assert rebuild_cut({}) is None


def test_horizon_is_the_previous_versions_cut() -> None:
    assert horizon([]) is None
    assert horizon([300]) is None
    assert horizon([300, 200, 100]) == 200


def test_metrics_rate_and_lag() -> None:
    m = SpeedMetrics(CollectorRegistry())
    m.batch(100, 2, now=0.0)
    assert m.batch(98, 0, now=2.0) == 100.0
    assert m.positions({0: 10, 1: 7}, {0: 15, 1: 7}) == 5
    assert m.registry.get_sample_value("lambdalab_speed_consumer_lag", {"partition": "0"}) == 5


def test_reader_merges_windows_since_the_cut_partitions_and_filters_buckets() -> None:
    f = RedisKeys.field
    h = 3_600_000
    first = {
        f(0, 0, "views"): b"4",
        f(60_000, 0, "views"): b"3",
        f(60_000, 0, "min_bytes"): b"7",
        f(120_000, 0, "views"): b"2",
        f(120_000, 0, "min_bytes"): b"5",
        f(120_000, 0, "max_bytes"): b"9",
        f(120_000, h, "views"): b"1",
    }
    # the same key's share from another partition: the same fields, merged, not overwritten
    second = {f(60_000, 0, "views"): b"10", f(60_000, 0, "min_bytes"): b"2"}
    raws = [{k.encode(): v for k, v in part.items()} for part in (first, second)]
    view = get_view("pageviews_by_url_hourly")
    got = _merge_windows(view, raws, 60_000, 0, h)
    assert got == {0: {"views": 15, "min_bytes": 2, "max_bytes": 9}}
    assert _merge_windows(view, raws[:1], 60_000, 0, h) == {
        0: {"views": 5, "min_bytes": 5, "max_bytes": 9}
    }
