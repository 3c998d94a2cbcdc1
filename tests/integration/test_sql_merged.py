"""SQL over the merged views on the real stack: every answer equals the oracle over all events.

One namespace with 1-second ingest windows; a two-field view (url, referrer) with every
measure kind. Events A are built into batch version 1 (cut after A), events B are only in
the speed layer. ``POST /sql/merged`` statements -- group-by, filters on key fields and
buckets, order and limit, HLL estimates of the merged sketch -- must equal tests/oracle.py
over A + B and name the version, cut and speed offsets they read; and so must every answer
while version 2 publishes. Bad statements answer 400 naming the problem, never 5xx.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from batch.tasks import run_cycle
from lambdalab.settings import Settings
from serving.app import create_app
from tests import oracle
from tests.twoparts import HOUR, T0, load, registered, short_windows, view_def
from views.definition import ViewDef

pytestmark = pytest.mark.integration
READ = {"X-API-Key": "dev-read-key"}
VIEW = view_def("sqlm_by_url_referrer")
MEASURES = (
    "sum(views) AS views, sum(total) AS total, min(low) AS low, max(high) AS high, "
    "hll_estimate(visitors) AS visitors"
)


@dataclass
class Loaded:
    settings: Settings
    events: list[dict[str, Any]]
    cut_ms: int


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

    session = spark_session(stack, app_name="test-sql-merged")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def loaded(ns: Settings, view: ViewDef, spark: Any) -> Loaded:
    before, after, cut_ms = load(ns, view, spark)
    return Loaded(ns, before + after, cut_ms)


@pytest.fixture(scope="module")
def client(loaded: Loaded) -> TestClient:
    return TestClient(create_app(loaded.settings))


def _sql(client: TestClient, sql: str) -> dict[str, Any]:
    r = client.post("/sql/merged", json={"sql": sql}, headers=READ)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _expected(
    events: list[dict[str, Any]], group: tuple[str, ...], keep: Any = None
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Oracle rows per group of raw field values (None when missing; 'bucket' = its ms)."""
    rows: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for (key, bucket), row in oracle.measures(VIEW, events).items():
        values = dict(zip(VIEW.keys, _raw(key), strict=True)) | {"bucket": bucket}
        if keep is None or keep(values):
            rows[tuple(values[g] for g in group)].append(row)
    out = {}
    for g, parts in rows.items():
        lows = [p["low"] for p in parts if p["low"] is not None]
        highs = [p["high"] for p in parts if p["high"] is not None]
        out[g] = {
            "views": sum(p["views"] for p in parts),
            "total": sum(p["total"] for p in parts),
            "low": min(lows) if lows else None,
            "high": max(highs) if highs else None,
            "visitors": len(set().union(*(p["visitors"] for p in parts))),
        }
    return out


def _raw(key: str) -> list[str | None]:
    from serving.mergedsql import field_value

    return [field_value(part) for part in key.split("\x1f")]


def _as_dicts(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]


def _assert_group_rows(
    got: list[dict[str, Any]], want: dict[tuple[Any, ...], dict[str, Any]], group: tuple[str, ...]
) -> None:
    """Same groups, exact integers, HLL estimates rounding to the exact small counts."""
    assert {tuple(r[g] for g in group) for r in got} == set(want)
    for r in got:
        expected = want[tuple(r[g] for g in group)]
        for name in ("views", "total", "low", "high"):
            assert r[name] == expected[name], (r, expected)
        assert round(r["visitors"]) == expected["visitors"], (r, expected)


def test_group_by_every_key_field_equals_the_oracle(loaded: Loaded, client: TestClient) -> None:
    body = _sql(
        client,
        f"SELECT url, referrer, {MEASURES} FROM {VIEW.name} GROUP BY url, referrer",
    )
    group = ("url", "referrer")
    _assert_group_rows(_as_dicts(body), _expected(loaded.events, group), group)
    read = body["views"][VIEW.name]
    assert read["version"] == 1 and read["cut_ms"] == loaded.cut_ms
    assert sum(read["speed_offsets"].values()) == len(loaded.events)
    assert type(_as_dicts(body)[0]["total"]) is int and not read["partial"]


def test_filters_order_and_limit_equal_the_oracle(loaded: Loaded, client: TestClient) -> None:
    body = _sql(
        client,
        f"SELECT url, {MEASURES} FROM {VIEW.name} "
        "WHERE url LIKE '/p/%' AND referrer IS NOT NULL AND referrer <> 'google' "
        "AND bucket >= TIMESTAMP '2026-03-01 11:00:00' "
        "GROUP BY url ORDER BY views DESC, url LIMIT 2",
    )
    want = _expected(
        loaded.events,
        ("url",),
        lambda v: (
            v["url"] is not None
            and v["url"].startswith("/p/")
            and v["referrer"] not in (None, "google")
            and v["bucket"] >= T0 + HOUR
        ),
    )
    top = sorted(want.items(), key=lambda kv: (-kv[1]["views"], kv[0][0]))[:2]
    got = _as_dicts(body)
    _assert_group_rows(got, dict(top), ("url",))
    assert [r["url"] for r in got] == [g[0] for g, _ in top]


def test_hll_and_buckets_equal_the_oracle(loaded: Loaded, client: TestClient) -> None:
    body = _sql(
        client,
        f"SELECT bucket_ms AS bucket, {MEASURES} FROM {VIEW.name} WHERE referrer IS NULL "
        "GROUP BY bucket_ms ORDER BY visitors DESC, bucket",
    )
    want = _expected(loaded.events, ("bucket",), lambda v: v["referrer"] is None)
    got = _as_dicts(body)
    _assert_group_rows(got, want, ("bucket",))
    assert [r["visitors"] for r in got] == sorted((r["visitors"] for r in got), reverse=True)


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        (f"SELECT url FROM {VIEW.name} WHERE", "Parser"),
        (f"SELECT nope FROM {VIEW.name}", "nope"),
        (f"DELETE FROM {VIEW.name}", "DELETE"),
        ("SELECT * FROM read_csv('/etc/passwd')", "reads no view"),
        (f"SELECT * FROM {VIEW.name}, read_csv('/etc/passwd')", "Permission"),
        (f"SELECT 1 FROM {VIEW.name}; SELECT 2", "single statement"),
    ],
)
def test_bad_statements_answer_400_naming_the_problem(
    loaded: Loaded, client: TestClient, sql: str, names: str
) -> None:
    r = client.post("/sql/merged", json={"sql": sql}, headers=READ)
    assert r.status_code == 400, r.text
    assert names in r.json()["detail"]


def test_rows_beyond_the_limit_are_cut(loaded: Loaded, client: TestClient) -> None:
    api = loaded.settings.api.model_copy(update={"sql_row_limit": 3})
    limited = TestClient(create_app(loaded.settings.model_copy(update={"api": api})))
    r = limited.post("/sql/merged", json={"sql": f"SELECT * FROM {VIEW.name}"}, headers=READ)
    assert r.status_code == 200 and r.json()["truncated"] and r.json()["row_count"] == 3


def test_answers_stay_exact_while_a_version_publishes(
    loaded: Loaded, client: TestClient, view: ViewDef, spark: Any
) -> None:
    sql = f"SELECT url, referrer, {MEASURES} FROM {VIEW.name} GROUP BY url, referrer"
    want = _expected(loaded.events, ("url", "referrer"))
    time.sleep(1.2)  # the next cut covers every event: version 2 moves them all to batch
    answers: list[Any] = []
    publishing = threading.Event()

    def query() -> None:  # luigi runs in the main thread only: the queries run beside it
        while not publishing.is_set():
            answers.append(client.post("/sql/merged", json={"sql": sql}, headers=READ))

    reader = threading.Thread(target=query)
    reader.start()
    try:
        report = run_cycle(loaded.settings, trino=False, views=[view], spark=spark)
    finally:
        publishing.set()
        reader.join()
    assert report["ok"], report
    deadline = time.monotonic() + 30  # until the API has built its copy of version 2
    while (body := _sql(client, sql))["views"][VIEW.name]["version"] != 2:
        answers.append(body)
        assert time.monotonic() < deadline, "version 2 never became current"
        time.sleep(0.2)
    answers.append(body)
    for r in answers:
        got = r if isinstance(r, dict) else r.json()
        assert isinstance(r, dict) or r.status_code == 200, r.text
        _assert_group_rows(_as_dicts(got), want, ("url", "referrer"))
    assert {1, 2} <= {_version(r) for r in answers}, len(answers)


def _version(answer: Any) -> int:
    body = answer if isinstance(answer, dict) else answer.json()
    return int(body["views"][VIEW.name]["version"])
