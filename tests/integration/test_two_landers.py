"""Two landers on two state directories (no shared lock) land every offset exactly once.

Reproduces the compose cluster's old layout, where the archiver container and the batch
container each landed with a lock volume of their own: under continuous ingest both race
on every partition. The fence lives in HDFS (a claim per first offset), so the master
dataset must hold each (partition, offset) once and the files of a partition must chain.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import orjson
from kafka import KafkaProducer

from batch.archiver import land
from batch.master import list_files, read_master
from lambdalab.errors import BatchError
from lambdalab.hdfs import webhdfs
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.topics import end_offsets, ensure_topics
from tests.events import pageview

N = 4000


def _with_state_dir(settings: Settings, folder: Path) -> Settings:
    paths = settings.paths.model_copy(update={"state_dir": folder})
    return settings.model_copy(update={"paths": paths})


def _produce(settings: Settings, done: threading.Event) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    topic = settings.topic_for(PAGE_VIEWS.name)
    for n in range(N):
        event = pageview(event_id=f"e{n}", url=f"/p/{n % 7}", bytes=n)
        producer.send(topic, orjson.dumps(event), key=str(n).encode())
        if n % 200 == 0:
            producer.flush()
    producer.flush()
    producer.close()
    done.set()


def _lander(
    settings: Settings, done: threading.Event, lost: list[str], died: list[BaseException]
) -> None:
    try:
        while True:
            finished = done.is_set()
            try:
                land(settings, PAGE_VIEWS, max_rows_per_file=37)
            except BatchError as exc:
                lost.append(str(exc))
            if finished:
                return
    except BaseException as exc:  # a lander that dies fails the test, not just a warning
        died.append(exc)


def test_two_landers_without_a_shared_lock_land_every_offset_once(
    stack: Settings, settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    done = threading.Event()
    lost: list[str] = []
    died: list[BaseException] = []
    landers = [_with_state_dir(settings, tmp_path / name) for name in ("a", "b")]
    threads = [threading.Thread(target=_produce, args=(settings, done))]
    threads += [threading.Thread(target=_lander, args=(s, done, lost, died)) for s in landers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not died, died
    land(landers[0], PAGE_VIEWS)  # whatever a lost claim left behind

    table = read_master(webhdfs(settings), settings, PAGE_VIEWS.name)
    parts, offsets = table.column("partition").to_pylist(), table.column("offset").to_pylist()
    coords = Counter(zip(parts, offsets, strict=True))
    doubled = {c: n for c, n in coords.items() if n > 1}
    assert not doubled, f"{len(doubled)} offsets landed twice, e.g. {list(doubled)[:5]}"
    assert sorted(table.column("event_id").to_pylist()) == sorted(f"e{n}" for n in range(N))
    ends = end_offsets(settings, settings.topic_for(PAGE_VIEWS.name))
    assert len(coords) == sum(ends.values()) == N
    chains: dict[int, int] = {}
    for _path, mf in list_files(webhdfs(settings), settings, PAGE_VIEWS.name):
        assert mf.first_offset == chains.get(mf.partition, 0), mf
        chains[mf.partition] = mf.last_offset + 1
    print(f"claims lost to the other lander: {len(lost)}")
