"""Property-based tests of the whole pipeline: adversarial input through every layer.

Hypothesis draws events at the edges of every type (``tests/strategies.py``: ints at and
beyond ±2**63, times at the ends of the accepted range with odd UTC offsets and 0 to 9
fraction digits, strings of MAX_STRING and MAX_STRING + 1 characters, the key separator,
the escape, ``(none)``, controls, emoji, U+2028, nulls, wrong types, unknown fields),
each with the verdict it must get and, when valid, the normalised event the log must hold.

1. Through the HTTP edge (batches as JSON arrays or NDJSON, then each event alone), every
   event is accepted (200) or rejected with a 4xx naming the offending field, never a 5xx.
   Every accepted event is then in the master dataset once (by event id and by Kafka
   coordinates), is never a dead letter, and every registered view's batch rows, realtime
   partials, merged answers and HTTP answers equal the plain-Python oracle
   (``tests/oracle.py``) for every key and bucket: count, sum, min and max exactly, HLL
   estimates within HLL_SIGMAS relative standard errors.
2. Every bad value alone, time texts with an intruding character included, is a 422
   naming its field, and nothing reaches the log (the edge alone, so it shrinks fast).
3. Raw bytes written straight to Kafka, mixed with valid records, in two rounds: every
   malformed record is one dead letter with its reason (keyed by topic:partition:offset,
   reported once per layer), every valid one is landed and counted by the speed layer,
   and both layers go on.

Each example runs real services, so example counts are modest; for a long run set
``LAMBDALAB_HYPOTHESIS_EXAMPLES`` (default 100): tests 1 and 2 draw that many examples,
test 3 a twelfth as many (each in a namespace of its own, dropped after it). Test 1 checks
the pipeline once, over the events of all its examples.
"""

from __future__ import annotations

import base64
import io
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from kafka import KafkaProducer
from prometheus_client import REGISTRY

from batch.archiver import land
from batch.master import read_master
from batch.reader import BatchReader
from batch.tasks import run_cycle
from lambdalab.deadletters import read_dead_letters
from lambdalab.hdfs import webhdfs
from lambdalab.paths import RedisKeys
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.topics import dlq_key, end_offsets, ensure_topics, read_topic
from serving.app import create_app
from serving.query import merged_query
from speed.consumer import catch_up
from speed.reader import SpeedReader
from tests.namespaces import namespace
from tests.oracle import Cell, measures
from tests.strategies import (
    BAD_OR_INTRUDED,
    EPOCH,
    VALID_AT_THE_EDGE,
    Candidate,
    RawRecord,
    batches,
    candidates,
    ms_text,
    pools,
    raw_rounds,
)
from views import registry
from views.definition import ViewDef, hll_estimate, hll_rse

EXAMPLES = int(os.environ.get("LAMBDALAB_HYPOTHESIS_EXAMPLES", "100"))
WRITE = {"X-API-Key": "dev-write-key"}
READ = {"X-API-Key": "dev-read-key"}
NDJSON = "application/x-ndjson"
HLL_SIGMAS = 2
EVERY_BUCKET = (-(2**62), 2**62)


def _examples(n: int) -> Any:
    return hsettings(
        max_examples=n,
        deadline=None,
        database=None,  # nothing written to the repository; a failure prints its seed
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@contextmanager
def _reported(capsys: pytest.CaptureFixture[str], line: Callable[[], str]) -> Iterator[None]:
    """Print how much a test tried, pass or fail (past pytest's capture)."""
    started = time.monotonic()
    try:
        yield
    finally:
        with capsys.disabled():
            print(f"\n{line()} in {time.monotonic() - started:.0f} s")


# --- the edge's verdict -------------------------------------------------------------------


def _names_offending(reason: str, candidate: Candidate) -> bool:
    """The reason names a field the candidate is wrong in (and no field it is right in)."""
    if reason.startswith("unknown field"):
        return bool(candidate.unknown) and all(n in reason for n in candidate.unknown)
    quoted = re.findall(r"field '([^']*)'", reason)
    return bool(quoted) and set(quoted) <= candidate.broken


def _post(client: TestClient, body: str, content_type: str) -> Any:
    r = client.post(
        "/events", content=body.encode(), headers={**WRITE, "Content-Type": content_type}
    )
    assert r.status_code < 500, f"{r.status_code} for {body[:300]!r}: {r.text[:500]}"
    return r


@dataclass
class Accepted:
    """What the edge accepted so far: (partition, offset) -> the normalised event."""

    events: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    examples: int = 0
    posted: int = 0
    rejected: int = 0

    def record(self, r: Any, sent: list[Candidate]) -> None:
        assert r.status_code == 200, f"{r.status_code}: {r.text[:500]} for {sent!r}"[:2000]
        offsets = r.json()["offsets"]
        assert len(offsets) == len(sent), r.text
        for at, c in zip(offsets, sent, strict=True):
            coords = (at["partition"], at["offset"])
            assert coords not in self.events, f"offset {coords} handed out twice"
            assert c.expected is not None
            self.events[coords] = c.expected


def _post_batch(client: TestClient, batch: list[Candidate], seen: Accepted, ndjson: bool) -> None:
    """All or nothing: one bad item rejects the batch, naming each bad item and its field."""
    texts = [c.body(ascii_only=i % 2 == 0) for i, c in enumerate(batch)]
    body = "\n".join(texts) if ndjson else f"[{','.join(texts)}]"
    r = _post(client, body, NDJSON if ndjson else "application/json")
    bad = {i for i, c in enumerate(batch) if c.expected is None}
    if not bad:
        seen.record(r, batch)
        return
    assert r.status_code == 422, f"{r.status_code} for a batch with bad items {sorted(bad)}"
    errors = {e["index"]: e["reason"] for e in r.json()["errors"]}
    assert set(errors) == bad, f"errors {errors} for bad items {sorted(bad)}: {batch!r}"
    for i, reason in errors.items():
        assert _names_offending(reason, batch[i]), f"{reason!r} for {batch[i]!r}"


def _post_each(client: TestClient, batch: list[Candidate], seen: Accepted) -> None:
    """Each event alone, as one JSON object: 200, or 422 naming its offending field."""
    for c in batch:
        r = _post(client, c.body(ascii_only=False), "application/json")
        seen.posted += 1
        if c.expected is not None:
            seen.record(r, [c])
            continue
        seen.rejected += 1
        assert r.status_code == 422, f"{r.status_code} {r.text[:300]} for {c!r}"[:2000]
        (error,) = r.json()["errors"]
        assert _names_offending(error["reason"], c), f"{error['reason']!r} for {c!r}"[:2000]


# --- the oracle and the layers ------------------------------------------------------------


def _differences(
    view: ViewDef, want: dict[str, Any], got: dict[str, Any], *, estimates: bool
) -> list[str]:
    """Measures of ``got`` that differ from the oracle's (hll within HLL_SIGMAS errors)."""
    out = []
    for m in view.measures:
        w, g = want[m.name], got.get(m.name)
        if m.kind == "hll":
            est = float(g or 0) if estimates else hll_estimate(g)
            if abs(est - len(w)) > max(HLL_SIGMAS * hll_rse() * len(w), 0.5):
                seen = ", ".join(_short(v) for v in sorted(w)[:5])
                out.append(f"{m.name}: estimate {est} of {len(w)} distinct ({seen})")
        elif g != w:
            out.append(f"{m.name}: {g!r}, want {w!r}")
    return out


def _batch_cells(settings: Settings, view: ViewDef) -> dict[Cell, dict[str, Any]]:
    """Every (key, bucket) row of the current version: keys listed from its Parquet files,
    values read as the serving layer reads them (:class:`BatchReader`)."""
    reader = BatchReader(settings)
    info = reader.current(view.name)
    assert info is not None, f"no published version of {view.name}"
    client = webhdfs(settings)
    found: set[Cell] = set()
    for name in client.list(f"{info.path}/data"):
        if name.endswith(".parquet") and not name.startswith(("_", ".")):
            with client.read(f"{info.path}/data/{name}") as f:
                table = pq.read_table(io.BytesIO(f.read()), columns=["key", "bucket_ms"])
            found |= set(zip(*table.to_pydict().values(), strict=True))
    return {(k, b): reader.rows(view.name, info.version, k, b, b + 1)[b] for k, b in found}


def _speed_cells(settings: Settings, view: ViewDef) -> dict[Cell, dict[str, Any]]:
    """Every (key, bucket) partial of the speed layer, over all its ingest windows."""
    reader, keys = SpeedReader(settings), RedisKeys(settings)
    names: set[bytes] = set()
    for p in range(settings.kafka.partitions):
        part = keys.partition(settings.topic_for(view.stream), p)
        for window in reader.client.zrange(part.windows(view.name), 0, -1):
            names |= reader.client.smembers(part.window_keys(view.name, int(window)))
    return {
        (key, bucket): row
        for key in (n.decode() for n in names)
        for bucket, row in reader.partials(view.name, key, 0, *EVERY_BUCKET).items()
    }


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}...({len(text)} chars)"


def _where(cell: Cell) -> str:
    return f"key {_short(cell[0])} bucket {ms_text(cell[1])}"


def _compare(
    view: ViewDef,
    layer: str,
    want: dict[Cell, dict[str, Any]],
    got: dict[Cell, dict[str, Any]],
    *,
    estimates: bool = False,
) -> list[str]:
    problems = [f"{layer} {view.name}: missing {_where(c)}" for c in sorted(set(want) - set(got))]
    problems += [f"{layer} {view.name}: extra {_where(c)}" for c in sorted(set(got) - set(want))]
    for cell in sorted(set(want) & set(got)):
        diff = _differences(view, want[cell], got[cell], estimates=estimates)
        problems += [f"{layer} {view.name} {_where(cell)}: {d}" for d in diff]
    return problems


def _report(problems: list[str]) -> str:
    kinds = Counter(" ".join(p.split()[:2]) for p in problems)
    return f"{len(problems)} differences ({dict(kinds)}):\n" + "\n".join(problems[:30])


def _merged_cells(settings: Settings, view: ViewDef, keys: set[str]) -> dict[Cell, Any]:
    """The serving layer's merged answer for every key, over all its buckets."""
    batch, speed = BatchReader(settings), SpeedReader(settings)
    out: dict[Cell, Any] = {}
    for key in keys:
        answer = merged_query(settings, batch, speed, view, key, EVERY_BUCKET)
        out |= {(key, row["bucket_ms"]): row for row in answer["merged"]}
    return out


def _http_cells(client: TestClient, view: ViewDef, want: dict[Cell, Any]) -> list[str]:
    """``GET /views/{view}`` for each (key, bucket), from the bucket's start to its end,
    compared with the oracle; a non-200 answer is one problem for its cell."""
    width = view.bucket_s * 1000
    got: dict[Cell, Any] = {}
    answered: dict[Cell, Any] = {}
    problems: list[str] = []
    for cell, row in want.items():
        key, bucket = cell
        span = {"from": ms_text(bucket), "to": ms_text(bucket + width)}
        r = client.get(f"/views/{view.name}", params={"key": key, **span}, headers=READ)
        if r.status_code != 200:
            problems.append(f"http {view.name} {_where(cell)}: {r.status_code} {r.text[:200]}")
            continue
        answered[cell] = row
        got |= {(key, b["bucket_ms"]): b for b in r.json()["merged"]}
    return problems + _compare(view, "http", answered, got, estimates=True)


def _check_master(
    settings: Settings,
    want: dict[tuple[int, int], dict[str, Any]],
    sent: dict[tuple[int, int], bytes | None] | None = None,
) -> None:
    """Each event once, by coordinates and by event id, with its normalised fields and
    its raw bytes (``sent``, else the normalised event's JSON)."""
    rows = read_master(webhdfs(settings), settings, PAGE_VIEWS.name).to_pylist()
    coords = Counter((r["partition"], r["offset"]) for r in rows)
    twice = sorted(c for c, n in coords.items() if n > 1)
    assert set(coords) == set(want) and not twice, (
        f"landed but not accepted {sorted(set(coords) - set(want))}, accepted but not landed "
        f"{sorted(set(want) - set(coords))}, landed twice {twice}"
    )
    ids = Counter(r["event_id"] for r in rows)
    assert ids == Counter(e["event_id"] for e in want.values())
    for r in rows:
        expected = want[(r["partition"], r["offset"])]
        got = {f: r[f] for f in PAGE_VIEWS.field_names}
        moment = got[PAGE_VIEWS.time_field]
        got[PAGE_VIEWS.time_field] = ms_text((moment - EPOCH) // timedelta(milliseconds=1))
        where = (r["partition"], r["offset"])
        assert got == expected, f"master row at {where}"
        if sent is None:
            assert orjson.loads(r["value"]) == expected, f"raw bytes at {where}"
        else:
            assert r["value"] == sent[where], f"raw bytes at {where}"


def _check_views(settings: Settings, events: list[dict[str, Any]], *, batch: bool) -> list[str]:
    """Differences of every layer from the oracle, for every registered view of the stream."""
    problems = []
    for view in registry.views_of(PAGE_VIEWS.name).values():
        want = measures(view, events)
        problems += _compare(view, "speed", want, _speed_cells(settings, view))
        if batch:
            problems += _compare(view, "batch", want, _batch_cells(settings, view))
            merged = _merged_cells(settings, view, {k for k, _b in want})
            problems += _compare(view, "merged", want, merged, estimates=True)
    return problems


# --- 1. through the HTTP edge -------------------------------------------------------------


def test_adversarial_events_through_the_edge_are_counted_once_in_every_layer(
    stack: Settings, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    ensure_topics(settings)
    seen = Accepted()

    def line() -> str:
        return (
            f"edge property: {seen.examples} examples, {seen.posted} events posted one by "
            f"one or in valid batches, {len(seen.events)} accepted, {seen.rejected} rejected"
        )

    with _reported(capsys, line), TestClient(create_app(settings)) as client:

        @_examples(EXAMPLES)
        @given(batch=batches(PAGE_VIEWS), ndjson=st.booleans())
        def edge(batch: list[Candidate], ndjson: bool) -> None:
            seen.examples += 1
            _post_batch(client, batch, seen, ndjson)
            if any(c.expected is None for c in batch):
                _post_each(client, batch, seen)
            else:
                seen.posted += len(batch)

        edge()
        assert seen.events, "no example had a valid event: the strategy is broken"
        assert land(settings, PAGE_VIEWS)["dead_letters"] == 0
        _check_master(settings, seen.events)
        window_ms = settings.batch.window_s * 1000
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        cut = (now_ms // window_ms + 2) * window_ms  # nothing is sent after it
        report = run_cycle(settings, cut_ms=cut, trino=False, allow_future_cut=True)
        assert report["ok"], report
        assert report["landed"][PAGE_VIEWS.name]["rows"] == 0  # landed once, above
        catch_up(settings, PAGE_VIEWS)
        events = list(seen.events.values())
        problems = _check_views(settings, events, batch=True)
        for view in registry.views_of(PAGE_VIEWS.name).values():
            problems += _http_cells(client, view, measures(view, events))
        assert not problems, _report(problems)
        assert read_dead_letters(settings) == {}, "an event the edge accepted is a dead letter"


BAD_EVENTS = pools(PAGE_VIEWS, VALID_AT_THE_EDGE).flatmap(
    lambda pool: candidates(PAGE_VIEWS, pool, "fields", BAD_OR_INTRUDED, VALID_AT_THE_EDGE)
)
# Found by this test (CPython 3.11's datetime.fromisoformat under Stream.validate): one
# arbitrary character between the time and its offset (when the time has no fraction or
# 6+ fraction digits), or a NUL after the offset, is accepted and silently dropped.
JUNK_BEFORE_ZONE = Candidate(
    sent={
        "event_id": "e",
        "url": "/",
        "user_id": "u",
        "bytes": 0,
        "event_time": "2026-03-01T10:15:00x+05:45",
    },
    broken=frozenset({"event_time"}),
    unknown=frozenset(),
    expected=None,
)


def test_every_bad_value_is_a_4xx_naming_its_field_and_nothing_is_sent(
    stack: Settings, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = Accepted()

    def line() -> str:
        return f"bad values: {seen.examples} examples, {seen.rejected} rejected"

    with _reported(capsys, line), TestClient(create_app(settings)) as client:

        @_examples(EXAMPLES)
        @given(candidate=BAD_EVENTS)
        @example(candidate=JUNK_BEFORE_ZONE)
        def edge(candidate: Candidate) -> None:
            seen.examples += 1
            _post_each(client, [candidate], seen)

        edge()
        ensure_topics(settings)
        assert sum(end_offsets(settings, settings.topic_for(PAGE_VIEWS.name)).values()) == 0


# --- 2. raw bytes straight to the log -----------------------------------------------------


def _produce(settings: Settings, records: list[RawRecord]) -> dict[tuple[int, int], RawRecord]:
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    topic = settings.topic_for(PAGE_VIEWS.name)
    futures = [
        (r, producer.send(topic, value=r.value, key=r.key, partition=r.partition)) for r in records
    ]
    producer.flush()
    done = {}
    for record, future in futures:
        meta = future.get(timeout=30)
        done[(meta.partition, meta.offset)] = record
    producer.close()
    return done


def _archived_letters() -> float:
    sample = REGISTRY.get_sample_value("lambdalab_dead_letters_total", {"layer": "archiver"})
    return sample or 0.0


def _check_dead_letters(settings: Settings, produced: dict[tuple[int, int], RawRecord]) -> None:
    topic = settings.topic_for(PAGE_VIEWS.name)
    want = {dlq_key(topic, p, o): (p, o, r) for (p, o), r in produced.items() if not r.expected}
    letters = read_dead_letters(settings)
    assert set(letters) == set(want), f"dead letters {sorted(letters)}, want {sorted(want)}"
    for key, letter in letters.items():
        p, o, record = want[key]
        assert letter["reason"] and (letter["topic"], letter["partition"], letter["offset"]) == (
            topic,
            p,
            o,
        )
        raw = None if record.value is None else base64.b64encode(record.value).decode()
        assert letter["value_b64"] == raw, f"{key!r}: the original bytes are not kept"
        if record.event is not None:
            assert _names_offending(letter["reason"], record.event), (letter, record)
    reports = Counter(r.key for r in read_topic(settings, settings.dlq_topic))
    assert set(reports.values()) <= {1, 2}, f"reported more than once per layer: {reports}"


PARTITIONS = 4  # records are drawn onto partitions 0..3


def test_raw_records_are_dead_letters_or_counted_once_and_no_layer_stops(
    stack: Settings, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert settings.kafka.partitions >= PARTITIONS, "the strategy writes to 4 partitions"
    tally: Counter[str] = Counter()

    @_examples(max(4, EXAMPLES // 12))
    @given(rounds=raw_rounds(PAGE_VIEWS, PARTITIONS))
    def through_the_log(rounds: tuple[list[RawRecord], list[RawRecord]]) -> None:
        tally["examples"] += 1
        with namespace(settings) as ns:  # one per example, dropped after it
            produced = _land_and_catch_up(ns, rounds)
            tally["records"] += len(produced)
            tally["dead"] += sum(1 for r in produced.values() if r.expected is None)
            valid = {c: r.expected for c, r in produced.items() if r.expected is not None}
            _check_master(ns, valid, {c: r.value for c, r in produced.items()})
            _check_dead_letters(ns, produced)
            problems = _check_views(ns, list(valid.values()), batch=False)
            assert not problems, _report(problems)

    def line() -> str:
        return (
            f"raw records: {tally['examples']} examples, {tally['records']} records written, "
            f"{tally['dead']} of them malformed"
        )

    with _reported(capsys, line):
        through_the_log()


def _land_and_catch_up(
    ns: Settings, rounds: tuple[list[RawRecord], list[RawRecord]]
) -> dict[tuple[int, int], RawRecord]:
    """Each round: write, land, catch up; the second round shows both layers go on."""
    ensure_topics(ns)
    produced: dict[tuple[int, int], RawRecord] = {}
    letters_before = _archived_letters()
    for records in rounds:
        batch = _produce(ns, records)
        produced |= batch
        dead = sum(1 for r in batch.values() if r.expected is None)
        manifest = land(ns, PAGE_VIEWS)
        assert (manifest["rows"], manifest["dead_letters"]) == (len(batch) - dead, dead)
        consumer = catch_up(ns, PAGE_VIEWS)
        assert (consumer.applied, consumer.dead) == (len(batch) - dead, dead)
    dead_total = sum(1 for r in produced.values() if r.expected is None)
    assert _archived_letters() - letters_before == dead_total  # reported once by the archiver
    ends = end_offsets(ns, ns.topic_for(PAGE_VIEWS.name))
    assert SpeedReader(ns).stream_offsets(PAGE_VIEWS.name) == ends
    return produced
