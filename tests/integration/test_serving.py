"""The serving API against the real stack: availability modes, read-only SQL, key scopes.

Redis is made unavailable by pointing the settings at a closed port (the shared Redis is
never stopped); Trino, HDFS and Kafka are the real services of the local stack.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient
from kafka import KafkaProducer

from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.topics import dlq_key, ensure_topics
from serving.app import create_app
from tests.events import pageview

READ = {"X-API-Key": "dev-read-key"}
WRITE = {"X-API-Key": "dev-write-key"}
VIEW = "pageviews_by_url_hourly"
QUERY = {"key": "/a", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}
CLOSED_REDIS = "redis://127.0.0.1:1/0"


def _with(settings: Settings, **changes: object) -> Settings:
    """A copy of ``settings`` with dotted fields changed, e.g. ``api__availability=...``."""
    sections: dict[str, dict[str, object]] = {}
    for dotted, value in changes.items():
        section, name = dotted.split("__")
        sections.setdefault(section, {})[name] = value
    update = {s: getattr(settings, s).model_copy(update=v) for s, v in sections.items()}
    return settings.model_copy(update=update)


@pytest.fixture
def client(stack: Settings, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def test_redis_unavailable_consistent_mode_is_503(stack: Settings, settings: Settings) -> None:
    down = _with(settings, redis__url=CLOSED_REDIS, api__availability="consistent")
    with TestClient(create_app(down)) as client:
        r = client.get(f"/views/{VIEW}", params=QUERY, headers=READ)
    assert r.status_code == 503
    detail = r.json()["detail"]
    assert "realtime" in detail and "127.0.0.1:1" in detail and "consistent" in detail


def test_redis_unavailable_available_mode_is_partial(stack: Settings, settings: Settings) -> None:
    down = _with(settings, redis__url=CLOSED_REDIS, api__availability="available")
    with TestClient(create_app(down)) as client:
        r = client.get(f"/views/{VIEW}", params=QUERY, headers=READ)
        pipeline = client.get("/pipeline", headers=READ).json()
        metrics = client.get("/metrics").text
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["partial"] is True and body["missing"] == ["realtime"]
    assert body["version"] is None and body["merged"] == []
    assert "error" in pipeline["speed"] and "127.0.0.1:1" in pipeline["speed"]["error"]
    assert 'lambdalab_part_up{part="speed"} 0.0' in metrics
    assert 'lambdalab_query_partial_total{missing="realtime",view="' in metrics


def test_hdfs_unavailable_available_mode_is_partial(stack: Settings, settings: Settings) -> None:
    down = _with(settings, hdfs__webhdfs_url="http://127.0.0.1:1", api__availability="available")
    with TestClient(create_app(down)) as client:
        r = client.get(f"/views/{VIEW}", params=QUERY, headers=READ)
    assert r.status_code == 200, r.text
    assert r.json()["missing"] == ["batch"]


def test_sql_runs_read_only_queries_with_a_row_limit(stack: Settings, settings: Settings) -> None:
    limited = _with(settings, api__sql_row_limit=7)
    with TestClient(create_app(limited)) as client:
        r = client.post(
            "/sql", json={"sql": "SELECT x FROM UNNEST(sequence(1, 50)) AS t(x)"}, headers=READ
        )
        small = client.post("/sql", json={"sql": "SELECT 40 + 2 AS answer;"}, headers=READ)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["truncated"] is True and body["row_count"] == 7
    assert [row[0] for row in body["rows"]] == list(range(1, 8))
    assert small.json()["rows"] == [[42]] and small.json()["truncated"] is False
    assert small.json()["columns"] == ["answer"] and small.json()["schema"] == settings.namespace


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE SCHEMA hive.evil",
        "DROP TABLE pageviews",
        "INSERT INTO pageviews SELECT * FROM pageviews",
        "DELETE FROM pageviews",
        "ALTER TABLE pageviews RENAME TO x",
        "SELECT 1; DROP TABLE pageviews",
    ],
)
def test_sql_refuses_writes_and_ddl(client: TestClient, sql: str) -> None:
    r = client.post("/sql", json={"sql": sql}, headers=READ)
    assert r.status_code == 400
    assert "read-only" in r.json()["detail"] or "single statement" in r.json()["detail"]


def test_sql_errors_from_trino_are_400_json(client: TestClient) -> None:
    r = client.post("/sql", json={"sql": "SELECT no_such_column FROM no_such_table"}, headers=READ)
    assert r.status_code == 400
    assert "Trino refused" in r.json()["detail"]


def test_sql_with_trino_down_is_503_json(stack: Settings, settings: Settings) -> None:
    with TestClient(create_app(_with(settings, trino__port=1))) as client:
        r = client.post("/sql", json={"sql": "SELECT 1"}, headers=READ)
    assert r.status_code == 503 and "Trino" in r.json()["detail"]


def test_api_key_scopes_on_the_real_ingest(stack: Settings, settings: Settings) -> None:
    ensure_topics(settings)
    event = pageview()
    with TestClient(create_app(settings)) as client:
        assert client.post("/events", json=[event]).status_code == 401
        refused = client.post("/events", json=[event], headers=READ)
        accepted = client.post("/events", json=[event], headers=WRITE)
        write_reads = client.get("/views", headers=WRITE)
    assert refused.status_code == 403 and "write" in refused.json()["detail"]
    assert accepted.status_code == 200, accepted.text
    assert write_reads.status_code == 200


def test_health_pipeline_and_metrics_on_the_real_stack(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok", health
    pipeline = client.get("/pipeline", headers=READ).json()
    assert set(pipeline) >= {"ingest", "speed", "batch", "dead_letters"}
    assert pipeline["batch"][VIEW]["version"] is None
    for part in ("ingest", "speed", "dead_letters"):
        assert "error" not in pipeline[part], pipeline[part]
    text = client.get("/metrics").text
    assert 'lambdalab_part_up{part="speed"} 1.0' in text
    assert "lambdalab_dead_letters 0.0" in text


def test_dead_letters_are_counted_once_per_key(stack: Settings, settings: Settings) -> None:
    ensure_topics(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    letters = [
        (0, 5, "not valid JSON"),
        (0, 5, "not valid JSON"),
        (1, 9, "field 'url' is required"),
    ]
    for partition, offset, reason in letters:  # the first one reported twice (two layers)
        value = {
            "reason": reason,
            "topic": settings.topic_for(PAGE_VIEWS.name),
            "partition": partition,
            "offset": offset,
            "ingest_ms": 1,
            "value_b64": "",
        }
        producer.send(
            settings.dlq_topic,
            key=dlq_key(settings.topic_for(PAGE_VIEWS.name), partition, offset),
            value=orjson.dumps(value),
            headers=[("reason", reason.encode())],
        )
    producer.flush()
    producer.close()
    with TestClient(create_app(settings)) as client:
        dead = client.get("/pipeline", headers=READ).json()["dead_letters"]
        text = client.get("/metrics").text
    assert dead == {"total": 2, "by_reason": {"not valid JSON": 1, "field 'url' is required": 1}}
    assert "lambdalab_dead_letters 2.0" in text


def test_sql_timeout_is_enforced_by_trino(stack: Settings, settings: Settings) -> None:
    slow = (
        "SELECT count(*) FROM UNNEST(sequence(1, 10000)) a(x) "
        "CROSS JOIN UNNEST(sequence(1, 10000)) b(y) CROSS JOIN UNNEST(sequence(1, 1000)) c(z) "
        "WHERE x + y + z < 0"
    )
    with TestClient(create_app(_with(settings, api__sql_timeout_s=1.0))) as client:
        started = time.monotonic()
        r = client.post("/sql", json={"sql": slow}, headers=READ)
    assert r.status_code == 504, r.text
    assert "sql_timeout_s" in r.json()["detail"] and time.monotonic() - started < 15
