"""Invariant 2 end to end: the merged answer equals the oracle at every sampled moment.

The real pipeline runs in one namespace: the API under uvicorn (ingest and queries), the
speed consumer in a thread, batch cycles (Spark) publishing at least two versions, while
events (late ones included) are posted continuously over HTTP. At many moments a view, a
key and a range are sampled and the merged answer kept. Afterwards every event is read
back from Kafka with its coordinates and ingest timestamp, and each answer is compared
with plain Python over exactly the records it claims to reflect: ingest time < its cut,
plus those the speed layer had consumed per its ``speed_offsets``. Once ingest stopped
and the speed layer caught up, every answer equals the oracle over all events.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from batch.tasks import run_cycle
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.topics import ensure_topics, read_topic
from serving.app import create_app
from speed.consumer import SpeedConsumer
from tests import oracle
from tests.events import EventFactory
from tests.namespaces import namespace
from views.definition import ViewDef
from views.registry import all_views

READ = {"X-API-Key": "dev-read-key"}
WRITE = {"X-API-Key": "dev-write-key"}
URLS = [f"/p{i}" for i in range(6)]
REFERRERS = ["https://a.example/", "https://b.example/", None]
CYCLES = 2


@dataclass(frozen=True)
class Record:
    """One event as the log holds it: coordinates, broker ingest time, the event."""

    partition: int
    offset: int
    ingest_ms: int
    event: dict[str, Any]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def settings_e2e(stack: Settings) -> Iterator[Settings]:
    batch = stack.batch.model_copy(update={"window_s": 3, "clock_skew_s": 0})
    with namespace(stack, batch=batch) as fresh:
        yield fresh


@pytest.fixture(scope="module")
def api(settings_e2e: Settings) -> Iterator[str]:
    ensure_topics(settings_e2e)
    port = _port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings_e2e), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _ingest(base: str, make: EventFactory, stop: threading.Event, sent: list[int]) -> None:
    """Post batches of events (now, 15 % up to three hours late) until stopped."""
    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop.is_set():
            batch = make.many(make.rng.randrange(5, 30))
            r = client.post("/events", content=orjson.dumps(batch), headers=WRITE)
            assert r.status_code == 200, r.text
            sent.append(r.json()["accepted"])
            time.sleep(0.15)


def _speed(settings: Settings, stop: threading.Event) -> None:
    consumer = SpeedConsumer(settings, PAGE_VIEWS)
    consumer.setup()
    try:
        consumer.run(stop=stop)
    finally:
        consumer.close()


def _query(client: httpx.Client, view: ViewDef, key: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    span = {
        "key": key,
        "from": (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:00:00Z"),
        "to": (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:00:00Z"),
        "sketches": "false",
    }
    r = client.get(f"/views/{view.name}", params=span, headers=READ)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _sample(client: httpx.Client, rnd: random.Random) -> tuple[ViewDef, dict[str, Any]]:
    view = rnd.choice(list(all_views().values()))
    probe = {"url": rnd.choice(URLS), "referrer": rnd.choice(REFERRERS)}
    return view, _query(client, view, view.key_of(probe))


def read_log(settings: Settings) -> list[Record]:
    """Every record of the events topic with its coordinates and broker timestamp."""
    return [
        Record(r.partition, r.offset, r.timestamp, orjson.loads(r.value))
        for r in read_topic(settings, settings.topic_for(PAGE_VIEWS.name))
    ]


def expected(view: ViewDef, key: str, records: list[Record], answer: dict[str, Any]) -> Any:
    """The oracle's rows per bucket over the records the answer claims to reflect."""
    cut = answer["cut_ms"]
    offsets = {int(p): o for p, o in answer["speed_offsets"].items()}
    lo, hi = oracle.ms_of(answer["from"]), oracle.ms_of(answer["to"])
    covered = [
        rec.event
        for rec in records
        if (cut is not None and rec.ingest_ms < cut) or rec.offset < offsets.get(rec.partition, 0)
    ]
    rows = oracle.by_bucket(oracle.measures(view, covered), key)
    return {bucket: row for bucket, row in rows.items() if lo <= bucket < hi}


def assert_matches(view: ViewDef, answer: dict[str, Any], expected: dict[int, Any]) -> None:
    got = {row["bucket_ms"]: row for row in answer["merged"]}
    where = f"{view.name} key={answer['key']!r} v{answer['version']} cut={answer['cut']}"
    assert set(got) == set(expected), f"{where}: buckets {sorted(got)} != {sorted(expected)}"
    for bucket, want in expected.items():
        for m in view.measures:
            if m.kind == "hll":
                exact = len(want[m.name])
                assert got[bucket][m.name] == pytest.approx(exact, rel=0.03, abs=0.5), where
            else:
                assert got[bucket][m.name] == want[m.name], f"{where} bucket {bucket} {m.name}"


def _sampler(base: str, stop: threading.Event, out: list[Any], errors: list[str]) -> None:
    rnd = random.Random(11)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            while not stop.is_set():
                out.append(_sample(client, rnd))
                time.sleep(0.2)
    except Exception as exc:  # surfaced by the test's assertion on errors
        errors.append(f"sampler: {type(exc).__name__}: {exc}")


def test_merged_answers_equal_the_oracle_while_batches_publish(
    settings_e2e: Settings, api: str, make_event: EventFactory
) -> None:
    make = make_event.configured(
        urls=tuple(URLS), users=60, referrers=tuple(REFERRERS), late_fraction=0.15
    )
    stop_ingest, stop_speed, stop_sampling = threading.Event(), threading.Event(), threading.Event()
    sent: list[int] = []
    samples: list[tuple[ViewDef, dict[str, Any]]] = []
    errors: list[str] = []
    workers = [
        threading.Thread(target=_ingest, args=(api, make, stop_ingest, sent)),
        threading.Thread(target=_speed, args=(settings_e2e, stop_speed)),
        threading.Thread(target=_sampler, args=(api, stop_sampling, samples, errors)),
    ]
    for w in workers:
        w.start()
    reports = []
    try:
        for _ in range(CYCLES):  # Luigi runs in the main thread only
            time.sleep(8)
            reports.append(run_cycle(settings_e2e, trino=False))
        time.sleep(4)  # realtime after the last cut
    finally:
        stop_sampling.set()
        workers[2].join(60)
        stop_ingest.set()
        workers[0].join(60)
    total = sum(sent)
    with httpx.Client(base_url=api, timeout=60) as client:
        final = _final_answers(client, total)
    stop_speed.set()
    workers[1].join(60)

    assert not errors, errors
    assert all(r["ok"] for r in reports), reports
    records = read_log(settings_e2e)
    assert len(records) == total
    versions = {a["version"] for _, a in samples}
    assert len(versions - {None}) >= 2, f"want two published versions sampled, got {versions}"
    assert any(a["realtime"] and a["batch"] for _, a in samples)
    assert len(samples) >= 30
    for view, answer in samples + final:
        assert_matches(view, answer, expected(view, answer["key"], records, answer))
    everything = {"cut_ms": None, "speed_offsets": {str(p): 2**62 for p in range(64)}}
    for view, answer in final:
        offsets = {int(p): o for p, o in answer["speed_offsets"].items()}
        assert sum(offsets.values()) == total
        whole = {**answer, **everything}
        assert_matches(view, answer, expected(view, answer["key"], records, whole))


def _final_answers(client: httpx.Client, total: int) -> list[tuple[ViewDef, dict[str, Any]]]:
    """Every view and key once the speed layer consumed all ``total`` records."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        speed = client.get("/pipeline", headers=READ).json()["speed"]
        if sum(speed.get("offsets", {}).values()) >= total:
            break
        time.sleep(0.5)
    out = []
    for view in all_views().values():
        keys = {view.key_of({"url": u, "referrer": r}) for u in URLS for r in REFERRERS}
        out += [(view, _query(client, view, key)) for key in sorted(keys)]
    return out
