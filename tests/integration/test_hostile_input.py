"""Hostile input at the edges, against the real stack (issue: nothing lost, nothing doubled).

Each test reproduces a way bad or foreign input used to stop a layer or escape the edge:
timestamps outside what every layer represents, a poison record written raw to the log,
records from a non-Python client (Debian's ``kcat``, librdkafka) with every compression
codec, keys, headers and null values, and a transactional producer that aborts. Every
layer must either reject at the edge with a 4xx naming the field, or route the record to
the dead-letter topic with its reason and go on, counting every valid record exactly once.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from kafka import KafkaProducer

from batch.archiver import land
from batch.master import read_master
from lambdalab.deadletters import read_dead_letters
from lambdalab.hdfs import webhdfs
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.topics import end_offsets, ensure_topics
from serving.app import create_app
from speed.consumer import catch_up
from speed.reader import SpeedReader
from tests.events import pageview, transactional_producer

WRITE = {"X-API-Key": "dev-write-key"}
VIEW = "pageviews_by_url_hourly"


def _event(n: int, **overrides: Any) -> dict[str, Any]:
    """Event ``e{n}`` on one of the three URLs `_counted` reads."""
    return pageview(event_id=f"e{n}", url=f"/p/{n % 3}", **overrides)


@pytest.fixture
def client(stack: Settings, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.mark.parametrize(
    "moment",
    ["0999-06-01T00:00:00Z", "9999-12-31T23:30:00-01:00", "1899-12-31T23:59:59.999Z"],
)
def test_a_timestamp_no_layer_can_represent_is_a_4xx_naming_the_field(
    client: TestClient, settings: Settings, moment: str
) -> None:
    r = client.post("/events", json=[_event(1, event_time=moment)], headers=WRITE)
    assert r.status_code == 422, r.text
    assert "event_time" in r.text and "accepted range" in r.text
    ensure_topics(settings)
    assert sum(end_offsets(settings, settings.topic_for(PAGE_VIEWS.name)).values()) == 0


def test_query_bounds_out_of_range_are_a_4xx(client: TestClient) -> None:
    r = client.get(
        f"/views/{VIEW}",
        params={"key": "/p/0", "to": "9999-12-31T23:30:00-01:00"},
        headers={"X-API-Key": "dev-read-key"},
    )
    assert r.status_code == 422, r.text
    assert "'to'" in r.text


def _produce_raw(settings: Settings, values: list[bytes | None]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    topic = settings.topic_for(PAGE_VIEWS.name)
    for value in values:
        producer.send(topic, value=value, partition=0)
    producer.flush()
    producer.close()


def _counted(settings: Settings) -> int:
    """Events the speed layer counted in the view (every key, every bucket)."""
    reader = SpeedReader(settings)
    total = 0
    for url in ("/p/0", "/p/1", "/p/2"):
        rows = reader.partials(VIEW, url, 0, 0, 2**62)
        total += sum(int(r["views"]) for r in rows.values())
    return total


def test_a_poison_record_is_a_dead_letter_and_both_layers_go_on(
    stack: Settings, settings: Settings
) -> None:
    ensure_topics(settings)
    poison = orjson.dumps(_event(0, event_time="0999-06-01T00:00:00Z"))
    good = [orjson.dumps(_event(n)) for n in range(1, 6)]
    _produce_raw(settings, [good[0], poison, *good[1:]])

    manifest = land(settings, PAGE_VIEWS)
    assert (manifest["rows"], manifest["dead_letters"]) == (5, 1)
    catch_up(settings, PAGE_VIEWS)
    assert _counted(settings) == 5
    letters = list(read_dead_letters(settings).values())
    assert len(letters) == 1 and "event_time" in letters[0]["reason"]


CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def _kcat(settings: Settings, codec: str, lines: list[str]) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not installed: `apt-get install kcat` (make deps installs it)"
    cmd = [
        kcat,
        "-P",
        "-b",
        settings.kafka.bootstrap_servers,
        "-t",
        settings.topic_for(PAGE_VIEWS.name),
        "-z",
        codec,
        "-K",
        "\t",
        "-Z",  # an empty value is sent as NULL
        "-H",
        f"codec={codec}",
        "-H",
        "origin=kcat",
    ]
    subprocess.run(cmd, input="\n".join(lines) + "\n", text=True, check=True, timeout=60)


def test_records_from_kcat_with_every_codec_are_read_by_every_layer(
    stack: Settings, settings: Settings
) -> None:
    ensure_topics(settings)
    valid = 0
    for i, codec in enumerate(CODECS):
        lines = []
        for n in range(10):
            event = _event(100 * i + n)
            lines.append(f"{event['event_id']}\t{orjson.dumps(event).decode()}")
            valid += 1
        lines.append("null-value-key\t")  # a null value: a dead letter, not a crash
        _kcat(settings, codec, lines)

    manifest = land(settings, PAGE_VIEWS)
    assert (manifest["rows"], manifest["dead_letters"]) == (valid, len(CODECS))
    table = read_master(webhdfs(settings), settings, PAGE_VIEWS.name)
    assert sorted(table.column("event_id").to_pylist()) == sorted(
        f"e{100 * i + n}" for i in range(len(CODECS)) for n in range(10)
    )
    assert {k for k in table.column("key").to_pylist()} == {
        f"e{100 * i + n}".encode() for i in range(len(CODECS)) for n in range(10)
    }
    consumer = catch_up(settings, PAGE_VIEWS)
    assert (consumer.applied, consumer.dead) == (valid, len(CODECS))
    assert _counted(settings) == valid
    letters = read_dead_letters(settings).values()
    assert len(letters) == len(CODECS)
    assert all(x["reason"] == "record has no value" and x["value_b64"] is None for x in letters)


def test_aborted_transactions_are_never_counted(stack: Settings, settings: Settings) -> None:
    ensure_topics(settings)
    producer = transactional_producer(settings)
    topic = settings.topic_for(PAGE_VIEWS.name)
    producer.begin_transaction()
    for n in range(5):
        producer.send(topic, orjson.dumps(_event(n)), partition=n % 2)
    producer.flush()  # the aborted records are in the log, only the marker says abort
    producer.abort_transaction()
    producer.begin_transaction()
    for n in range(5, 8):
        producer.send(topic, orjson.dumps(_event(n)), partition=n % 2)
    producer.commit_transaction()
    producer.close()

    manifest = land(settings, PAGE_VIEWS)
    assert manifest["rows"] == 3
    table = read_master(webhdfs(settings), settings, PAGE_VIEWS.name)
    assert sorted(table.column("event_id").to_pylist()) == ["e5", "e6", "e7"]
    assert land(settings, PAGE_VIEWS)["rows"] == 0  # the markers do not make work forever

    consumer = catch_up(settings, PAGE_VIEWS)
    assert consumer.applied == 3
    assert _counted(settings) == 3
    ends = end_offsets(settings, topic)
    assert SpeedReader(settings).stream_offsets(PAGE_VIEWS.name) == ends
