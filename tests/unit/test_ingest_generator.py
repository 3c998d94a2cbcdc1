"""Unit tests of the generator: determinism, skew, late fraction, bursts (no services)."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from ingest.generator import GeneratorConfig, generate, run
from lambdalab.schema import PAGE_VIEWS, parse_ts_ms

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _events(seed: int, n: int, **kw: float) -> list:
    return list(generate(GeneratorConfig(seed=seed, **kw), START, n))  # type: ignore[arg-type]


def test_same_seed_same_events_byte_for_byte() -> None:
    a = [orjson.dumps(p.event) for p in _events(7, 500)]
    b = [orjson.dumps(p.event) for p in _events(7, 500)]
    c = [orjson.dumps(p.event) for p in _events(8, 500)]
    assert a == b
    assert a != c


def test_events_are_valid_and_encode_to_the_bytes_written() -> None:
    for p in _events(3, 300):
        event, reason = PAGE_VIEWS.validate(p.event)
        assert reason is None
        assert PAGE_VIEWS.encode(event) == orjson.dumps(p.event)  # type: ignore[arg-type]
    ids = [p.event["event_id"] for p in _events(3, 300)]
    assert len(set(ids)) == len(ids)


def test_late_fraction_and_late_event_times() -> None:
    planned = _events(11, 4000, late_fraction=0.2)
    late = [p for p in planned if p.late]
    assert 0.17 < len(late) / len(planned) < 0.23
    for p in planned:
        sent_ms = int(START.timestamp() * 1000 + p.due_s * 1000)
        age_s = (sent_ms - parse_ts_ms(p.event["event_time"])) / 1000
        if p.late:
            assert 119 <= age_s <= 3 * 3600 + 1
        else:
            assert abs(age_s) <= 0.002


def test_urls_are_zipf_skewed() -> None:
    counts = Counter(p.event["url"] for p in _events(5, 5000))
    top = counts.most_common(1)[0][1]
    assert top > 5000 / 500 * 20  # the hottest page gets far more than a uniform share
    assert len(counts) > 100  # and there is a long tail


def _fastest_span(planned: list, n: int) -> float:
    """The shortest time in which ``n`` consecutive events are due."""
    return min(b.due_s - a.due_s for a, b in zip(planned, planned[n - 1 :], strict=False))


def test_bursts_raise_the_rate() -> None:
    rate, factor, length = 100.0, 8.0, 200
    shape = {"rate": rate, "burst_factor": factor, "burst_events": length}
    planned = _events(9, 3000, burst_chance=0.01, **shape)
    steady = _events(9, 3000, burst_chance=0.0, **shape)  # same seed, bursts off
    gaps = [b.due_s - a.due_s for a, b in itertools.pairwise(planned)]
    assert min(gaps) >= 0
    assert planned[-1].due_s < 3000 / 100  # bursts make it faster than the base rate
    # Without bursts 3000 events take 3000/rate = 30 s (sd 0.55 s); with a burst of 200
    # after ~100 steady events, two thirds of them come 8 times faster: ~12.5 s (seeds
    # 0..199: 7.4 to 17.6 s, never above 0.59 of the same seed's steady time). The first
    # assertion above alone passes with bursts off about half the time (seed 9: 29.3 s).
    assert abs(steady[-1].due_s - 3000 / rate) < 3
    assert planned[-1].due_s < 0.7 * steady[-1].due_s
    # Inside a burst the rate is rate * factor: the fastest run of `length` events takes
    # length / (rate * factor) = 0.25 s (sd 0.018 s); without bursts, length / rate = 2 s.
    assert _fastest_span(planned, length) == pytest.approx(length / (rate * factor), rel=0.25)
    assert _fastest_span(steady, length) > 0.6 * length / rate


def test_run_writes_what_the_sink_accepted() -> None:
    planned = _events(2, 1234)
    got: list[dict] = []

    def sink(batch: list[dict]) -> int:
        got.extend(batch)
        return len(batch)

    import io

    out = io.BytesIO()
    sent = run(iter(planned), sink, paced=False, out=out, batch_size=100)
    assert sent == 1234
    lines = out.getvalue().splitlines()
    assert lines == [orjson.dumps(p.event) for p in planned]
    assert got == [p.event for p in planned]
