"""One measure of every kind, through the real stack, against a plain-Python oracle.

A ``gauges`` stream with int, float, string and timestamp fields; a view keyed by site
with count, sum (int and float), min, max (int, float, timestamp), avg (int and float),
hll, theta (string and int) and quantiles (int and float). Events A go through Kafka into
batch version 1 (Spark), events B after its cut only into the speed layer (Python); the
batch rows, the realtime parts and the merged answer (``GET /views/{view}``) each equal
the oracle over the events they cover: exactly, except float sums and averages
(``math.isclose(rel_tol=1e-9)`` against ``math.fsum``, the documented exception) and HLL
(within two relative standard errors; theta and KLL are exact below their sizes).
``POST /sql/merged`` and ``/rows`` answer the new kinds, or refuse with a 422 naming the
measure -- never a 5xx.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from batch.reader import BatchReader
from batch.tasks import run_cycle
from ingest.producer import EventProducer
from lambdalab import schema
from lambdalab.schema import Field, Stream
from lambdalab.settings import Settings
from lambdalab.topics import ensure_topics
from serving.app import create_app
from speed.consumer import catch_up
from speed.reader import SpeedReader
from tests.twoparts import registered, short_windows
from views.definition import Measure, ViewDef
from views.measures import Kind

pytestmark = pytest.mark.integration

HOUR = 3_600_000
T0 = 1_772_359_200_000  # 2026-03-01T10:00:00Z
READ = {"X-API-Key": "dev-read-key"}
GAUGES = Stream(
    name="gauges",
    fields=(
        Field("event_id", "string"),
        Field("site", "string"),
        Field("n", "int", required=False),
        Field("x", "float", required=False),
        Field("user", "string", required=False),
        Field("at", "timestamp"),
    ),
    time_field="at",
)
QS = (0.0, 0.5, 0.9, 1.0)
NAME = "gauges_every_kind"
MEASURES = (
    Measure("events", "count"),
    Measure("n_sum", "sum", "n"),
    Measure("x_sum", "sum", "x"),
    Measure("n_min", "min", "n"),
    Measure("x_max", "max", "x"),
    Measure("first", "min", "at"),
    Measure("n_avg", "avg", "n"),
    Measure("x_avg", "avg", "x"),
    Measure("users_hll", "hll", "user"),
    Measure("users", "theta", "user", lg_k=10),
    Measure("ns", "theta", "n"),
    Measure("n_q", "quantiles", "n", k=200, quantiles=QS),
    Measure("x_q", "quantiles", "x", quantiles=QS),
)


@pytest.fixture
def ns(stack: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, ViewDef]]:
    """A fresh namespace with the gauges stream and the view over it registered."""
    monkeypatch.setitem(schema.STREAMS, "gauges", GAUGES)
    view = ViewDef(name=NAME, stream="gauges", keys=("site",), bucket_s=3600, measures=MEASURES)
    with short_windows(stack) as fresh, registered(view):
        yield fresh, view


def _events(seed: int, n: int) -> list[dict[str, Any]]:
    """Events over three hours from T0 with ints beyond int64 sums, floats, None, ''."""
    out = []
    for i in range(n):
        j = i * 7919 + seed
        out.append(
            {
                "event_id": f"g{seed}-{i}",
                "site": ["a", "b", ""][j % 3],
                "n": None if j % 7 == 0 else [2**62, -5, 0, 17, -(2**63)][j % 5],
                "x": None if j % 5 == 0 else [0.1, -0.0, 1e300, -2.5e-300, 3.75][j % 4] * (j % 9),
                "user": None if j % 11 == 0 else ["", "é", "u1", "u2", "😀"][j % 5] + str(j % 4),
                "at": _iso(T0 + (j * 7_919_000) % (3 * HOUR)),
            }
        )
    return out


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return schema.format_ts(datetime.fromtimestamp(ms / 1000, tz=UTC))


def _oracle(events: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (site, bucket) the answer every layer must give, in plain Python."""
    cells: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for e in events:
        ms = schema.parse_ts_ms(e["at"])
        cells.setdefault((e["site"], ms - ms % HOUR), []).append(e)
    return {cell: _answer(rows) for cell, rows in cells.items()}


def _answer(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ns = [r["n"] for r in rows if r["n"] is not None]
    xs = [r["x"] for r in rows if r["x"] is not None]
    users = {r["user"] for r in rows if r["user"] is not None}
    return {
        "events": len(rows),
        "n_sum": sum(ns),
        "x_sum": math.fsum(xs),
        "n_min": min(ns, default=None),
        "x_max": max(xs, default=None),
        "first": min(r["at"] for r in rows),
        "n_avg": sum(ns) / len(ns) if ns else None,
        "x_avg": math.fsum(xs) / len(xs) if xs else None,
        "users_hll": float(len(users)),
        "users": float(len(users)),
        "ns": float(len(set(ns))),
        "n_q": _quantiles(ns),
        "x_q": _quantiles(xs),
    }


def _quantiles(values: list[Any]) -> dict[str, Any]:
    """The inclusive quantile (smallest value of rank >= q) of exact data."""
    ordered = sorted(values)
    labels = ("p0", "p50", "p90", "p100")
    if not ordered:
        return dict.fromkeys(labels)
    return {
        label: ordered[max(0, math.ceil(q * len(ordered)) - 1)]
        for label, q in zip(labels, QS, strict=True)
    }


def _agrees(name: str, got: Any, want: Any) -> bool:
    if name in ("x_sum", "x_avg"):
        if want is None or got is None:
            return got is want
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-290)
    if name == "users_hll":
        return abs(got - want) <= 2 * 1.04 / 64 * max(1.0, want)
    return bool(got == want)


def _rendered(kinds: tuple[Kind, ...], row: dict[str, Any]) -> dict[str, Any]:
    return {k.name: k.render(k.merge_all([row.get(k.name)])) for k in kinds}


def _check(where: str, got: dict[str, Any], want: dict[str, Any]) -> None:
    for name, value in want.items():
        assert _agrees(name, got[name], value), (where, name, got[name], value)


def test_every_kind_through_batch_speed_and_merge(
    ns: tuple[Settings, ViewDef],
) -> None:
    from batch.spark import spark_session

    settings, view = ns

    ensure_topics(settings)
    before, after = _events(1, 150), _events(2, 90)
    producer = EventProducer(settings, GAUGES)
    spark = spark_session(settings, app_name="test-measure-kinds")
    try:
        producer.send_many(before)
        time.sleep(1.2)  # the next 1 s window boundary passes: the cut covers `before`
        report = run_cycle(settings, trino=True, views=[view], spark=spark)
        assert report["ok"], report
        producer.send_many(after)
    finally:
        producer.close()
    catch_up(settings, GAUGES, views={view.name: view})
    cut = int(report["cut_ms"])

    batch, speed = BatchReader(settings), SpeedReader(settings)
    version = batch.current(view.name)
    assert version is not None and version.cut_ms == cut
    for (site, bucket), want in _oracle(before).items():
        rows = batch.rows(view.name, version.version, site, bucket, bucket + HOUR)
        _check(f"batch {site} {bucket}", _rendered(view.kinds, rows[bucket]), want)
    for (site, bucket), want in _oracle(after).items():
        parts = speed.partials(view.name, site, cut, bucket, bucket + HOUR)
        _check(f"speed {site} {bucket}", _rendered(view.kinds, parts[bucket]), want)

    with TestClient(create_app(settings)) as client:
        for (site, bucket), want in _oracle(before + after).items():
            r = client.get(
                f"/views/{view.name}",
                params={"key": site, "from": _iso(bucket), "to": _iso(bucket + HOUR)},
                headers=READ,
            )
            assert r.status_code == 200, r.text
            (merged,) = r.json()["merged"]
            _check(f"merged {site} {bucket}", merged, want)
        _merged_sql_and_rows(client, view, before + after)


def _merged_sql_and_rows(client: TestClient, view: ViewDef, events: list[dict[str, Any]]) -> None:
    """``/sql/merged`` computes the new kinds from their parts; ``/rows`` orders or refuses."""
    whole = _answer(events)
    sql = (
        f"SELECT sum(n_avg_sum) / sum(n_avg_count) AS n_avg, theta_estimate(users) AS users, "
        f"theta_estimate(ns) AS ns, kll_quantile_bigint(n_q, 0.5) AS n_p50, "
        f"kll_quantile_double(x_q, 1.0) AS x_p100, hll_estimate(users_hll) AS users_hll "
        f"FROM {view.name}"
    )
    r = client.post("/sql/merged", json={"sql": sql}, headers=READ)
    assert r.status_code == 200, r.text
    got = dict(zip(r.json()["columns"], r.json()["rows"][0], strict=True))
    assert math.isclose(got["n_avg"], whole["n_avg"], rel_tol=1e-12)
    assert (got["users"], got["ns"]) == (whole["users"], whole["ns"])
    assert got["n_p50"] == whole["n_q"]["p50"]
    assert got["x_p100"] == whole["x_q"]["p100"]
    assert _agrees("users_hll", got["users_hll"], whole["users_hll"])

    span = {"from": _iso(T0), "to": _iso(T0 + 3 * HOUR), "rollup": "all"}
    r = client.get(f"/views/{view.name}/rows", params={**span, "order_by": "-n_avg"}, headers=READ)
    assert r.status_code == 200, r.text
    (row,) = r.json()["rows"]
    _check("rows", {k: v for k, v in row.items() if k in whole}, whole)
    for bad in ("n_q", "-first"):
        r = client.get(f"/views/{view.name}/rows", params={**span, "order_by": bad}, headers=READ)
        assert r.status_code == 422, r.text
        assert bad.lstrip("-") in r.json()["detail"]
