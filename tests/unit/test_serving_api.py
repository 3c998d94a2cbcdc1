"""The serving API with its readers swapped for fakes: merge wiring, availability, errors.

No services: the batch and speed readers, and the Kafka probe, are replaced through
``app.dependency_overrides``; the expected answers are computed here in plain Python.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lambdalab.errors import ServiceUnavailable
from lambdalab.settings import Settings, load_settings
from serving.app import create_app
from serving.deps import get_batch, get_hdfs, get_probe, get_speed

HOUR = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
READ = {"X-API-Key": "dev-read-key"}
VIEW = "pageviews_by_url_hourly"


@dataclass
class Info:
    view: str
    version: int
    cut_ms: int
    path: str = "/x"
    lineage: dict[str, Any] = field(default_factory=lambda: {"cut_ms": 0, "inputs": []})


class FakeBatch:
    def __init__(self, info: Info | None, rows: dict[int, dict[str, Any]], down: bool = False):
        self.info, self._rows, self.down = info, rows, down
        self.calls: list[tuple[Any, ...]] = []

    def _check(self) -> None:
        if self.down:
            msg = "HDFS (fake) did not answer"
            raise ServiceUnavailable(msg)

    def versions(self, view: str) -> list[Info]:
        self._check()
        return [self.info] if self.info else []

    def current(self, view: str) -> Info | None:
        self._check()
        self.calls.append(("current", view))
        return self.info

    def rows(self, view: str, version: int, key: str, lo: int, hi: int) -> dict[int, Any]:
        self._check()
        self.calls.append(("rows", view, version, key, lo, hi))
        return {b: r for b, r in self._rows.items() if lo <= b < hi}


class FakeSpeed:
    def __init__(
        self,
        rows: dict[int, dict[str, Any]],
        down: bool = False,
        offsets: list[dict[int, int]] | None = None,
    ):
        self._rows, self.down = rows, down
        self._offsets = offsets or [{0: 5}]
        self.calls: list[tuple[Any, ...]] = []

    def _check(self) -> None:
        if self.down:
            msg = "Redis (fake) did not answer"
            raise ServiceUnavailable(msg)

    def partials(self, view: str, key: str, since: int, lo: int, hi: int) -> dict[int, Any]:
        self._check()
        self.calls.append(("partials", view, key, since, lo, hi))
        return {b: r for b, r in self._rows.items() if lo <= b < hi}

    def snapshot(self, view: str, key: str, since: int, lo: int, hi: int) -> Any:
        rows = self.partials(view, key, since, lo, hi)
        return SimpleNamespace(
            rows=rows, freshness_ms=self.freshness_ms(view), offsets=self.offsets(view)
        )

    def freshness_ms(self, view: str) -> int | None:
        self._check()
        return T0 + 3 * HOUR

    def offsets(self, view: str) -> dict[int, int]:
        self._check()
        return self._offsets.pop(0) if len(self._offsets) > 1 else self._offsets[0]

    def stream_offsets(self, stream: str) -> dict[int, int]:
        return self.offsets(stream)

    def status(self, stream: str) -> dict[str, Any]:
        self._check()
        return {"offsets": self.stream_offsets(stream), "freshness_ms": T0 + 3 * HOUR}


class FakeProbe:
    def end_offsets(self, topic: str) -> dict[int, int]:
        return {0: 9}

    def dead_letters(self) -> dict[str, Any]:
        return {"total": 2, "by_reason": {"not valid JSON": 2}}


class FakeHdfs:
    """The master dataset as WebHDFS lists it: offsets 0..4 of partition 0 landed."""

    def status(self, path: str, strict: bool = True) -> dict[str, Any]:
        return {"type": "DIRECTORY"}

    def list(self, path: str) -> list[str]:
        if path.endswith("ingest_date=2026-01-01"):
            return ["w1767225600000-p000-o000000000000-000000000004.parquet", "_tmp"]
        return ["ingest_date=2026-01-01", "_manifests"]


def _client(settings: Settings, batch: FakeBatch, speed: FakeSpeed) -> TestClient:
    app = create_app(settings)
    app.dependency_overrides[get_batch] = lambda: batch
    app.dependency_overrides[get_speed] = lambda: speed
    app.dependency_overrides[get_probe] = FakeProbe
    app.dependency_overrides[get_hdfs] = FakeHdfs
    return TestClient(app, raise_server_exceptions=False)


def _settings(availability: str = "consistent") -> Settings:
    base = load_settings()
    return base.model_copy(
        update={"api": base.api.model_copy(update={"availability": availability})}
    )


BATCH_ROWS = {
    T0: {"views": 3, "min_bytes": 10, "max_bytes": 90},
    T0 + HOUR: {"views": 1, "min_bytes": 50, "max_bytes": 50},
}
RT_ROWS = {
    T0 + HOUR: {"views": 2, "min_bytes": 5, "max_bytes": 60},
    T0 + 2 * HOUR: {"views": 4, "min_bytes": 7, "max_bytes": 8},
}
QUERY = {"key": "/a", "from": "2026-01-01T00:30:00Z", "to": "2026-01-01T05:00:00Z"}


def test_merged_answer_uses_one_version_and_its_cut() -> None:
    batch = FakeBatch(Info(VIEW, 7, T0 + HOUR + 60_000), BATCH_ROWS)
    speed = FakeSpeed(RT_ROWS)
    r = _client(_settings(), batch, speed).get(f"/views/{VIEW}", params=QUERY, headers=READ)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c[0] for c in batch.calls] == ["current", "rows"]
    assert batch.calls[1][2:] == (7, "/a", T0, T0 + 5 * HOUR)  # 'from' aligned to its bucket
    assert speed.calls == [("partials", VIEW, "/a", T0 + HOUR + 60_000, T0, T0 + 5 * HOUR)]
    merged = {row["bucket_ms"]: row for row in body["merged"]}
    assert merged[T0 + HOUR] == {
        "bucket": "2026-01-01T01:00:00.000Z",
        "bucket_ms": T0 + HOUR,
        "views": 3,
        "min_bytes": 5,
        "max_bytes": 60,
    }
    assert merged[T0]["views"] == 3 and merged[T0 + 2 * HOUR]["views"] == 4
    assert body["version"] == 7 and body["cut"] == "2026-01-01T01:01:00.000Z"
    assert body["freshness"] == "2026-01-01T03:00:00.000Z"
    assert body["speed_offsets"] == {"0": 5} and body["partial"] is False


def test_without_batch_version_realtime_is_read_since_zero() -> None:
    speed = FakeSpeed(RT_ROWS)
    r = _client(_settings(), FakeBatch(None, {}), speed).get(
        f"/views/{VIEW}", params=QUERY, headers=READ
    )
    assert r.status_code == 200
    assert speed.calls[0][3] == 0
    assert r.json()["version"] is None and r.json()["batch"] == {}


def test_realtime_part_is_one_snapshot_with_its_offsets() -> None:
    speed = FakeSpeed(RT_ROWS, offsets=[{0: 1}, {0: 2}, {0: 2}])
    r = _client(_settings(), FakeBatch(None, {}), speed).get(
        f"/views/{VIEW}", params=QUERY, headers=READ
    )
    assert len(speed.calls) == 1 and r.json()["speed_offsets"] == {"0": 1}


@pytest.mark.parametrize("down", ["batch", "realtime"])
def test_consistent_mode_answers_503_json(down: str) -> None:
    client = _client(
        _settings("consistent"),
        FakeBatch(Info(VIEW, 1, T0), BATCH_ROWS, down=down == "batch"),
        FakeSpeed(RT_ROWS, down=down == "realtime"),
    )
    r = client.get(f"/views/{VIEW}", params=QUERY, headers=READ)
    assert r.status_code == 503
    assert down in r.json()["detail"] and "consistent" in r.json()["detail"]


def test_available_mode_answers_partial_without_realtime() -> None:
    client = _client(
        _settings("available"),
        FakeBatch(Info(VIEW, 1, T0 + HOUR), BATCH_ROWS),
        FakeSpeed(RT_ROWS, down=True),
    )
    body = client.get(f"/views/{VIEW}", params=QUERY, headers=READ).json()
    assert body["partial"] is True and body["missing"] == ["realtime"]
    assert {r["bucket_ms"]: r["views"] for r in body["merged"]} == {T0: 3, T0 + HOUR: 1}
    assert body["freshness_ms"] == T0 + HOUR


def test_available_mode_answers_partial_without_batch() -> None:
    speed = FakeSpeed(RT_ROWS)
    client = _client(_settings("available"), FakeBatch(None, {}, down=True), speed)
    body = client.get(f"/views/{VIEW}", params=QUERY, headers=READ).json()
    assert body["missing"] == ["batch"] and speed.calls[0][3] == 0
    assert sum(r["views"] for r in body["merged"]) == 6


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("get", f"/views/{VIEW}?key=a", {}, 401),
        ("get", f"/views/{VIEW}?key=a", {"X-API-Key": "nope"}, 403),
        ("post", "/events", READ, 403),
        ("get", "/views", {}, 401),
        ("post", "/sql", {}, 401),
        ("get", "/pipeline", {}, 401),
        ("get", "/pipeline/history", {}, 401),
        ("get", "/nowhere", READ, 404),
        ("delete", "/views", READ, 405),
        ("get", f"/views/{VIEW}", READ, 422),
        ("get", f"/views/{VIEW}?key=a&from=yesterday", READ, 422),
        ("get", f"/views/{VIEW}?key=a&from=2026-01-01T00:00:00", READ, 422),
        (
            "get",
            f"/views/{VIEW}?key=a&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            READ,
            422,
        ),
        (
            "get",
            f"/views/{VIEW}?key=a&from=2000-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            READ,
            422,
        ),
        ("get", "/views/no_such_view?key=a", READ, 404),
        ("get", "/views/no_such_view/lineage", READ, 404),
        ("post", "/sql", READ, 422),
    ],
)
def test_every_error_is_json_with_a_message(
    method: str, path: str, headers: dict[str, str], status: int
) -> None:
    client = _client(_settings(), FakeBatch(None, {}), FakeSpeed({}))
    r = client.request(method.upper(), path, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    detail = r.json()["detail"]
    assert isinstance(detail, str) and len(detail) > 8


def test_lineage_without_version_is_404_and_with_version_is_the_lineage() -> None:
    client = _client(_settings(), FakeBatch(None, {}), FakeSpeed({}))
    assert "no published" in client.get(f"/views/{VIEW}/lineage", headers=READ).json()["detail"]
    info = Info(VIEW, 4, T0, lineage={"cut_ms": T0, "inputs": ["/m/a.parquet"]})
    client = _client(_settings(), FakeBatch(info, {}), FakeSpeed({}))
    body = client.get(f"/views/{VIEW}/lineage", headers=READ).json()
    assert body["version"] == 4 and body["lineage"]["inputs"] == ["/m/a.parquet"]


def test_unexpected_exception_is_500_json() -> None:
    class Broken(FakeBatch):
        def current(self, view: str) -> Info | None:
            msg = "boom"
            raise RuntimeError(msg)

    client = _client(_settings(), Broken(None, {}), FakeSpeed({}))
    r = client.get(f"/views/{VIEW}", params=QUERY, headers=READ)
    assert r.status_code == 500 and "boom" in r.json()["detail"]


def test_views_catalog_lists_definitions_versions_and_age() -> None:
    client = _client(_settings(), FakeBatch(Info(VIEW, 2, T0), {}), FakeSpeed({}))
    body = {v["name"]: v for v in client.get("/views", headers=READ).json()}
    assert body[VIEW]["version"] == 2 and body[VIEW]["cut"] == "2026-01-01T00:00:00.000Z"
    assert body[VIEW]["age_s"] > 0 and body[VIEW]["definition"]["keys"] == ["url"]


def test_metrics_cover_serving_speed_batch_ingest_and_dead_letters() -> None:
    client = _client(_settings(), FakeBatch(Info(VIEW, 2, T0), BATCH_ROWS), FakeSpeed(RT_ROWS))
    client.get(f"/views/{VIEW}", params=QUERY, headers=READ)
    text = client.get("/metrics").text
    for needle in (
        'lambdalab_query_latency_seconds_count{view="pageviews_by_url_hourly"} 1.0',
        'lambdalab_http_requests_total{method="GET",route="/views/{view}",status="200"} 1.0',
        'lambdalab_speed_lag_records{partition="0",stream="pageviews"} 4.0',
        'lambdalab_batch_version{view="pageviews_by_url_hourly"} 2.0',
        "lambdalab_batch_age_seconds",
        "lambdalab_speed_freshness_age_seconds",
        'lambdalab_ingest_log_end_offset{partition="0",stream="pageviews"} 9.0',
        "lambdalab_dead_letters 2.0",
        'lambdalab_archiver_pending_records{stream="pageviews"} 4.0',
    ):
        assert needle in text, needle


def test_pipeline_shows_the_archiver_and_its_history_endpoint_the_samples() -> None:
    client = _client(_settings(), FakeBatch(Info(VIEW, 2, T0), {}), FakeSpeed({}))
    body = client.get("/pipeline", headers=READ).json()
    assert body["streams"]["pageviews"]["archiver"] == {
        "landed": {"0": 5},
        "pending": {"0": 4},
        "pending_total": 4,
    }
    history = client.app.state.history  # type: ignore[attr-defined]
    history.add(T0, {"pageviews": body["streams"]["pageviews"]})
    answer = client.get("/pipeline/history", headers=READ).json()
    assert answer["interval_s"] == 5 and answer["capacity"] == 180
    assert answer["points"] == [
        {
            "at": "2026-01-01T00:00:00.000Z",
            "at_ms": T0,
            "streams": {
                "pageviews": {
                    "records": 9,
                    "rate_per_s": None,
                    "lag_total": 4,
                    "freshness_age_s": body["streams"]["pageviews"]["speed"]["freshness_age_s"],
                }
            },
        }
    ]


def test_openapi_documents_every_route() -> None:
    spec = create_app(_settings()).openapi()
    for path in (
        "/views",
        "/views/{view}",
        "/views/{view}/lineage",
        "/sql",
        "/metrics",
        "/health",
        "/pipeline",
        "/pipeline/history",
        "/dashboard",
    ):
        assert path in spec["paths"], path
    assert "MergedAnswer" in spec["components"]["schemas"]


def test_version_pointer_is_cached_briefly_and_then_reread() -> None:
    from serving.deps import PointerCache

    batch = FakeBatch(Info(VIEW, 1, T0), BATCH_ROWS)
    cached = PointerCache(batch, ttl_s=0.2)
    assert cached.current(VIEW).version == 1
    batch.info = Info(VIEW, 2, T0 + HOUR)
    assert cached.current(VIEW).version == 1  # within the TTL: the same (version, cut) pair
    time.sleep(0.25)
    assert cached.current(VIEW).version == 2
    assert [c[0] for c in batch.calls] == ["current", "current"]


def test_sums_beyond_int64_are_answered_exactly() -> None:
    """orjson refuses ints beyond 64 bits; the answer falls back to exact JSON, never a 500."""
    huge = {T0: {"views": 2, "min_bytes": 2**62, "max_bytes": 2**62}}
    speed = FakeSpeed({T0 + HOUR: {"views": 1, "min_bytes": 2**63 + 5, "max_bytes": 2**64 + 7}})
    r = _client(_settings(), FakeBatch(Info(VIEW, 1, T0 + HOUR), huge), speed).get(
        f"/views/{VIEW}", params=QUERY, headers=READ
    )
    assert r.status_code == 200, r.text
    rows = {row["bucket_ms"]: row for row in r.json()["merged"]}
    assert rows[T0 + HOUR]["max_bytes"] == 2**64 + 7 and rows[T0]["min_bytes"] == 2**62
