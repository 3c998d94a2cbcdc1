"""The query API on the real stack: every query form equals the oracle over all events.

One namespace with 1-second ingest windows and one Spark session serve the module. A
two-field view (url, referrer) with every measure kind is registered for it. Events A are
produced, landed and built into batch version 1 (cut after A); events B are produced after
the cut, so they are only in the speed layer. Each query form of ``/views/{view}/rows``
and ``/views/{view}/keys`` (multi-field keys, equality/set/prefix filters, group-by
subsets, rollups, top-N, HLL ordering, pagination, key listing) must equal
tests/oracle.py over A + B; and so must every answer while version 2 publishes, and after
events C (speed layer only) when the speed layer lost Redis and rebuilt from Kafka.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from batch.reader import BatchReader
from batch.tasks import run_cycle
from ingest.producer import EventProducer
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from serving.app import create_app
from speed.consumer import catch_up
from speed.reader import SpeedReader
from tests import oracle
from tests.namespaces import drop_redis_keys
from tests.twoparts import HOUR, T0, events, load, registered, short_windows, view_def
from views.definition import ViewDef, hll_rse

SPAN = {"from": "2026-03-01T08:00:00Z", "to": "2026-03-01T14:00:00Z"}
LO, HI = T0 - 2 * HOUR, T0 + 4 * HOUR
READ = {"X-API-Key": "dev-read-key"}
VIEW = view_def("queries_by_url_referrer")


@dataclass
class Loaded:
    """The module's namespace, its events (A: batch and speed, B: speed only), the cut."""

    settings: Settings
    batch_events: list[dict[str, Any]]
    speed_events: list[dict[str, Any]]
    cut_ms: int

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.batch_events + self.speed_events


@pytest.fixture(scope="module")
def ns(stack: Settings) -> Iterator[Settings]:
    with short_windows(stack) as fresh:
        yield fresh


@pytest.fixture(scope="module")
def view() -> Iterator[ViewDef]:
    with registered(VIEW) as registered_view:
        yield registered_view


@pytest.fixture(scope="module")
def spark(stack: Settings) -> Iterator[Any]:
    from batch.spark import spark_session

    session = spark_session(stack, app_name="test-queries")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def loaded(ns: Settings, view: ViewDef, spark: Any) -> Loaded:
    before, after, cut_ms = load(ns, view, spark)
    return Loaded(ns, before, after, cut_ms)


@pytest.fixture(scope="module")
def client(loaded: Loaded) -> TestClient:
    return TestClient(create_app(loaded.settings))


def _rows(client: TestClient, params: dict[str, Any]) -> dict[str, Any]:
    r = client.get(f"/views/{VIEW.name}/rows", params={**SPAN, **params}, headers=READ)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _assert_rows_equal(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """The same rows in the same order; an HLL estimate within 3 standard errors (and, at
    these small counts, rounding to the exact count, which is what keeps HLL order exact)."""
    assert [(r["key"], r["bucket_ms"]) for r in got] == [(r["key"], r["bucket_ms"]) for r in want]
    for g, w in zip(got, want, strict=True):
        for m in VIEW.measures:
            if m.kind == "hll":
                exact = len(w[m.name])
                assert abs(g[m.name] - exact) <= max(3 * hll_rse() * exact, 0.5), (g, exact)
                assert round(g[m.name]) == exact
            else:
                assert g[m.name] == w[m.name], (g["key"], g["bucket_ms"], m.name)


def _expected(events: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    """The oracle's answer to the query ``params`` (the API's parameters, read here)."""
    group_by = tuple(_listed(params.get("group_by")))
    widths = {None: HOUR, "2h": 2 * HOUR, "1d": 24 * HOUR, "all": None}
    equals = {f: set(_listed(params[f])) for f in VIEW.keys if f in params}
    prefixes = {f: _listed(params[f"{f}.prefix"]) for f in VIEW.keys if f"{f}.prefix" in params}
    found = oracle.selected(
        VIEW,
        events,
        span=(LO, HI),
        width_ms=widths[params.get("rollup")],
        group_by=group_by,
        equals=equals,
        prefixes=prefixes,
    )
    order = [(t.lstrip("-"), t.startswith("-")) for t in _listed(params.get("order_by"))]
    return oracle.ordered(found, group_by, order)[: params.get("limit", 100)]


def _listed(value: Any) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def test_the_split_is_real_and_the_provenance_names_it(loaded: Loaded, client: TestClient) -> None:
    body = _rows(client, {"rollup": "all"})
    assert (body["version"], body["cut_ms"]) == (1, loaded.cut_ms)
    assert sum(body["speed_offsets"].values()) == len(loaded.events)
    assert body["rows"][0]["views"] == len(loaded.events)
    batch = BatchReader(loaded.settings).cells(VIEW.name, 1, LO, HI)
    realtime = SpeedReader(loaded.settings).view_snapshot(VIEW.name, loaded.cut_ms, LO, HI)
    count = [
        sum(r["views"] for b in part.values() for r in b.values())
        for part in (batch, realtime.cells)
    ]
    assert count == [len(loaded.batch_events), len(loaded.speed_events)]


FORMS = [
    {"group_by": ["url", "referrer"], "limit": 1000},  # every cell of the two-field key
    {"url": "/p/1", "group_by": ["url", "referrer"]},
    {"url": ["/p/1", "/q", "\\(none)"], "group_by": "url"},  # a set; the literal "(none)"
    {"url.prefix": "/p/1", "group_by": "url", "rollup": "all"},  # /p/1 and /p/10
    {"referrer": "(none)", "rollup": "all"},  # a missing referrer
    {"referrer": "\\(none)", "url.prefix": "/p/", "group_by": "url"},  # the literal "(none)"
    {},  # no group: every key merged, per bucket
    {"group_by": "referrer", "rollup": "2h"},
    {"group_by": ["referrer", "url"], "rollup": "1d"},
    {"group_by": "url", "rollup": "all", "order_by": "-views", "limit": 3},  # top-N
    {"group_by": "url", "rollup": "all", "order_by": ["-visitors", "bucket"], "limit": 3},
    {"group_by": ["url", "referrer"], "order_by": ["-total", "bucket"], "limit": 5},
    {"group_by": "referrer", "order_by": ["low", "-bucket"]},
]


@pytest.mark.parametrize("params", FORMS, ids=[str(f) for f in FORMS])
def test_each_query_form_equals_the_oracle(
    loaded: Loaded, client: TestClient, params: dict[str, Any]
) -> None:
    _assert_rows_equal(_rows(client, params)["rows"], _expected(loaded.events, params))


def test_paging_returns_every_row_once_in_order(loaded: Loaded, client: TestClient) -> None:
    query = {"group_by": ["url", "referrer"], "order_by": "-visitors"}
    seen, cursor = [], None
    for _ in range(100):
        body = _rows(client, {**query, "limit": 4, **({"cursor": cursor} if cursor else {})})
        assert body["changed_since_first_page"] == []
        seen += body["rows"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    _assert_rows_equal(seen, _expected(loaded.events, {**query, "limit": 1000}))


def test_keys_are_listed_by_prefix(loaded: Loaded, client: TestClient) -> None:
    r = client.get(f"/views/{VIEW.name}/keys", params={"prefix": "/p/1"}, headers=READ)
    every = {VIEW.key_of(e) for e in loaded.events}
    assert [k["key"] for k in r.json()["keys"]] == sorted(k for k in every if k.startswith("/p/1"))
    r = client.get(f"/views/{VIEW.name}/keys", params={"referrer": "google"}, headers=READ)
    fields = [k["fields"] for k in r.json()["keys"]]
    assert fields == sorted(
        (
            {"url": VIEW.parts_of(k)["url"], "referrer": "google"}
            for k in every
            if k.endswith("\x1fgoogle")
        ),
        key=lambda f: f["url"],
    )


def test_answers_stay_exact_while_a_version_publishes_and_after_a_speed_restart(
    loaded: Loaded, client: TestClient, view: ViewDef, spark: Any
) -> None:
    params = {"group_by": ["url", "referrer"], "rollup": "all", "order_by": "-views"}
    want = _expected(loaded.events, {**params, "limit": 1000})
    time.sleep(1.2)  # the next cut covers every event: version 2 moves them all to batch
    answers: list[Any] = []
    publishing = threading.Event()
    path, query_params = f"/views/{VIEW.name}/rows", {**SPAN, **params, "limit": 1000}

    def query() -> None:  # luigi runs in the main thread only: the queries run beside it
        while not publishing.is_set():
            answers.append(client.get(path, params=query_params, headers=READ))

    reader = threading.Thread(target=query)
    reader.start()
    try:
        report = run_cycle(loaded.settings, trino=False, views=[view], spark=spark)
    finally:
        publishing.set()
        reader.join()
    assert report["ok"], report
    assert answers and all(r.status_code == 200 for r in answers), answers[-1:]
    for r in answers:
        _assert_rows_equal(r.json()["rows"], want)
    assert {r.json()["version"] for r in answers} >= {1}, len(answers)  # before the swap
    time.sleep(1.1)  # the API caches the version pointer for 1 s
    deadline = time.monotonic() + 30  # and serves version 1 until its copy of 2 is built
    while (body := _rows(client, {**params, "limit": 1000}))["version"] != 2:
        _assert_rows_equal(body["rows"], want)
        assert time.monotonic() < deadline, "version 2 never became current"
        time.sleep(0.1)
    _assert_rows_equal(body["rows"], want)

    later = events(3, 40, "c")  # after version 2's cut: only the speed layer has them
    producer = EventProducer(loaded.settings, PAGE_VIEWS)
    producer.send_many(later)
    producer.close()
    catch_up(loaded.settings, PAGE_VIEWS, views={view.name: view})
    drop_redis_keys(loaded.settings)  # the speed layer loses Redis, then restarts
    catch_up(loaded.settings, PAGE_VIEWS, views={view.name: view})  # rebuilds from Kafka
    body = _rows(client, {**params, "limit": 1000})
    _assert_rows_equal(body["rows"], _expected(loaded.events + later, {**params, "limit": 1000}))
    assert sum(body["speed_offsets"].values()) == len(loaded.events) + len(later)
    assert body["version"] == 2
