"""POST /events against the real Kafka and HDFS: accepted once, landed once, byte for byte.

The oracle is the list of events this test generates (their JSON bytes), never the code
under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from batch.archiver import land
from batch.master import read_master
from ingest.generator import GeneratorConfig, generate
from ingest.http import router
from ingest.producer import EventProducer
from lambdalab.hdfs import webhdfs
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from serving.auth import require
from tests.events import pageview

WRITE = {"X-API-Key": "dev-write-key"}
N = 1500


def _app(settings: Settings) -> FastAPI:
    app = FastAPI()
    app.state.settings = settings
    app.state.ingest = EventProducer(settings, PAGE_VIEWS)
    app.include_router(router, dependencies=[Depends(require("write"))])  # as serving.app does
    return app


@pytest.fixture
def client(stack: Settings, settings: Settings) -> Iterator[TestClient]:
    app = _app(settings)
    with TestClient(app) as c:
        yield c
    app.state.ingest.close()


def _master(settings: Settings) -> pa.Table:
    return read_master(webhdfs(settings), settings, "pageviews")


def test_n_events_over_http_land_exactly_once(client: TestClient, settings: Settings) -> None:
    start = datetime(2025, 5, 1, tzinfo=UTC)
    events = [p.event for p in generate(GeneratorConfig(seed=17), start, N)]
    offsets = []
    for i in range(0, N, 500):  # JSON arrays, then the last chunk as NDJSON
        chunk = events[i : i + 500]
        if i + 500 >= N:
            body = b"".join(orjson.dumps(e) + b"\n" for e in chunk)
            r = client.post(
                "/events", content=body, headers={**WRITE, "Content-Type": "application/x-ndjson"}
            )
        else:
            r = client.post("/events", content=orjson.dumps(chunk), headers=WRITE)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == len(chunk)
        offsets += r.json()["offsets"]
    assert len({(o["partition"], o["offset"]) for o in offsets}) == N

    first = land(settings, PAGE_VIEWS)
    table = _master(settings)
    assert first["rows"] == N == table.num_rows
    coords = set(zip(table["partition"].to_pylist(), table["offset"].to_pylist(), strict=True))
    assert len(coords) == N
    assert coords == {(o["partition"], o["offset"]) for o in offsets}
    assert sorted(table["value"].to_pylist()) == sorted(orjson.dumps(e) for e in events)
    assert set(table["event_id"].to_pylist()) == {e["event_id"] for e in events}

    second = land(settings, PAGE_VIEWS)
    assert second["rows"] == 0 and second["files"] == []
    assert _master(settings).num_rows == N


def _post(client: TestClient, body: bytes, **headers: str) -> tuple[int, str]:
    r = client.post("/events", content=body, headers=headers)
    return r.status_code, r.text


GOOD = pageview(event_id="e-1", url="https://x/1", event_time="2025-01-01T00:00:00.000Z")


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (orjson.dumps([GOOD, {**GOOD, "bytes": "ten"}]), 422, "'bytes' must be an integer"),
        (orjson.dumps({**GOOD, "url": 3}), 422, "'url' must be a string"),
        (orjson.dumps({k: v for k, v in GOOD.items() if k != "user_id"}), 422, "'user_id'"),
        (orjson.dumps({**GOOD, "event_time": "noon"}), 422, "event_time"),
        (orjson.dumps("hello"), 400, "event object or an array"),
    ],
)
def test_bad_requests_name_the_field(
    client: TestClient, settings: Settings, body: bytes, status: int, needle: str
) -> None:
    code, text = _post(client, body, **WRITE)
    assert code == status, text
    assert needle in text


def test_invalid_item_rejects_whole_batch_and_sends_nothing(
    client: TestClient, settings: Settings
) -> None:
    from lambdalab.topics import end_offsets, ensure_topics

    batch = [GOOD, {**GOOD, "event_id": "e-2", "bytes": 1.5}, {**GOOD, "event_id": "e-3"}]
    r = client.post("/events", content=orjson.dumps(batch), headers=WRITE)
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"index": 1, "reason": "field 'bytes' must be an integer, got float"}
    ]
    ensure_topics(settings)
    assert sum(end_offsets(settings, settings.topic_for(PAGE_VIEWS.name)).values()) == 0


def test_limits_and_keys(client: TestClient, settings: Settings) -> None:
    small = settings.model_copy(
        update={
            "api": settings.api.model_copy(
                update={"max_body_bytes": 400, "max_events_per_request": 2}
            )
        }
    )
    client.app.state.settings = small  # type: ignore[attr-defined]
    code, text = _post(client, orjson.dumps([GOOD] * 5), **WRITE)
    assert code == 413 and "max_body_bytes=400" in text
    code, text = _post(client, orjson.dumps([GOOD] * 3), **WRITE)
    assert code == 413 and "max_events_per_request=2" in text
    code, text = _post(client, orjson.dumps(GOOD))
    assert code == 401 and "X-API-Key" in text
    code, text = _post(client, orjson.dumps(GOOD), **{"X-API-Key": "dev-read-key"})
    assert code == 403 and "write" in text
    code, text = _post(client, orjson.dumps(GOOD), **{"X-API-Key": "nope"})
    assert code == 403
    code, text = _post(client, orjson.dumps(GOOD), **WRITE)
    assert code == 200 and orjson.loads(text)["accepted"] == 1
