"""The pipeline history ring buffer: rates between samples, capacity, the sampler thread."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from serving.history import History, Sampler, rate

pytestmark = pytest.mark.unit
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def status(records: int | None, lag: int | None = 0, age: float | None = 1.5) -> dict[str, Any]:
    """One stream's status as serving.pipeline.stream_status shapes it."""
    ingest = {"records": records} if records is not None else {"error": "Kafka down"}
    speed = {"lag_total": lag, "freshness_age_s": age} if lag is not None else {"error": "x"}
    return {"ingest": ingest, "speed": speed}


def test_rate_is_records_per_second_between_samples_of_each_stream() -> None:
    history = History(capacity=10, interval_s=5)
    history.add(T0, {"a": status(100), "b": status(7)})
    history.add(T0 + 5_000, {"a": status(150, lag=3, age=0.5), "b": status(7)})
    history.add(T0 + 7_000, {"a": status(151), "b": status(None, lag=None)})
    points = history.points()
    assert [p["at_ms"] for p in points] == [T0, T0 + 5_000, T0 + 7_000]
    assert points[0]["at"] == "2026-01-01T00:00:00.000Z"
    assert [p["streams"]["a"]["rate_per_s"] for p in points] == [None, 10.0, 0.5]
    assert [p["streams"]["b"]["rate_per_s"] for p in points] == [None, 0.0, None]
    assert points[1]["streams"]["a"] == {
        "records": 150,
        "lag_total": 3,
        "freshness_age_s": 0.5,
        "rate_per_s": 10.0,
    }
    assert points[2]["streams"]["b"] == {
        "records": None,
        "lag_total": None,
        "freshness_age_s": None,
        "rate_per_s": None,
    }


def test_rate_is_unknown_when_not_measurable() -> None:
    now = {"records": 10}
    assert rate(now, None, 5) is None  # first sample
    assert rate(now, {"records": 20}, 5) is None  # the topic was recreated
    assert rate(now, {"records": 4}, 0) is None  # no time between them
    assert rate({"records": None}, {"records": 4}, 2) is None
    assert rate(now, {"records": 4}, 2) == 3.0


def test_a_stream_appearing_later_starts_without_a_rate() -> None:
    history = History(capacity=4, interval_s=1)
    history.add(T0, {"a": status(1)})
    assert (
        history.add(T0 + 1_000, {"a": status(3), "b": status(9)})["streams"]["b"]["rate_per_s"]
        is None
    )


def test_ring_keeps_the_last_capacity_samples_oldest_first() -> None:
    history = History(capacity=3, interval_s=1)
    for i in range(7):
        history.add(T0 + i * 1_000, {"a": status(i * 2)})
    points = history.points()
    assert [p["at_ms"] for p in points] == [T0 + 4_000, T0 + 5_000, T0 + 6_000]
    assert all(p["streams"]["a"]["rate_per_s"] == 2.0 for p in points)
    points.clear()  # a copy: the buffer is untouched
    assert len(history.points()) == 3


def test_sampler_samples_until_stopped_and_survives_a_failing_read() -> None:
    history = History(capacity=100, interval_s=0.005)
    calls = iter(range(1_000))
    enough = threading.Event()

    def read() -> tuple[int, dict[str, Any]]:
        n = next(calls)
        if n == 1:
            msg = "backend gone"
            raise RuntimeError(msg)
        if n >= 4:
            enough.set()
        return T0 + n * 1_000, {"a": status(n)}

    sampler = Sampler(history, read)
    sampler.start()
    assert enough.wait(5), "the sampler did not sample"
    sampler.stop()
    kept = len(history.points())
    assert [p["at_ms"] for p in history.points()][:3] == [T0, T0 + 2_000, T0 + 3_000]
    assert history.points()[1]["streams"]["a"]["rate_per_s"] == 1.0  # (2 - 0) over 2 s
    assert len(history.points()) == kept  # stopped: nothing more is added
