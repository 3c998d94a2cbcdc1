"""The one path for bad records: split, payload, counter (no services)."""

from __future__ import annotations

import base64
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from lambdalab.deadletters import DeadLetter, DeadLetters, split
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import load_settings
from tests.events import pageview

pytestmark = pytest.mark.unit

GOOD = pageview(bytes=7)


def _record(offset: int, value: bytes | None) -> Any:
    return SimpleNamespace(
        topic="ns.events.pageviews", partition=3, offset=offset, timestamp=1234, value=value
    )


def test_split_keeps_order_and_reasons() -> None:
    records = [
        _record(0, orjson.dumps(GOOD)),
        _record(1, b"{oops"),
        _record(2, None),
        _record(3, orjson.dumps({**GOOD, "bytes": "x"})),
    ]
    good, dead = split(PAGE_VIEWS, records)
    assert [(d.offset, d.event["url"]) for d in good] == [(0, "/a")]
    assert [d.offset for d in dead] == [1, 2, 3]
    assert "not valid JSON" in dead[0].reason
    assert dead[1].reason == "record has no value"
    assert "bytes" in dead[2].reason


def test_payload_has_the_coordinates_the_bytes_and_null_for_no_value() -> None:
    letter = DeadLetter.of(_record(42, b"{oops"), "not valid JSON")
    body = orjson.loads(letter.payload())
    assert body["reason"] == "not valid JSON"
    assert (body["topic"], body["partition"], body["offset"], body["ingest_ms"]) == (
        "ns.events.pageviews",
        3,
        42,
        1234,
    )
    assert base64.b64decode(body["value_b64"]) == b"{oops"
    assert letter.key == b"ns.events.pageviews:3:42"
    assert orjson.loads(DeadLetter.of(_record(7, None), "no value").payload())["value_b64"] is None


class _FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes, headers: Any) -> Any:
        self.sent.append((topic, key, value))
        return SimpleNamespace(get=lambda timeout: None)

    def flush(self, timeout: float) -> None:
        return None


def test_the_writer_counts_per_layer_and_sends_to_the_dlq() -> None:
    registry = CollectorRegistry()
    writer = DeadLetters(load_settings(namespace="unit"), layer="speed", registry=registry)
    fake = _FakeProducer()
    writer._producer = fake
    _, dead = split(PAGE_VIEWS, [_record(1, b"{"), _record(2, b"[]")])
    writer.report(dead)
    assert writer.flush() == 2
    assert [(t, k) for t, k, _ in fake.sent] == [
        ("unit.events.dlq", b"ns.events.pageviews:3:1"),
        ("unit.events.dlq", b"ns.events.pageviews:3:2"),
    ]
    assert registry.get_sample_value("lambdalab_dead_letters_total", {"layer": "speed"}) == 2
