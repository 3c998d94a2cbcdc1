"""Values at the edges of every type, counted the same by both layers and the merge.

A view keyed on a string and a timestamp field, with an exact sum and a distinct count of
a timestamp: int64 extremes whose sum overflows int64, the literal ``(none)`` beside a
missing value, the key separator and the escape character inside values, a timestamp
rendered as a key. Spark (batch) and Python (speed) must produce the same keys and the
same values, equal to a plain-Python oracle, and Trino must return the exact sum.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from batch.archiver import land
from batch.reader import BatchReader
from batch.tasks import run_cycle
from batch.trino_tables import TrinoTables, version_table
from ingest.producer import EventProducer
from lambdalab.schema import PAGE_VIEWS, parse_ts_ms
from lambdalab.settings import Settings
from lambdalab.topics import ensure_topics
from serving.app import create_app
from serving.query import merged_query
from speed.consumer import catch_up
from speed.reader import SpeedReader
from views import registry
from views.definition import Measure, ViewDef, hll_estimate

BIG = 2**63 - 1
VIEW = ViewDef(
    name="edge_values",
    stream="pageviews",
    keys=("url", "referrer", "event_time"),
    bucket_s=3600,
    measures=(
        Measure("n", "count"),
        Measure("total", "sum", "bytes"),
        Measure("low", "min", "bytes"),
        Measure("times", "hll", "event_time"),
    ),
)
ROWS = [  # (url, referrer, bytes, event_time)
    ("(none)", None, BIG, "2026-03-01T10:15:00.000Z"),
    ("(none)", None, BIG, "2026-03-01T10:15:00.000Z"),
    ("(none)", "(none)", -(2**63), "2026-03-01T10:15:00.000Z"),
    ("a\x1fb", "c", 1, "2026-03-01T10:20:00.123Z"),
    ("a", "b\x1fc", 2, "2026-03-01T10:20:00.123Z"),
    ("a\\", "\\(none)", 3, "1900-01-01T00:00:00.000Z"),
    ("", "", 0, "8999-12-31T23:59:59.999Z"),
    ("ü\u2028\U0001f600", None, -1, "2026-03-01T10:59:59.999Z"),
]


@pytest.fixture
def view(monkeypatch: pytest.MonkeyPatch) -> ViewDef:
    known = registry.all_views()
    monkeypatch.setattr(registry, "all_views", lambda: {**known, VIEW.name: VIEW})
    return VIEW


def _events() -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"e{i}",
            "url": url,
            "user_id": "u",
            "referrer": ref,
            "bytes": size,
            "event_time": moment,
        }
        for i, (url, ref, size, moment) in enumerate(ROWS)
    ]


def _oracle() -> dict[tuple[Any, ...], dict[str, Any]]:
    cells: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(
        lambda: {"n": 0, "total": 0, "low": None, "times": set()}
    )
    for url, ref, size, moment in ROWS:
        ms = parse_ts_ms(moment)
        cell = cells[(url, ref, moment, ms - ms % 3_600_000)]
        cell["n"] += 1
        cell["total"] += size
        cell["low"] = size if cell["low"] is None else min(cell["low"], size)
        cell["times"].add(moment)
    return dict(cells)


def test_both_layers_agree_at_the_edges_of_every_type(
    stack: Settings, settings: Settings, view: ViewDef
) -> None:
    ensure_topics(settings)
    producer = EventProducer(settings, PAGE_VIEWS)
    producer.send_many(_events())
    producer.close()
    land(settings, PAGE_VIEWS)
    cut = (int(datetime.now(UTC).timestamp() * 1000) // 60_000 + 2) * 60_000
    report = run_cycle(settings, cut_ms=cut, views=[view], trino=True, allow_future_cut=True)
    assert report["ok"], report
    catch_up(settings, PAGE_VIEWS, views={view.name: view})

    oracle = _oracle()
    keys = {view.key_of({"url": u, "referrer": r, "event_time": t}) for u, r, t, _b in oracle}
    assert len(keys) == len(oracle)  # no two key tuples share a rendered key
    batch, speed = BatchReader(settings), SpeedReader(settings)
    version = batch.current(view.name)
    assert version is not None
    for (url, ref, moment, bucket), want in oracle.items():
        key = view.key_of({"url": url, "referrer": ref, "event_time": moment})
        span = (bucket, bucket + 3_600_000)
        rows = batch.rows(view.name, version.version, key, *span)
        realtime = speed.partials(view.name, key, 0, *span)
        for got in (rows[bucket], realtime[bucket]):
            assert (got["n"], got["total"], got["low"]) == (want["n"], want["total"], want["low"])
        assert hll_estimate(rows[bucket]["times"]) == hll_estimate(realtime[bucket]["times"])
        assert round(hll_estimate(rows[bucket]["times"])) == len(want["times"])
        answer = merged_query(settings, batch, speed, view, key, span)
        (merged,) = answer["merged"]
        assert (merged["n"], merged["total"]) == (want["n"], want["total"]), answer

    key = view.key_of({"url": "(none)", "referrer": None, "event_time": ROWS[0][3]})
    with TestClient(create_app(settings)) as client:
        r = client.get(
            f"/views/{view.name}",
            params={"key": key, "from": "2026-03-01T10:00:00Z", "to": "2026-03-01T11:00:00Z"},
            headers={"X-API-Key": "dev-read-key"},
        )
    assert r.status_code == 200, r.text
    assert r.json()["merged"][0]["total"] == 2 * BIG  # JSON carries the exact integer

    _, trino_rows = TrinoTables(settings).query(
        f'SELECT url, referrer, total FROM "{version_table(view.name, version.version)}"'
    )
    by_key = {(u, r): int(t) for u, r, t in trino_rows}
    assert by_key[("(none)", None)] == 2 * BIG
    assert by_key[("(none)", "(none)")] == -(2**63)
    assert by_key[("a\x1fb", "c")] == 1 and by_key[("a", "b\x1fc")] == 2
