"""The batch layer against the real stack: Spark views equal an independent oracle.

Events (late ones included) are generated here with their Kafka coordinates and written
as committed master files; the oracle (tests/oracle.py) is plain Python over the same
events filtered by ingest time < cut, never the code under test. One namespace and one
Spark session serve the whole module to keep the shared machine's load small.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from batch.master import commit_file, to_table
from batch.publish import VersionStore
from batch.reader import BatchReader
from batch.tasks import run_cycle
from lambdalab.hdfs import webhdfs
from lambdalab.paths import MasterFile
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from tests import oracle as truth
from tests.events import EventFactory
from tests.namespaces import namespace
from views.definition import Measure, ViewDef, hll_estimate, hll_rse
from views.registry import all_views, get_view

W_MS = 60_000
ROOT = Path(__file__).resolve().parents[2]
Event = tuple[int, int, int, dict[str, Any]]  # (partition, offset, ingest_ms, event)


def generate(seed: int, base_ms: int, windows: range, n: int) -> list[tuple[int, dict[str, Any]]]:
    """(ingest_ms, event) pairs over the given ingest windows; ~15 % arrive hours late."""
    rng = random.Random(seed)  # ingest times; the events come from the shared builder
    make = EventFactory(
        seed=seed,
        users=400,
        referrers=(None, "google", "bing", "news", "mail"),
        sizes=(100, 50_000),
        late_fraction=0.15,
        late_by_s=(3600.0, 3 * 86400.0),
        id_prefix=f"s{seed}-",
    )
    out = []
    for _ in range(n):
        ingest_ms = base_ms + rng.choice(windows) * W_MS + rng.randrange(W_MS)
        out.append((ingest_ms, make(at=ingest_ms - rng.randrange(30_000))))
    return sorted(out, key=lambda pair: pair[0])


def land_directly(settings: Settings, pairs: list[tuple[int, dict[str, Any]]]) -> list[Event]:
    """Write events as committed master files, one per (ingest window, partition)."""
    client = webhdfs(settings)
    nxt = _next_offsets(settings)
    events: list[Event] = []
    for ingest_ms, event in pairs:
        partition = zlib.crc32(event["event_id"].encode()) % 2
        events.append((partition, nxt[partition], ingest_ms, event))
        nxt[partition] += 1
    groups: dict[tuple[int, int], list[Event]] = defaultdict(list)
    for ev in events:
        groups[(ev[2] - ev[2] % W_MS, ev[0])].append(ev)
    for (window, partition), group in groups.items():
        mf = MasterFile(window, partition, group[0][1], group[-1][1])
        assert commit_file(
            client, settings, PAGE_VIEWS, mf, to_table(PAGE_VIEWS, _rows(settings, group))
        )
    return events


def _next_offsets(settings: Settings) -> dict[int, int]:
    from batch.master import list_files, next_offsets

    found = next_offsets(list_files(webhdfs(settings), settings, PAGE_VIEWS.name))
    return {p: found.get(p, 0) for p in (0, 1)}


def _rows(settings: Settings, group: list[Event]) -> list[dict[str, Any]]:
    from datetime import UTC, datetime

    return [
        {
            "topic": settings.topic_for(PAGE_VIEWS.name),
            "partition": p,
            "offset": o,
            "ingest_ts": datetime.fromtimestamp(i / 1000, tz=UTC),
            "key": None,
            "value": PAGE_VIEWS.encode(e),
            "event": e,
        }
        for p, o, i, e in group
    ]


def oracle(
    view: ViewDef, events: list[Event], cut_ms: int
) -> dict[tuple[str, int], dict[str, Any]]:
    """The oracle's exact measures (distinct counts exact) per (key, bucket) below the cut."""
    return truth.measures(view, [e for _p, _o, ingest_ms, e in events if ingest_ms < cut_ms])


NULL = "(none)"


def assert_matches(
    view: ViewDef,
    got: dict[tuple[str, int], dict[str, Any]],
    want: dict[tuple[str, int], dict[str, Any]],
) -> None:
    assert set(got) == set(want), f"{view.name}: (key, bucket) cells differ"
    bound = 3 * hll_rse()
    for cell, exact in want.items():
        for m in view.measures:
            if m.kind == "hll":
                n = len(exact.get(m.name, ()))
                est = hll_estimate(got[cell][m.name])
                assert abs(est - n) <= max(bound * n, 0.5), (view.name, cell, est, n)
                assert got[cell][f"{m.name}_estimate"] == pytest.approx(est)
            else:
                assert got[cell][m.name] == exact.get(m.name), (view.name, cell, m.name)


def served(settings: Settings, view: ViewDef) -> dict[tuple[str, int], dict[str, Any]]:
    """Every row of the current version, through the shared BatchReader interface."""
    reader = BatchReader(settings)
    info = reader.current(view.name)
    assert info is not None
    table = reader.cells(view.name, info.version, -(2**62), 2**62)
    return {(k, b): row for k, buckets in table.items() for b, row in buckets.items()}


# --- module fixtures: one namespace, one Spark session, one generated data set -----------


@pytest.fixture(scope="module")
def ns(stack: Settings, base_settings: Settings) -> Iterator[Settings]:
    batch = base_settings.batch.model_copy(update={"keep_versions": 2})
    with namespace(base_settings, batch=batch) as fresh:
        yield fresh


@pytest.fixture(scope="module")
def spark(stack: Settings) -> Iterator[Any]:
    from batch.spark import spark_session

    session = spark_session(stack, app_name="test-batch")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def base_ms() -> int:
    now = int(time.time() * 1000)
    return now - now % 3_600_000 - 2 * 3_600_000


@pytest.fixture(scope="module")
def events(ns: Settings, base_ms: int) -> list[Event]:
    return land_directly(ns, generate(seed=7, base_ms=base_ms, windows=range(10), n=3000))


@pytest.fixture(scope="module")
def extra() -> list[Event]:
    """Events landed by later tests (after the first run)."""
    return []


@pytest.fixture(scope="module")
def cut_ms(base_ms: int) -> int:
    return base_ms + 7 * W_MS


@pytest.fixture(scope="module")
def first(ns: Settings, spark: Any, events: list[Event], cut_ms: int) -> dict[str, Any]:
    report = run_cycle(ns, cut_ms=cut_ms, land=False, trino=True, spark=spark)
    assert report["ok"], report["summary"]
    return report


# --- tests, in order: they share the namespace's published versions ----------------------


def test_every_measure_of_every_view_equals_the_oracle(
    ns: Settings, first: dict[str, Any], events: list[Event], cut_ms: int
) -> None:
    assert {v for v, r in first["views"].items() if r["status"] == "published"} == set(all_views())
    for view in all_views().values():
        assert_matches(view, served(ns, view), oracle(view, events, cut_ms))


def test_lineage_names_cut_inputs_and_offsets(
    ns: Settings, first: dict[str, Any], events: list[Event], cut_ms: int
) -> None:
    info = BatchReader(ns).current("pageviews_by_url_hourly")
    assert info is not None and info.cut_ms == cut_ms
    lin = info.lineage
    below = [e for e in events if e[2] - e[2] % W_MS < cut_ms]
    want_next = {str(p): max(o for q, o, _, _ in below if q == p) + 1 for p in (0, 1)}
    assert lin["offsets"] == want_next
    windows = [MasterFile.parse(path.rsplit("/", 1)[1]) for path in lin["inputs"]]
    assert all(mf is not None and mf.window_ms < cut_ms for mf in windows)
    n_oracle = len(oracle(get_view("pageviews_by_url_hourly"), events, cut_ms))
    assert lin["rows"] == n_oracle and lin["version"] == info.version


def test_trino_current_view_returns_the_oracle_rows(
    ns: Settings, first: dict[str, Any], events: list[Event], cut_ms: int
) -> None:
    from batch.trino_tables import TrinoTables

    tables = TrinoTables(ns)
    view = get_view("bytes_by_referrer_daily")
    _, rows = tables.query(
        "SELECT referrer, key, bucket_ms, bytes, views FROM bytes_by_referrer_daily"
    )
    want = oracle(view, events, cut_ms)
    got = {(k, b): (r, s, c) for r, k, b, s, c in rows}
    assert set(got) == set(want)
    for (key, bucket), acc in want.items():
        referrer = None if key == NULL else key
        assert got[(key, bucket)] == (referrer, acc["bytes"], acc["views"])
    _, count = tables.query("SELECT count(*), count(DISTINCT event_id) FROM master_pageviews")
    assert count[0] == (len(events), len(events))


def test_a_second_run_with_no_new_data_publishes_nothing(
    ns: Settings, spark: Any, first: dict[str, Any], cut_ms: int
) -> None:
    store = VersionStore(ns)
    before = {v: store.published(v) for v in all_views()}
    again = run_cycle(ns, cut_ms=cut_ms, land=False, trino=True, spark=spark)
    assert again["ok"]
    assert {r["status"] for r in again["views"].values()} == {"unchanged"}
    assert {v: store.published(v) for v in all_views()} == before


def test_a_run_killed_after_the_swap_but_before_its_marker_is_not_republished(
    ns: Settings, spark: Any, first: dict[str, Any], cut_ms: int
) -> None:
    store = VersionStore(ns)
    name = "pageviews_by_url_hourly"
    marker = store.marker(name, first["views"][name]["fingerprint"])
    store.client.delete(marker)  # the state a SIGKILL right after the rename leaves
    before = store.published(name)
    again = run_cycle(ns, cut_ms=cut_ms, land=False, trino=False, views=[name], spark=spark)
    assert again["views"][name]["status"] == "unchanged"
    assert store.published(name) == before
    assert store.exists(marker), "the marker is repaired from the newest lineage"


def test_time_moving_on_past_the_data_publishes_once(
    ns: Settings, spark: Any, first: dict[str, Any], events: list[Event], base_ms: int
) -> None:
    view = get_view("visitors_by_url_hourly")
    late_cut = base_ms + 15 * W_MS
    moved = run_cycle(ns, cut_ms=late_cut, land=False, trino=False, views=[view.name], spark=spark)
    assert moved["views"][view.name]["status"] == "published"
    assert_matches(view, served(ns, view), oracle(view, events, late_cut))
    later = run_cycle(
        ns, cut_ms=late_cut + 5 * W_MS, land=False, trino=False, views=[view.name], spark=spark
    )
    assert later["views"][view.name]["status"] == "unchanged"


def test_a_changed_view_definition_publishes_a_new_version(
    ns: Settings, spark: Any, first: dict[str, Any], events: list[Event], cut_ms: int
) -> None:
    from batch.trino_tables import TrinoTables

    old = get_view("pageviews_by_url_hourly")
    changed = replace(old, measures=(*old.measures, Measure("bytes_total", "sum", "bytes")))
    before = VersionStore(ns).published(old.name)
    report = run_cycle(ns, cut_ms=cut_ms, land=False, trino=True, views=[changed], spark=spark)
    assert report["views"][old.name]["status"] == "published"
    assert VersionStore(ns).published(old.name)[0] == before[0] + 1
    assert_matches(changed, served(ns, changed), oracle(changed, events, cut_ms))
    _, rows = TrinoTables(ns).query(f"SELECT sum(bytes_total) FROM {old.name}")
    assert rows[0][0] == sum(e["bytes"] for _, _, i, e in events if i < cut_ms)
    columns, rows = TrinoTables(ns).query(f'SELECT * FROM "{old.name}__v{before[0]}"')
    assert "bytes_total" not in columns, "older versions stay queryable, unchanged"
    assert len(rows) == len(oracle(old, events, cut_ms))


@pytest.mark.parametrize("point", ["build", "before-swap"])
def test_sigkill_leaves_the_served_version_and_the_next_run_succeeds(
    ns: Settings,
    spark: Any,
    first: dict[str, Any],
    events: list[Event],
    extra: list[Event],
    base_ms: int,
    point: str,
) -> None:
    view = get_view("bytes_by_referrer_daily")
    store = VersionStore(ns)
    served_before = store.published(view.name)[0]
    lineage_before = store.lineage(view.name, served_before)
    more = land_directly(
        ns, generate(seed=SEEDS[point], base_ms=base_ms, windows=range(20, 22), n=200)
    )
    cut = base_ms + 30 * W_MS
    _run_and_kill(ns, view.name, cut, point)
    assert store.published(view.name)[0] == served_before
    assert store.lineage(view.name, served_before) == lineage_before
    assert store._list(store.paths.staging(view.name)), "the killed run left its staging dir"
    report = run_cycle(ns, cut_ms=cut, land=False, trino=False, views=[view.name], spark=spark)
    assert report["ok"] and report["views"][view.name]["status"] == "published"
    assert store._list(store.paths.staging(view.name)) == []
    extra.extend(more)
    assert_matches(view, served(ns, view), oracle(view, events + extra, cut))


SEEDS = {"build": 11, "before-swap": 12}


def _run_and_kill(ns: Settings, view: str, cut: int, point: str) -> None:
    env = {**os.environ, "LAMBDALAB_NAMESPACE": ns.namespace, "LAMBDALAB_BATCH_PAUSE_AT": point}
    cmd = [
        str(ROOT / ".venv/bin/lambdalab"),
        "batch",
        "run",
        "--no-land",
        "--no-trino",
        "--cut-ms",
        str(cut),
        "--view",
        view,
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 240
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if f"PAUSED {point}" in line:
            break
        assert time.monotonic() < deadline, "batch run never reached the pause point"
    else:
        pytest.fail(f"batch run exited ({proc.wait()}) before {point}: {''.join(seen)[-2000:]}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_versions_beyond_keep_are_pruned_and_raw_data_is_kept(
    ns: Settings, first: dict[str, Any], events: list[Event], extra: list[Event]
) -> None:
    from batch.master import list_files

    # bytes_by_referrer_daily: v1 (first run), v2 and v3 (after each kill); keep = 2
    assert VersionStore(ns).published("bytes_by_referrer_daily") == [3, 2]
    landed = list_files(webhdfs(ns), ns, PAGE_VIEWS.name)
    assert sum(mf.last_offset - mf.first_offset + 1 for _, mf in landed) == len(events + extra)


def test_spark_hll_sketches_union_with_python_sketches(spark: Any) -> None:
    from datasketches import hll_sketch

    from views.definition import hll_of, hll_union

    values = [f"user-{i}" for i in range(2000)]
    more = [f"other-{i}" for i in range(1000)]
    df = spark.createDataFrame([(v,) for v in values], "v STRING")
    blob = bytes(df.selectExpr("hll_sketch_agg(v, 12) AS s").collect()[0]["s"])
    assert abs(hll_sketch.deserialize(blob).get_estimate() - 2000) <= 3 * hll_rse() * 2000
    same = hll_estimate(hll_union([blob, hll_of(values)]))
    assert abs(same - 2000) <= 3 * hll_rse() * 2000, "same values hashed differently"
    both = hll_estimate(hll_union([blob, hll_of(more)]))
    assert abs(both - 3000) <= 3 * hll_rse() * 3000
    merged = spark.createDataFrame([(bytearray(blob),), (bytearray(hll_of(more)),)], "s BINARY")
    est = merged.selectExpr("hll_sketch_estimate(hll_union_agg(s)) AS e").collect()[0]["e"]
    assert abs(est - 3000) <= 3 * hll_rse() * 3000


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp_inbox() -> Iterator[tuple[int, list[Any]]]:
    """A local SMTP server (aiosmtpd) collecting the messages it receives."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    inbox: list[Any] = []

    class Collect(Message):
        def handle_message(self, message: Any) -> None:
            inbox.append(message)

    port = _free_port()
    controller = Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port, inbox
    controller.stop()


def test_a_failed_build_mails_the_operator_and_changes_nothing(
    ns: Settings, spark: Any, first: dict[str, Any], smtp_inbox: tuple[int, list[Any]], base_ms: int
) -> None:
    from batch.build import Plan
    from batch.tasks import BatchContext, run_tasks

    port, inbox = smtp_inbox
    batch = ns.batch.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": port, "notify_to": ["ops@example.org"]}
    )
    mailing = ns.model_copy(update={"batch": batch})
    view = get_view("pageviews_by_url_hourly")
    store = VersionStore(mailing)
    before = store.published(view.name)
    missing = MasterFile(base_ms, 0, 10**9, 10**9 + 1)
    gone = f"{store.paths.master(PAGE_VIEWS.name)}/{missing.date_dir}/{missing.name}"
    plans = {view.name: Plan(view, base_ms + 60 * W_MS, [(gone, missing)])}
    ctx = BatchContext(mailing, store, plans, trino=False, spark_session=spark)
    assert run_tasks(ctx)["ok"] is False
    assert store.published(view.name) == before
    assert len(inbox) == 1
    assert inbox[0]["To"] == "ops@example.org"
    assert "BuildVersion pageviews_by_url_hourly failed" in inbox[0]["Subject"]
    assert missing.name in inbox[0].get_payload(decode=True).decode()


def test_batch_run_lands_from_kafka_then_builds_what_it_landed(
    settings: Settings, spark: Any
) -> None:
    from kafka import KafkaProducer

    from lambdalab.topics import ensure_topics

    ensure_topics(settings)
    now = int(time.time() * 1000)
    pairs = generate(seed=21, base_ms=now - now % W_MS, windows=range(1), n=300)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    for _, event in pairs:
        producer.send(settings.topic_for(PAGE_VIEWS.name), PAGE_VIEWS.encode(event))
    producer.flush()
    producer.close()
    view = get_view("bytes_by_referrer_daily")
    cut = now - now % W_MS + 10 * W_MS  # the override puts every record before the cut
    report = run_cycle(
        settings,
        cut_ms=cut,
        land=True,
        trino=False,
        views=[view.name],
        spark=spark,
        allow_future_cut=True,
    )
    assert report["ok"] and report["landed"]["pageviews"]["rows"] == len(pairs)
    sent = [(0, 0, 0, event) for _, event in pairs]  # ingest time < cut for all of them
    assert_matches(view, served(settings, view), oracle(view, sent, cut))
    lineage = BatchReader(settings).current(view.name).lineage  # type: ignore[union-attr]
    assert sum(int(n) for n in lineage["offsets"].values()) == len(pairs)
    assert len(lineage["manifests"]) == 1
