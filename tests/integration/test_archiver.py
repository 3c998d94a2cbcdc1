"""The archiver against the real Kafka and HDFS: exactly once across SIGKILL, dead letters.

Oracles: the events and raw bytes this test produced itself.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from batch.archiver import archiver_lock, land
from batch.master import list_files, read_master
from ingest.generator import GeneratorConfig, generate
from ingest.producer import EventProducer
from lambdalab.deadletters import read_dead_letters
from lambdalab.errors import BatchError
from lambdalab.hdfs import webhdfs
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.topics import dlq_key, ensure_topics, kafka_producer

ROOT = Path(__file__).resolve().parents[2]


def _master(settings: Settings) -> pa.Table:
    return read_master(webhdfs(settings), settings, "pageviews")


def _produce(settings: Settings, n: int, seed: int) -> list[bytes]:
    events = [p.event for p in generate(GeneratorConfig(seed=seed), datetime.now(UTC), n)]
    producer = EventProducer(settings, PAGE_VIEWS)
    try:
        for i in range(0, n, 1000):
            producer.send_many(events[i : i + 1000])
    finally:
        producer.close()
    return [orjson.dumps(e) for e in events]


def _produce_raw(settings: Settings, values: dict[bytes, int]) -> dict[tuple[int, int], bytes]:
    """Write raw values straight to given partitions; return (partition, offset) -> value."""
    producer = kafka_producer(settings)
    try:
        futures = [
            (producer.send(settings.topic_for(PAGE_VIEWS.name), value=v, partition=p), v)
            for v, p in values.items()
        ]
        producer.flush()
        return {(f.get(10).partition, f.get(10).offset): v for f, v in futures}
    finally:
        producer.close()


def _land_process(settings: Settings, rows_per_file: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LAMBDALAB_NAMESPACE": settings.namespace}
    cmd = [sys.executable, "-m", "lambdalab.cli", "land", "--max-rows-per-file", str(rows_per_file)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigkill_mid_run_then_rerun_gives_exactly_n(stack: Settings, settings: Settings) -> None:
    n, per_file = 1000, 20
    sent = _produce(settings, n, seed=23)
    hdfs = webhdfs(settings)
    proc = _land_process(settings, per_file)
    deadline = time.monotonic() + 60
    committed = 0
    while committed < 3 and time.monotonic() < deadline and proc.poll() is None:
        committed = len(list_files(hdfs, settings, "pageviews"))
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the landing finished before it could be killed"
    after_kill = len(list_files(hdfs, settings, "pageviews"))
    assert 0 < after_kill < n // per_file, f"{after_kill} files: not killed mid-run"

    proc = _land_process(settings, per_file)
    _out, errors = proc.communicate(timeout=180)
    assert proc.returncode == 0, errors.decode()
    table = _master(settings)
    assert table.num_rows == n
    coords = set(zip(table["partition"].to_pylist(), table["offset"].to_pylist(), strict=True))
    assert len(coords) == n
    assert sorted(table["value"].to_pylist()) == sorted(sent)
    assert len(list_files(hdfs, settings, "pageviews")) > after_kill
    assert land(settings, PAGE_VIEWS)["rows"] == 0


def test_malformed_records_go_to_dlq_and_nowhere_else(stack: Settings, settings: Settings) -> None:
    ensure_topics(settings)
    good = _produce(settings, 40, seed=5)
    wrong_type = {**orjson.loads(good[0]), "bytes": "many"}
    bad = {  # raw value -> partition (partition 3 gets malformed records only)
        b"{broken": 0,
        orjson.dumps({"event_id": "x"}): 0,
        orjson.dumps(wrong_type): 0,
        b"[1, 2]": 3,
        b"\xff\xfe": 3,
    }
    coords = _produce_raw(settings, bad)
    good += _produce(settings, 40, seed=6)  # valid records after the bad ones

    manifest = land(settings, PAGE_VIEWS)
    assert manifest["dead_letters"] == len(bad)
    table = _master(settings)
    assert sorted(table["value"].to_pylist()) == sorted(good)
    assert not set(bad) & set(table["value"].to_pylist())
    dead = read_dead_letters(settings)
    topic = settings.topic_for(PAGE_VIEWS.name)
    assert set(dead) == {dlq_key(topic, p, o) for p, o in coords}
    for (p, o), raw in coords.items():
        letter = dead[dlq_key(topic, p, o)]
        assert letter["reason"] and letter["headers"]["reason"] == letter["reason"].encode()
        assert base64.b64decode(letter["value_b64"]) == raw
        assert (letter["topic"], letter["partition"], letter["offset"]) == (topic, p, o)
    typed = next(c for c, v in coords.items() if v == orjson.dumps(wrong_type))
    assert "'bytes'" in dead[dlq_key(topic, *typed)]["reason"]
    # every consumed offset is covered by exactly one committed file, dead ones included
    files = list_files(webhdfs(settings), settings, "pageviews")
    for p, o in coords:
        assert (
            sum(mf.partition == p and mf.first_offset <= o <= mf.last_offset for _, mf in files)
            == 1
        )
    assert land(settings, PAGE_VIEWS)["dead_letters"] == 0
    assert len(read_dead_letters(settings)) == len(bad)


def test_second_archiver_is_refused(stack: Settings, settings: Settings) -> None:
    ensure_topics(settings)
    with (
        archiver_lock(settings, PAGE_VIEWS.name),
        pytest.raises(BatchError, match="another archiver"),
    ):
        land(settings, PAGE_VIEWS)
    assert land(settings, PAGE_VIEWS)["rows"] == 0


def test_manifest_is_written_with_ranges(stack: Settings, settings: Settings) -> None:
    sent = _produce(settings, 200, seed=8)
    manifest = land(settings, PAGE_VIEWS)
    hdfs = webhdfs(settings)
    from lambdalab.paths import HdfsPaths

    folder = HdfsPaths(settings).manifests("pageviews")
    names = [n for n in hdfs.list(folder) if n.startswith("landing-")]
    assert len(names) == 1
    with hdfs.read(f"{folder}/{names[0]}") as reader:
        stored = orjson.loads(reader.read())
    assert stored["run_id"] == manifest["run_id"] and stored["rows"] == len(sent)
    assert stored["started_ms"] <= stored["finished_ms"]
    covered = sum(last - first + 1 for first, last in stored["ranges"].values())
    assert covered == len(sent)
    assert sorted(stored["files"]) == sorted(p for p, _ in list_files(hdfs, settings, "pageviews"))


def test_a_batch_landing_waits_for_the_continuous_archivers_turn(
    stack: Settings, settings: Settings
) -> None:
    import threading

    ensure_topics(settings)
    sent = _produce(settings, 50, seed=11)
    released = threading.Event()
    let_go: list[float] = []  # when the continuous archiver's turn ended

    def hold() -> None:  # long enough that a landing which ignored the lock ends first
        with archiver_lock(settings, PAGE_VIEWS.name):
            released.wait(5.0)
            let_go.append(time.monotonic())

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.2)
    try:
        assert land(settings, PAGE_VIEWS, lock_wait_s=30)["rows"] == len(sent)
        landed = time.monotonic()
    finally:
        released.set()
        holder.join()
    # it waited for the turn: a landing that ignored the lock would be done long before
    assert let_go and landed > let_go[0]
