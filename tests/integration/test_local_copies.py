"""The API reads batch versions from local copies and switches only once a copy is ready.

Events A are built into version 1 (cut after A), events B are only in the speed layer. An
API process answers from version 1's local copy. Version 2 (cut after A + B) is then
published while this host's copy of it is held back (the download blocks): the API keeps
answering from version 1 -- exactly, because the speed layer keeps the realtime windows
since version 1's cut -- and answers from version 2 once the copy is built. On both sides
every point query equals tests/oracle.py over A + B.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from batch.reader import BatchReader
from batch.tasks import run_cycle
from ingest.producer import EventProducer
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.topics import ensure_topics
from serving.app import create_app
from speed.consumer import catch_up
from tests import oracle
from tests.events import EventFactory
from tests.namespaces import namespace
from views.registry import get_view

pytestmark = pytest.mark.integration
HOUR = 3_600_000
T0 = 1_772_359_200_000  # 2026-03-01T10:00:00Z
VIEW = get_view("pageviews_by_url_hourly")
URLS = ("/a", "/b", "/c")
SPAN = {"from": "2026-03-01T09:00:00Z", "to": "2026-03-01T14:00:00Z"}
READ = {"X-API-Key": "dev-read-key"}


@pytest.fixture(scope="module")
def ns(stack: Settings) -> Iterator[Settings]:
    batch = stack.batch.model_copy(update={"window_s": 1, "clock_skew_s": 0})
    with namespace(stack, batch=batch) as fresh:
        yield fresh


@pytest.fixture(scope="module")
def spark(stack: Settings) -> Iterator[Any]:
    from batch.spark import spark_session

    session = spark_session(stack, app_name="test-local-copies")
    yield session
    session.stop()


def _events(seed: int, n: int, prefix: str) -> list[dict[str, Any]]:
    make = EventFactory(seed=seed, urls=URLS, users=9, id_prefix=prefix)
    return [make(at=T0 + (i * 611_000) % (3 * HOUR)) for i in range(n)]


def _send(settings: Settings, events: list[dict[str, Any]]) -> None:
    producer = EventProducer(settings, PAGE_VIEWS)
    try:
        producer.send_many(events)
    finally:
        producer.close()


def _assert_exact(client: TestClient, events: list[dict[str, Any]]) -> set[int]:
    """Every URL's merged buckets equal the oracle; return the versions the answers read."""
    want = oracle.measures(VIEW, events)
    versions = set()
    for url in URLS:
        r = client.get(f"/views/{VIEW.name}", params={"key": url, **SPAN}, headers=READ)
        assert r.status_code == 200, r.text
        got = {row["bucket_ms"]: row for row in r.json()["merged"]}
        expected = oracle.by_bucket(want, url)
        assert set(got) == set(expected), url
        for bucket, row in expected.items():
            assert {m: got[bucket][m] for m in row} == row, (url, bucket)
        versions.add(r.json()["version"])
    return versions


def test_the_api_serves_the_older_version_until_the_new_copy_is_built(
    ns: Settings, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_topics(ns)
    first, second = _events(1, 60, "a"), _events(2, 40, "b")
    _send(ns, first)
    time.sleep(1.2)  # the next 1 s window boundary passes: the cut covers `first`
    assert run_cycle(ns, trino=False, views=[VIEW.name], spark=spark)["ok"]
    _send(ns, second)
    catch_up(ns, PAGE_VIEWS)
    client = TestClient(create_app(ns))
    assert _assert_exact(client, first + second) == {1}

    held, fetched = threading.Event(), []
    fetch = BatchReader.fetch

    def held_fetch(self: BatchReader, view: str, version: int, into: Path) -> list[Path]:
        if version == 2:
            assert held.wait(60), "the test never released the download"
        fetched.append(version)
        return fetch(self, view, version, into)

    monkeypatch.setattr(BatchReader, "fetch", held_fetch)
    time.sleep(1.2)
    assert run_cycle(ns, trino=False, views=[VIEW.name], spark=spark)["ok"]
    time.sleep(1.1)  # past the pointer's 1 s cache: the API has seen version 2 ...
    for _ in range(3):  # ... and answers from version 1, exactly, while 2's copy waits
        assert _assert_exact(client, first + second) == {1}
    assert fetched == []
    held.set()
    deadline = time.monotonic() + 30
    while (versions := _assert_exact(client, first + second)) != {2}:
        assert time.monotonic() < deadline, f"version 2 never became current: {versions}"
        time.sleep(0.2)
    assert fetched == [2]
    copies = list((ns.paths.local_versions_dir / ns.namespace / VIEW.name).glob("v*.arrow"))
    assert sorted(p.name[:7] for p in copies) == ["v000001", "v000002"]
