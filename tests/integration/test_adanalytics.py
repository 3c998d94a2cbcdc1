"""The ad-analytics example project end to end: YSB's pipeline on the real stack.

The project (examples/adanalytics) is loaded the way every process loads a project, from
its directory. Its campaigns dimension is loaded with ``lambdalab dim load``; ad events with
epoch-millisecond times, float latencies and bot flags go through ``POST
/streams/ad_events/events`` and straight to Kafka; a batch cycle covers the first part and
the speed layer the rest. Every cell of all three views -- the batch version, the speed
layer's part and the merged HTTP answer -- equals the plain-Python oracle of
``tests/adevents.py`` (filter, lookup and derived fields written out there): counts and
maxima exactly, theta and KLL exactly where the sketches are exact (fewer distinct values
than their size), HLL within its error, float sums within double rounding. Then campaigns
move: a new dimension version, a new batch version, and answers that use the new mapping
and name it in their provenance.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from batch.reader import BatchReader
from batch.tasks import run_cycle
from ingest.producer import EventProducer
from lambdalab import project, schema
from lambdalab.settings import Settings
from lambdalab.topics import ensure_topics
from serving.app import create_app
from speed.consumer import catch_up
from speed.reader import SpeedReader
from tests import adevents
from tests.twoparts import short_windows
from views import dimension, registry
from views.definition import ViewDef

QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
VIEWS = ("campaign_views_10s", "campaign_latency_minute", "events_by_kind_hourly")


@pytest.fixture
def adproject(monkeypatch: pytest.MonkeyPatch) -> dict[str, ViewDef]:
    """The example project as this process's project (restored afterwards)."""
    folder = adevents.PROJECT
    for name, stream in project.load_streams(folder).items():
        monkeypatch.setitem(schema.STREAMS, name, stream)
    monkeypatch.setattr(dimension, "DIMENSIONS", {})
    monkeypatch.setattr(registry, "_project", folder)
    monkeypatch.setattr(registry, "_coded_cache", None)
    views = registry.all_views()
    assert sorted(views) == sorted(VIEWS)
    return views


@pytest.fixture(scope="module")
def spark(stack: Settings) -> Iterator[Any]:
    from batch.spark import spark_session

    session = spark_session(stack, app_name="test-adanalytics")
    yield session
    session.stop()


def _load_campaigns(ns: Settings, path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from lambdalab import cli

    monkeypatch.setattr("batch.dimcli.get_settings", lambda: ns)
    result = CliRunner().invoke(cli.app, ["dim", "load", "campaigns", str(path)])
    assert result.exit_code == 0, result.output
    return result.output


def _post(client: TestClient, ns: Settings, events: list[dict[str, Any]]) -> None:
    write = {"X-API-Key": ns.api.write_keys[0]}
    for start in range(0, len(events), 500):
        ok = client.post(
            "/streams/ad_events/events", json=events[start : start + 500], headers=write
        )
        assert ok.status_code == 200, ok.text
    late = {**events[0], "event_id": "bad", "event_time": "yesterday"}
    bad = client.post("/streams/ad_events/events", json=[late], headers=write)
    assert bad.status_code == 422 and "event_time" in bad.text  # nothing of it is kept


def _send(ns: Settings, events: list[dict[str, Any]]) -> None:
    producer = EventProducer(ns, schema.get_stream("ad_events"))
    try:
        producer.send_many(events)
    finally:
        producer.close()


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def _answers(
    client: TestClient, ns: Settings, view: str, keys: set[str], span: tuple[int, int]
) -> tuple[dict[tuple[str, int], dict[str, Any]], list[Any]]:
    """Merged rows by (key, bucket) over HTTP, and each answer's provenance."""
    read = {"X-API-Key": ns.api.read_keys[0]}
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    provenance = []
    for key in sorted(keys):
        params = {"key": key, "from": _iso(span[0]), "to": _iso(span[1])}
        got = client.get(f"/views/{view}", params=params, headers=read)
        assert got.status_code == 200, got.text
        body = got.json()
        provenance.append(body.get("dimensions"))
        for row in body["merged"]:
            rows[(key, row["bucket_ms"])] = row
    return rows, provenance


def _check_views_10s(got: dict, want: dict) -> None:
    assert {c: r["views"] for c, r in got.items() if r["views"]} == {
        c: r["views"] for c, r in want.items()
    }


def _check_latency(got: dict, want: dict) -> None:
    assert {c for c, r in got.items() if r["events"]} == set(want)
    for cell, w in want.items():
        row = got[cell]
        assert row["events"] == w["events"], cell
        assert row["users"] == float(len(w["users"])), cell  # theta: exact below its size
        lat = w["latencies"]
        assert row["latency_max"] == (max(lat) if lat else None), cell
        if lat:
            assert math.isclose(row["latency_avg"], math.fsum(lat) / len(lat), rel_tol=1e-9)
            assert len(lat) < 200  # below k: KLL keeps every value, so its quantiles are exact
            assert row["latency"] == {
                label: adevents.exact_quantile(lat, q) for label, q in QUANTILES.items()
            }, cell
        else:
            assert row["latency_avg"] is None
            assert row["latency"] == {"p50": None, "p95": None, "p99": None}


def _check_kinds(got: dict, want: dict) -> None:
    assert {c for c, r in got.items() if r["events"]} == set(want)
    for cell, w in want.items():
        row = got[cell]
        assert row["events"] == w["events"], cell
        exact = len(w["users"])
        assert abs(row["visitors"] - exact) <= 3 * 0.0163 * exact + 1, cell  # HLL lg_k 12
        total, scale = math.fsum(w["latencies"]), sum(w["latencies"])
        assert math.isclose(row["latency_total"], total, rel_tol=1e-9, abs_tol=1e-9 * scale)


CHECKS = {
    "campaign_views_10s": (adevents.campaign_views_10s, _check_views_10s),
    "campaign_latency_minute": (adevents.campaign_latency_minute, _check_latency),
    "events_by_kind_hourly": (None, _check_kinds),
}


def _want(view: str, events: list[dict[str, Any]], camp: dict[str, str]) -> dict:
    if view == "events_by_kind_hourly":
        return adevents.events_by_kind_hourly(events)
    oracle = CHECKS[view][0]
    assert oracle is not None
    return oracle(events, camp)


def _check_all(
    client: TestClient, ns: Settings, events: list[dict[str, Any]], camp: dict[str, str]
) -> list[Any]:
    times = [e["event_time"] for e in events]
    span = (min(times) - min(times) % 3_600_000, max(times) + 3_600_000)
    provenance = []
    for view in VIEWS:
        want = _want(view, events, camp)
        got, prov = _answers(client, ns, view, {k for k, _ in want}, span)
        CHECKS[view][1](got, want)
        provenance += [(view, p) for p in prov]
    return provenance


def test_the_ad_analytics_project_end_to_end(
    stack: Settings,
    spark: Any,
    adproject: dict[str, ViewDef],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    camp = adevents.campaigns()
    ads = sorted(camp)
    views = list(adproject.values())
    stream = schema.get_stream("ad_events")
    with short_windows(stack) as ns, TestClient(create_app(ns)) as client:
        ensure_topics(ns)
        assert "version 1 (loaded" in _load_campaigns(ns, adevents.CAMPAIGNS_CSV, monkeypatch)
        now = int(time.time() * 1000)
        first = adevents.ad_events(1200, now, ads, seed=1)
        _post(client, ns, first[:600])  # epoch-ms times through the HTTP edge
        _send(ns, first[600:])  # and raw to Kafka: the consumers normalise them alike
        time.sleep(1.2)  # a 1 s window boundary passes: the cut covers `first`
        cycle = run_cycle(ns, trino=False, views=views, spark=spark)
        assert cycle["ok"], cycle
        assert all(cycle["views"][v]["status"] == "published" for v in VIEWS), cycle
        second = adevents.ad_events(800, now, ads, seed=2)
        _send(ns, second)  # after the cut: only the speed layer has them
        catch_up(ns, stream, views=adproject)

        # each layer on its own: the batch version holds `first`, the speed layer `second`
        batch, speed = BatchReader(ns), SpeedReader(ns)
        view = adproject["campaign_views_10s"]
        version = batch.current(view.name)
        assert version is not None
        span = (now - 3_600_000, now + 3_600_000)
        batch_cells = batch.cells(view.name, version.version, *span)
        assert {(k, b): r["views"] for k, rows in batch_cells.items() for b, r in rows.items()} == {
            c: r["views"] for c, r in adevents.campaign_views_10s(first, camp).items()
        }
        speed_cells = speed.view_snapshot(view.name, cycle["cut_ms"], *span).cells
        assert {(k, b): r["views"] for k, rows in speed_cells.items() for b, r in rows.items()} == {
            c: r["views"] for c, r in adevents.campaign_views_10s(second, camp).items()
        }

        # the merged answers over HTTP, every view, every cell
        provenance = _check_all(client, ns, first + second, camp)
        enriched = [p for v, p in provenance if v != "events_by_kind_hourly"]
        assert all(p == {"batch": {"campaigns": 1}, "realtime": {"campaigns": 1}} for p in enriched)
        assert any(k == "(none)" for k, _ in adevents.campaign_views_10s(first, camp))

        # campaigns move: ads of the first campaign go to the second one
        moved = dict(camp)
        first_campaign, second_campaign = sorted(set(camp.values()))[:2]
        for ad, c in camp.items():
            if c == first_campaign:
                moved[ad] = second_campaign
        path = tmp_path / "campaigns-v2.csv"
        path.write_text("ad_id,campaign_id\n" + "".join(f"{a},{c}\n" for a, c in moved.items()))
        assert "version 2 (loaded" in _load_campaigns(ns, path, monkeypatch)
        time.sleep(1.2)
        again = run_cycle(ns, trino=False, views=views, spark=spark)
        assert again["ok"], again
        report = again["views"]["campaign_views_10s"]
        assert report["status"] == "published" and report["version"] == 2, again
        third = adevents.ad_events(300, now, ads, seed=3)
        _send(ns, third)
        catch_up(ns, stream, views=adproject)  # rebuilds the enriched views: a new version
        provenance = _check_all(client, ns, first + second + third, moved)
        enriched = [p for v, p in provenance if v != "events_by_kind_hourly"]
        assert all(p is None for v, p in provenance if v == "events_by_kind_hourly")

        # Kappa's check replays the log through the speed code, enriching as it does
        from lab.kappa import compare

        for name in ("campaign_views_10s", "campaign_latency_minute"):
            report = compare(ns, adproject[name])
            assert report.records == len(first + second + third) and report.cells
            assert report.mismatches == [], report.mismatches[:3]
        assert all(p == {"batch": {"campaigns": 2}, "realtime": {"campaigns": 2}} for p in enriched)
