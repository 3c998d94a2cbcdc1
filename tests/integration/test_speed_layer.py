"""The speed layer against the real stack, checked against an independent oracle.

The oracle (tests/oracle.py) is plain Python over the records read back from Kafka (their
LogAppendTime timestamps decide the ingest window): it does not call views.compute or speed.*.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import redis
from datasketches import hll_sketch
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from lambdalab.hdfs import webhdfs
from lambdalab.paths import HdfsPaths, RedisKeys
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.topics import dlq_key, ensure_topics, read_topic
from speed.consumer import SpeedConsumer, catch_up
from speed.reader import SpeedReader
from speed.store import RealtimeStore
from tests import oracle as truth
from tests.events import EventFactory
from views.definition import hll_rse
from views.registry import all_views

REPO = Path(__file__).resolve().parents[2]
WINDOW_S = 2
URLS = [f"/page/{i}" for i in range(25)]
REFERRERS = [None, "google", "news", "mail"]
Oracle = dict[str, dict[tuple[int, str, int], dict[str, Any]]]


# --- events, produced by the test itself -------------------------------------------------


def _events(make_event: EventFactory) -> EventFactory:
    """This module's pools; 10 % late by hours or days. Valid events have ids ``ok-{n}``."""
    return make_event.configured(
        urls=tuple(URLS),
        users=301,
        referrers=tuple(REFERRERS),
        sizes=(0, 50_000),
        late_fraction=0.1,
        late_by_s=(2 * 3600.0, 72 * 3600.0),
        id_prefix="ok-",
    )


def _malformed(rng: random.Random, n: int) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return b"{not json"
    if kind == 1:
        return json.dumps({"event_id": f"bad-{n}", "user_id": "u1"}).encode()
    if kind == 2:
        return json.dumps({"event_id": f"bad-{n}", "url": "/x", "color": "red"}).encode()
    return json.dumps(
        {"event_id": f"bad-{n}", "url": "/x", "user_id": "u", "bytes": "12", "event_time": "x"}
    ).encode()


def produce(settings: Settings, make: EventFactory, count: int, bad_rate: float = 0.02) -> None:
    """Send ``count`` records, about ``bad_rate`` of them malformed (drawn from make's RNG)."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    rng = make.rng
    for _ in range(count):
        n = rng.randrange(10**12)
        raw = _malformed(rng, n) if rng.random() < bad_rate else json.dumps(make())
        producer.send(
            settings.topic_for(PAGE_VIEWS.name), raw if isinstance(raw, bytes) else raw.encode()
        )
    producer.flush()
    producer.close()


def read_back(settings: Settings, topic: str | None = None) -> list[Any]:
    """Every record of a topic, read with a plain consumer up to its end offsets."""
    return read_topic(settings, topic or settings.topic_for(PAGE_VIEWS.name))


# --- the oracle ----------------------------------------------------------------------------


def _valid(raw: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    return obj if str(obj.get("event_id", "")).startswith("ok-") else None


def oracle(records: list[Any], window_s: int) -> Oracle:
    """view -> (window, key, bucket) -> exact measures (hll: the set of distinct values)."""
    timed = [(rec.timestamp, e) for rec in records if (e := _valid(rec.value)) is not None]
    return {
        name: truth.measures_by_window(view, timed, window_s) for name, view in all_views().items()
    }


def redis_state(settings: Settings, client: redis.Redis) -> Oracle:
    """view -> (window, key, bucket) -> stored measures, read straight from Redis.

    Each Kafka partition keeps its own share of a cell (``lambdalab.paths.PartitionKeys``):
    the shares are merged here with the measure's own merge.
    """
    out: Oracle = {}
    source = settings.topic_for(PAGE_VIEWS.name)
    for name, view in all_views().items():
        kinds = {kind.name: kind for kind in view.kinds}
        cells: dict[tuple[int, str, int], dict[str, Any]] = defaultdict(dict)
        for p in range(settings.kafka.partitions):
            prefix = RedisKeys(settings).partition(source, p).rt(name, "")
            for rt in client.scan_iter(match=prefix + "*", count=1000):
                key = rt.decode()[len(prefix) :]
                for fld, value in client.hgetall(rt).items():
                    window, bucket, measure = fld.decode().split("|")
                    cell, kind = cells[(int(window), key, int(bucket))], kinds[measure]
                    if measure in cell:
                        both = kind.merge(kind.decode(cell[measure]), kind.decode(value))
                        value = kind.encode(both)
                    cell[measure] = value
        out[name] = dict(cells)
    return out


def assert_equal(expected: Oracle, actual: Oracle, min_window: int | None = None) -> None:
    """Exact for count/sum/min/max; HLL within 3 RSE of the exact distinct count."""
    for name, view in all_views().items():
        want = {c: v for c, v in expected[name].items() if min_window is None or c[0] >= min_window}
        got = actual[name]
        assert set(got) == set(want), f"{name}: cells differ"
        for cell, measures in want.items():
            for m in view.measures:
                stored = got[cell][m.name]
                if m.kind == "hll":
                    exact = len(measures[m.name])
                    est = hll_sketch.deserialize(stored).get_estimate()
                    assert abs(est - exact) <= 3 * hll_rse() * exact + 0.01, (name, cell)
                else:
                    assert int(stored) == measures[m.name], (name, cell, m.name)


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def ns(stack: Settings, settings: Settings) -> Settings:
    """The test's namespace (dropped by the ``settings`` fixture) with 2-second windows."""
    s = settings.model_copy(update={"batch": settings.batch.model_copy(update={"window_s": 2})})
    ensure_topics(s)
    return s


def _run_once(settings: Settings) -> SpeedConsumer:
    return catch_up(settings, PAGE_VIEWS, max_poll_records=300)


# --- tests ---------------------------------------------------------------------------------


def test_realtime_views_equal_the_oracle_and_dead_letters_land(
    ns: Settings, make_event: EventFactory
) -> None:
    rng = _events(make_event)
    for _ in range(3):  # several ingest windows
        produce(ns, rng, 700)
        time.sleep(WINDOW_S)
    first = _run_once(ns)
    produce(ns, rng, 600)
    second = _run_once(ns)  # resumes from the committed offsets
    records = read_back(ns)
    client = redis.Redis.from_url(ns.redis.url)
    expected = oracle(records, WINDOW_S)
    assert_equal(expected, redis_state(ns, client))
    assert len({w for w, _k, _b in expected["pageviews_by_url_hourly"]}) >= 3

    bad = {
        dlq_key(ns.topic_for(PAGE_VIEWS.name), r.partition, r.offset)
        for r in records
        if not _valid(r.value)
    }
    assert bad and first.dead + second.dead == len(bad)
    assert first.applied + second.applied == len(records) - len(bad)
    letters = {r.key: json.loads(r.value) for r in read_back(ns, ns.dlq_topic)}
    assert set(letters) == bad
    assert all(
        letter["reason"] and letter["topic"] == ns.topic_for(PAGE_VIEWS.name)
        for letter in letters.values()
    )

    reader = SpeedReader(ns, client)
    ends = KafkaConsumer(bootstrap_servers=ns.kafka.bootstrap_servers)
    parts = [TopicPartition(ns.topic_for(PAGE_VIEWS.name), p) for p in range(ns.kafka.partitions)]
    assert reader.stream_offsets(PAGE_VIEWS.name) == {
        tp.partition: o for tp, o in ends.end_offsets(parts).items()
    }
    ends.close()
    assert reader.status(PAGE_VIEWS.name)["freshness_ms"] == max(r.timestamp for r in records)
    _check_partials(reader, expected["pageviews_by_url_hourly"])


def _check_partials(reader: SpeedReader, cells: dict[tuple[int, str, int], Any]) -> None:
    windows = sorted({w for w, _k, _b in cells})
    since = windows[1]
    for url in URLS[:5]:
        want: dict[int, dict[str, int]] = {}
        for (window, key, bucket), m in cells.items():
            if key == url and window >= since:
                acc = want.setdefault(bucket, {"views": 0})
                acc["views"] += m["views"]
                acc["min_bytes"] = min(acc.get("min_bytes", m["min_bytes"]), m["min_bytes"])
                acc["max_bytes"] = max(acc.get("max_bytes", m["max_bytes"]), m["max_bytes"])
        assert reader.partials("pageviews_by_url_hourly", url, since, 0, 2**62) == want


def _stored_total(client: redis.Redis, settings: Settings) -> int:
    store = RealtimeStore(settings, settings.topic_for("pageviews"), client)
    return sum(store.read_offsets(range(settings.kafka.partitions)).values())


def _spawn(settings: Settings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LAMBDALAB_NAMESPACE": settings.namespace,
        "LAMBDALAB_BATCH__WINDOW_S": str(WINDOW_S),
        "LAMBDALAB_REDIS__URL": settings.redis.url,
    }
    cmd = [str(REPO / ".venv/bin/lambdalab"), "speed", "run", "--quiet", "--max-poll-records=40"]
    cmd += ["--worker", "sigkill"]  # restarted under one name: its partitions come back at once
    return subprocess.Popen(cmd, env=env, cwd=REPO, stderr=subprocess.PIPE)


def test_sigkill_at_random_moments_still_equals_the_oracle(
    ns: Settings, make_event: EventFactory
) -> None:
    rng = random.Random(11)
    client = redis.Redis.from_url(ns.redis.url)
    done = threading.Event()

    def keep_producing() -> None:
        feed = _events(make_event)
        while not done.is_set():
            produce(ns, feed, 60)
            time.sleep(0.15)

    feeder = threading.Thread(target=keep_producing)
    feeder.start()
    lives, kills = 0, 0  # kills: consumers SIGKILLed while they were committing work
    try:
        while lives < 6:
            lives += 1
            proc = _spawn(ns)
            before = _stored_total(client, ns)
            deadline = time.monotonic() + 30
            while _stored_total(client, ns) == before and time.monotonic() < deadline:
                time.sleep(0.05)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            working = _stored_total(client, ns) > before
            time.sleep(rng.uniform(0.0, 1.0))
            proc.send_signal(signal.SIGKILL)
            if proc.wait() == -signal.SIGKILL and working:
                kills += 1
    finally:
        done.set()
        feeder.join()
    proc = _spawn(ns)
    try:
        _wait_caught_up(ns, client)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert kills >= 5
    assert_equal(oracle(read_back(ns), WINDOW_S), redis_state(ns, client))


def _wait_caught_up(settings: Settings, client: redis.Redis) -> None:
    ends = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    parts = [
        TopicPartition(settings.topic_for(PAGE_VIEWS.name), p)
        for p in range(settings.kafka.partitions)
    ]
    target = sum(ends.end_offsets(parts).values())
    ends.close()
    deadline = time.monotonic() + 120
    while _stored_total(client, settings) < target:
        assert time.monotonic() < deadline, "speed consumer did not catch up within 120 s"
        time.sleep(0.2)


def _publish_fake_version(settings: Settings, view: str, n: int, cut_ms: int) -> None:
    """A published version as the batch layer leaves it (only _lineage.json matters here)."""
    lineage = {"view": view, "version": n, "cut_ms": cut_ms}
    path = f"{HdfsPaths(settings).version(view, n)}/_lineage.json"
    webhdfs(settings).write(path, data=json.dumps(lineage), overwrite=True)


def test_expiry_and_rebuild_after_flush_equal_the_oracle(
    ns: Settings, make_event: EventFactory
) -> None:
    s = ns.model_copy(update={"redis": ns.redis.model_copy(update={"url": _db7(ns)})})
    client = redis.Redis.from_url(s.redis.url)
    rng = _events(make_event)
    for _ in range(4):
        produce(s, rng, 400)
        time.sleep(WINDOW_S)
    consumer = _run_once(s)
    expected = oracle(read_back(s), WINDOW_S)
    assert_equal(expected, redis_state(s, client))

    windows = sorted({w for w, _k, _b in expected["pageviews_by_url_hourly"]})
    previous_cut, current_cut = windows[1], windows[2]
    for view in all_views():
        _publish_fake_version(s, view, 1, previous_cut)
        _publish_fake_version(s, view, 2, current_cut)
    consumer.expire_once()  # two versions: windows below the previous cut go
    assert_equal(expected, redis_state(s, client), min_window=previous_cut)

    client.flushdb()  # Redis loses everything: rebuild from the previous version's cut
    _run_once(s)
    assert_equal(expected, redis_state(s, client), min_window=previous_cut)
    assert SpeedReader(s, client).status(PAGE_VIEWS.name)["rebuilt_from_ms"] == previous_cut

    webhdfs(s).delete(HdfsPaths(s).root + "/views", recursive=True)
    client.flushdb()  # no published version: rebuild from the beginning of the log
    _run_once(s)
    assert_equal(expected, redis_state(s, client))
    client.flushdb()  # DB 7 is this test's own


def _db7(settings: Settings) -> str:
    return settings.redis.url.rsplit("/", 1)[0] + "/7"
