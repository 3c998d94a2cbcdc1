"""The dashboard in a real headless browser, over the real pipeline.

Events go through the real producer; one batch cycle publishes a version with a cut;
more events (and three malformed records) arrive after the cut; the speed consumer
catches up. The API runs under uvicorn; Debian chromium (driven by Playwright) opens
``/dashboard``. What the page shows is checked against the oracle (plain Python over the
events this test produced, :mod:`tests.oracle`): the top-N table for each order, N, range
and view the test picks, including an HLL view and a live refresh after new events; the
key picker's keys for a typed prefix and the series of the key picked; the health panel
(ingested, not landed, lag, dead letters, batch version); and the three history charts,
whose ingest rate must integrate to the records produced while the page was open.
Screenshots go to ``artifacts/dashboard.png`` and ``docs/dashboard.png``.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import uvicorn
from kafka import KafkaProducer
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from batch.tasks import run_cycle
from ingest.producer import EventProducer
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.topics import ensure_topics
from serving import pipeline as health_snapshot
from serving.app import create_app
from serving.routes import views as views_route
from speed.consumer import SpeedConsumer
from tests import oracle
from tests.events import EventFactory, pageview
from tests.namespaces import namespace
from views import registry
from views.definition import KEY_SEP, Measure, ViewDef
from views.registry import get_view

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS, DOCS = ROOT / "artifacts", ROOT / "docs"
VIEW, HLL_VIEW, URL = "pageviews_by_url_hourly", "visitors_by_url_hourly", "/dash"
# the other URLs, drawn in turn: /p/1 most often, then /other and /p/2, ...
OTHERS = ("/p/1", "/other", "/p/2", "/p/1", "/p/10", "/q/1", "/p/1", "/p/2", "/p/3", "/other")
READ = {"X-API-Key": "dev-read-key"}
# a view with a two-field key, registered for this module only (test_queries does the same)
MULTI = ViewDef(
    name="dash_by_url_referrer",
    stream="pageviews",
    keys=("url", "referrer"),
    bucket_s=3600,
    measures=(Measure("views", "count"), Measure("top_bytes", "max", "bytes")),
)
BAD = [b"not json", b'{"url": "/p/1"}', b"\xff\xfe"]  # three dead letters


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiServer:
    """The real app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _events(make: EventFactory, n: int, start: datetime) -> list[dict[str, Any]]:
    """Events of URL and the OTHERS; every 7th is late by two hours (an older bucket)."""
    out = []
    for i in range(n):
        when = start + timedelta(seconds=i) - (timedelta(hours=2) if i % 7 == 0 else timedelta())
        out.append(make(at=when, url=URL if i % 3 else OTHERS[i // 3 % len(OTHERS)]))
    return out


def _produce_raw(settings: Settings, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    for value in values:
        producer.send(settings.topic_for(PAGE_VIEWS.name), value=value)
    producer.flush()
    producer.close()


def _speed_catch_up(settings: Settings, timeout_s: float = 90.0) -> None:
    """Run the real speed consumer until it reaches the end offsets (bounded in time)."""
    consumer = SpeedConsumer(settings, PAGE_VIEWS)
    consumer.setup()
    stop = threading.Event()
    worker = threading.Thread(target=lambda: consumer.run(once=True, stop=stop))
    worker.start()
    worker.join(timeout_s)
    stuck = worker.is_alive()
    stop.set()
    worker.join(10)
    consumer.close()
    assert not stuck, f"speed consumer did not reach the end offsets in {timeout_s}s"


@pytest.fixture(scope="module")
def ns(stack: Settings) -> Iterator[Settings]:
    """This module's namespace: 2-second ingest windows, history sampled every 0.5 s, and
    MULTI registered beside the project's views."""
    batch = stack.batch.model_copy(update={"window_s": 2, "clock_skew_s": 0})
    api = stack.api.model_copy(update={"history_interval_s": 0.5, "history_points": 2_000})
    known = registry.all_views()
    with pytest.MonkeyPatch.context() as patch, namespace(stack, batch=batch, api=api) as fresh:
        for module in (registry, views_route, health_snapshot):  # each that imported it
            patch.setattr(module, "all_views", lambda: {**known, MULTI.name: MULTI})
        yield fresh


@dataclass
class Produced:
    """What the pipeline fixture put in the log: events (good ones) by side of the cut."""

    settings: Settings
    before: list[dict[str, Any]]
    after: list[dict[str, Any]]
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.events = self.before + self.after


@pytest.fixture(scope="module")
def pipeline(ns: Settings) -> Produced:
    settings = ns
    ensure_topics(settings)
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    make = EventFactory(seed=3)
    before, after = _events(make, 120, now), _events(make, 60, now + timedelta(seconds=200))
    producer = EventProducer(settings, PAGE_VIEWS)
    try:
        producer.send_many(before)
        _speed_catch_up(settings)
        time.sleep(2.5)  # the next ingest window boundary passes: the cut covers `before`
        report = run_cycle(settings, trino=False, views=[VIEW, HLL_VIEW, MULTI])
        assert report["ok"], report
        producer.send_many(after)
    finally:
        producer.close()
    _produce_raw(settings, BAD)
    _speed_catch_up(settings)
    return Produced(settings, before, after)


def _oracle(events: list[dict[str, Any]], key: str = URL) -> dict[int, int]:
    """Views of ``key`` per hour bucket, from the oracle."""
    rows = oracle.by_bucket(oracle.measures(get_view(VIEW), events), key)
    return {bucket: row["views"] for bucket, row in rows.items()}


def _top_oracle(
    events: list[dict[str, Any]], view: str, span: tuple[int, int], order: str, n: int
) -> list[tuple[str, dict[str, float]]]:
    """The oracle's top ``n`` keys of ``view`` over ``span`` by ``order`` (hll: exact count)."""
    definition = get_view(view)
    rows = oracle.selected(definition, events, span=span, width_ms=None, group_by=definition.keys)
    top = oracle.ordered(rows, definition.keys, [(order, True)])[:n]
    return [
        (
            KEY_SEP.join(row["key"][f] for f in definition.keys),
            {m.name: _number(row[m.name]) for m in definition.measures},
        )
        for row in top
    ]


def _number(value: Any) -> float:
    return float(len(value)) if isinstance(value, set) else float(value)


def _table(page: Any) -> list[tuple[str, dict[str, float]]]:
    """The top-N table as drawn: (key, {measure: value}) per row, in order."""
    out = []
    for row in page.query_selector_all("#top-n-table tbody tr[data-key]"):
        cells = row.query_selector_all("td[data-measure]")
        values = {
            c.get_attribute("data-measure"): float(c.get_attribute("data-value")) for c in cells
        }
        out.append((row.get_attribute("data-key"), values))
    return out


def _top_settled(page: Any, view: str, order: str, n: int, range_s: int) -> tuple[int, int]:
    """Wait until the table answers these settings; its [from, to) in ms."""
    page.wait_for_function(
        """([v, o, n, r]) => { const d = document.getElementById('top-n-table').dataset;
            return d.view === v && d.order === o && d.limit === n && d.rangeS === r; }""",
        arg=[view, order, str(n), str(range_s)],
        timeout=20_000,
    )
    data = page.eval_on_selector("#top-n-table", "t => [t.dataset.fromMs, t.dataset.toMs]")
    lo, hi = int(data[0]), int(data[1])
    assert hi - lo == range_s * 1000 and hi % 3_600_000 == 0  # the range asked, whole buckets
    return lo, hi


def _choose_top(page: Any, order: str, n: int, range_s: int) -> None:
    page.select_option("#top-order", order)
    page.select_option("#top-n", str(n))
    page.select_option("#top-range", str(range_s))


def _eventually(check: Any, timeout_s: float = 20.0) -> None:
    """Call ``check`` (which asserts) until it passes; its last failure after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _chart(page: Any, chart: str) -> dict[int, float]:
    """at_ms -> value of the pageviews line of one history chart, as drawn."""
    return {
        int(c.get_attribute("data-at-ms")): float(c.get_attribute("data-value"))
        for c in page.query_selector_all(f'#{chart} circle[data-stream="pageviews"]')
    }


def _cells(page: Any, selector: str) -> list[str]:
    return [c.inner_text() for c in page.query_selector_all(f"{selector} td")]


def test_dashboard_answers_like_the_oracle(pipeline: Produced) -> None:
    settings, events = pipeline.settings, pipeline.events
    ARTIFACTS.mkdir(exist_ok=True)
    with ApiServer(settings) as base:
        params = {"key": URL}
        params["to"] = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:00:00Z")
        params["from"] = (datetime.now(UTC) - timedelta(hours=22)).strftime("%Y-%m-%dT%H:00:00Z")
        answer = httpx.get(f"{base}/views/{VIEW}", params=params, headers=READ).json()
        assert {r["bucket_ms"]: r["views"] for r in answer["merged"]} == _oracle(events)
        assert answer["batch"] and answer["realtime"] and answer["version"] == 1
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            # the key is typed once and kept in localStorage, never carried in the URL
            page.add_init_script("localStorage.setItem('lambdalab-key', 'dev-read-key')")
            page.goto(f"{base}/dashboard?view={VIEW}&vkey={URL}&refresh=2&key=leaked")
            assert "key" not in parse_qs(urlparse(page.url).query)  # dropped from the URL
            try:
                page.wait_for_function(
                    "Number(document.body.dataset.refreshed || 0) >= 1", timeout=30_000
                )
            except PlaywrightError as exc:
                status = page.inner_text("#status")
                msg = f"no refresh: {status}; console: {problems}"
                raise AssertionError(msg) from exc
            _series_and_health(page, pipeline, answer)
            _top_n(page, events)
            _key_picker(page, events)
            _history_and_live_refresh(page, pipeline, base)
            for path in (ARTIFACTS / "dashboard.png", DOCS / "dashboard.png"):
                page.screenshot(path=str(path), full_page=True)
            _hll_top_n(page, pipeline.events)
            _multi_field_key(page, pipeline.events)
            browser.close()
    assert problems == []
    assert (DOCS / "dashboard.png").stat().st_size > 10_000


def _series_and_health(page: Any, produced: Produced, answer: dict[str, Any]) -> None:
    """The chosen key's series as the API answers it; every stream's health as produced."""
    assert _drawn(page)["batch"] == {int(b): r["views"] for b, r in answer["batch"].items()}
    assert _drawn(page)["realtime"] == {int(b): r["views"] for b, r in answer["realtime"].items()}
    cut = page.get_attribute("#cut-line", "data-cut-ms")
    assert cut is not None and int(cut) == answer["cut_ms"]
    logged = len(produced.events) + len(BAD)
    stream = _cells(page, '#health-streams tr[data-stream="pageviews"]')
    # ingested, not landed (the cycle landed `before` only), speed offsets, lag
    assert stream[1] == str(logged) and stream[2] == str(logged - len(produced.before))
    assert stream[3].startswith("p0:") and stream[4] == "0"
    assert page.inner_text("#health-lag") == "0"
    assert page.inner_text("#health-dead") == str(len(BAD))
    assert page.inner_text("#health-ingested") == str(logged)
    for view in (VIEW, HLL_VIEW):
        batch = _cells(page, f'#health-batch tr[data-view="{view}"]')
        assert batch[1] == "1" and batch[2] == answer["cut"][:19].replace("T", " ")
    reasons = _cells(page, "#health-dead-reasons tr[data-reason]")
    assert sum(int(n) for n in reasons[1::2]) == len(BAD)


def _top_n(page: Any, events: list[dict[str, Any]]) -> None:
    """The table equals the oracle's top N for the default and for changed settings."""
    span = _top_settled(page, VIEW, "views", 10, 86_400)
    assert _table(page) == _top_oracle(events, VIEW, span, "views", 10)
    assert page.get_attribute("#top-provenance", "data-version") == "1"
    for order, n, range_s in (
        ("max_bytes", 5, 3_600),
        ("min_bytes", 5, 21_600),
        ("views", 20, 3_600),
    ):
        _choose_top(page, order, n, range_s)
        span = _top_settled(page, VIEW, order, n, range_s)
        expected = _top_oracle(events, VIEW, span, order, n)
        assert _table(page) == expected, (order, n, range_s)
    # the last hour misses the late events: the ranges differ, so the check above can fail
    assert _top_oracle(events, VIEW, span, "views", 20) != _top_oracle(
        events, VIEW, (span[1] - 21_600_000, span[1]), "views", 20
    )


def _key_picker(page: Any, events: list[dict[str, Any]]) -> None:
    """A typed prefix lists exactly the oracle's keys with it; the one picked is drawn."""
    for prefix in ("/p/", "/p/1", "/nothing"):
        page.fill("#key-prefix", prefix)
        page.wait_for_function(
            "p => document.getElementById('key-list').dataset.prefix === p", arg=prefix
        )
        shown = [
            li.get_attribute("data-key") for li in page.query_selector_all("#key-list li[data-key]")
        ]
        assert shown == sorted({e["url"] for e in events if e["url"].startswith(prefix)}), prefix
    page.fill("#key-prefix", "/p/")
    page.wait_for_function("() => document.getElementById('key-list').dataset.prefix === '/p/'")
    page.click('#key-list li[data-key="/p/2"]')
    page.wait_for_function("() => document.getElementById('series').dataset.key === '/p/2'")
    merged = {
        int(c.get_attribute("data-bucket")): float(c.get_attribute("data-value"))
        for c in page.query_selector_all("#series circle.merged-dot")
    }
    assert {b: v for b, v in merged.items() if v} == _oracle(events, "/p/2")
    assert "vkey=%2Fp%2F2" in page.url


def _history_and_live_refresh(page: Any, produced: Produced, base: str) -> None:
    """New events show in the rate and lag charts, then (speed caught up) in the table."""
    page.wait_for_function(
        "() => ['chart-rate', 'chart-lag', 'chart-freshness'].every("
        "id => Number(document.getElementById(id).dataset.points || 0) >= 2)",
        timeout=20_000,
    )
    new = [
        pageview(
            event_id=f"live{i}",
            url="/p/live",
            user_id=f"u{i}",
            event_time=produced.events[0]["event_time"],
        )
        for i in range(25)
    ]
    producer = EventProducer(produced.settings, PAGE_VIEWS)
    try:
        producer.send_many(new)
    finally:
        producer.close()
    # the speed layer is stopped: its lag grows by exactly the new records
    _eventually(lambda: _assert_equal(_last(page, "chart-lag"), len(new)))
    _speed_catch_up(produced.settings)
    _eventually(lambda: _assert_equal(_last(page, "chart-lag"), 0))
    produced.events.extend(new)
    history = httpx.get(f"{base}/pipeline/history", headers=READ).json()["points"]
    rates = _chart(page, "chart-rate")
    samples = {p["at_ms"]: p["streams"]["pageviews"] for p in history}
    assert all(samples[at]["rate_per_s"] == v for at, v in rates.items())  # drawn as answered
    times = sorted(samples)
    landed = sum(
        samples[t]["rate_per_s"] * (t - prev) / 1000
        for prev, t in itertools.pairwise(times)
        if samples[t]["rate_per_s"] is not None
    )
    assert abs(landed - len(new)) < 0.1  # what arrived while sampling, and nothing else
    assert all(v >= 0 for v in _chart(page, "chart-freshness").values())
    _choose_top(page, "views", 10, 21_600)
    span = _top_settled(page, VIEW, "views", 10, 21_600)
    _eventually(
        lambda: _assert_equal(_table(page), _top_oracle(produced.events, VIEW, span, "views", 10))
    )
    assert "/p/live" in [key for key, _ in _table(page)]


def _hll_top_n(page: Any, events: list[dict[str, Any]]) -> None:
    """An HLL view's top N: estimates in order, each within 2% of the exact distinct count."""
    page.select_option("#view", HLL_VIEW)
    span = _top_settled(page, HLL_VIEW, "unique_visitors", 10, 21_600)
    drawn = _table(page)
    expected = _top_oracle(events, HLL_VIEW, span, "unique_visitors", 10)
    exact = dict(_top_oracle(events, HLL_VIEW, span, "unique_visitors", 10_000))
    estimates = [values["unique_visitors"] for _, values in drawn]
    assert len(drawn) == len(expected) and estimates == sorted(estimates, reverse=True)
    for key, values in drawn:
        count = exact[key]["unique_visitors"]
        assert abs(values["unique_visitors"] - count) <= 0.02 * count, key
    assert sorted(round(e) for e in estimates) == sorted(v["unique_visitors"] for _, v in expected)
    assert page.inner_text("#top-n-table tbody tr td[data-measure]").startswith("≈")


def _multi_field_key(page: Any, events: list[dict[str, Any]]) -> None:
    """A two-field key: top N by both fields; a prefix ending in one whole field; its series."""
    page.select_option("#view", MULTI.name)
    span = _top_settled(page, MULTI.name, "views", 10, 21_600)
    assert _table(page) == _top_oracle(events, MULTI.name, span, "views", 10)
    page.fill("#key-prefix", "/p/1 · ")  # the url /p/1 exactly, any referrer
    page.wait_for_function("() => document.getElementById('key-list').dataset.prefix === '/p/1 · '")
    shown = [
        li.get_attribute("data-key") for li in page.query_selector_all("#key-list li[data-key]")
    ]
    expected = sorted({MULTI.key_of(e) for e in events if MULTI.key_of(e).startswith("/p/1\x1f")})
    assert shown == expected and len(expected) > 1
    page.click(f'#key-list li[data-key="{expected[-1]}"]')
    page.wait_for_function(
        "k => document.getElementById('series').dataset.key === k", arg=expected[-1]
    )
    assert page.input_value("#key-prefix") == expected[-1].replace(KEY_SEP, " · ")
    merged = {
        int(c.get_attribute("data-bucket")): float(c.get_attribute("data-value"))
        for c in page.query_selector_all("#series circle.merged-dot")
    }
    rows = oracle.by_bucket(oracle.measures(MULTI, events), expected[-1])
    assert {b: v for b, v in merged.items() if v} == {b: r["views"] for b, r in rows.items()}


def _last(page: Any, chart: str) -> float | None:
    points = _chart(page, chart)
    return points[max(points)] if points else None


def _assert_equal(a: Any, b: Any) -> None:
    assert a == b


def _drawn(page: Any) -> dict[str, dict[int, float]]:
    """Nonzero bar values per part, as drawn in the SVG."""
    out: dict[str, dict[int, float]] = {"batch": {}, "realtime": {}}
    for rect in page.query_selector_all("#series rect[data-part]"):
        value = float(rect.get_attribute("data-value"))
        if value:
            out[rect.get_attribute("data-part")][int(rect.get_attribute("data-bucket"))] = value
    return out
