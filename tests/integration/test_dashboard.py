"""The dashboard in a real headless browser, over the real pipeline.

Events go through the real producer; one batch cycle publishes a version with a cut;
more events arrive after the cut; the speed consumer catches up. The API runs under
uvicorn; Debian chromium (driven by Playwright) opens ``/dashboard`` and must draw the
batch and realtime parts the API returns, the cut, and the health panel. The merged
answer itself is checked against plain Python over the events this test produced.
A screenshot is kept in ``artifacts/dashboard.png``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import uvicorn
from playwright.sync_api import sync_playwright

from batch.tasks import run_cycle
from ingest.producer import EventProducer
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.topics import ensure_topics
from serving.app import create_app
from speed.consumer import SpeedConsumer
from tests import oracle
from tests.events import EventFactory
from tests.namespaces import namespace
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
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
VIEW, URL = "pageviews_by_url_hourly", "/dash"
READ = {"X-API-Key": "dev-read-key"}


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
    """Events of URL and one other; every 7th is late by two hours (an older bucket)."""
    out = []
    for i in range(n):
        when = start + timedelta(seconds=i) - (timedelta(hours=2) if i % 7 == 0 else timedelta())
        out.append(make(at=when, url=URL if i % 3 else "/other"))
    return out


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
    """This module's namespace with 2-second ingest windows, dropped after its tests."""
    batch = stack.batch.model_copy(update={"window_s": 2, "clock_skew_s": 0})
    with namespace(stack, batch=batch) as fresh:
        yield fresh


@pytest.fixture(scope="module")
def pipeline(ns: Settings) -> tuple[Settings, list[dict[str, Any]]]:
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
        report = run_cycle(settings, trino=False, views=[VIEW])
        assert report["ok"], report
        producer.send_many(after)
    finally:
        producer.close()
    _speed_catch_up(settings)
    return settings, before + after


def _oracle(events: list[dict[str, Any]]) -> dict[int, int]:
    """Views of URL per hour bucket, from the oracle."""
    rows = oracle.by_bucket(oracle.measures(get_view(VIEW), events), URL)
    return {bucket: row["views"] for bucket, row in rows.items()}


def test_dashboard_renders_series_cut_and_health(
    pipeline: tuple[Settings, list[dict[str, Any]]],
) -> None:
    settings, events = pipeline
    ARTIFACTS.mkdir(exist_ok=True)
    with ApiServer(settings) as base:
        params = {"key": URL, "from": "2000-01-01T00:00:00Z"}
        params["to"] = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:00:00Z")
        params["from"] = (datetime.now(UTC) - timedelta(hours=22)).strftime("%Y-%m-%dT%H:00:00Z")
        answer = httpx.get(f"{base}/views/{VIEW}", params=params, headers=READ).json()
        assert {r["bucket_ms"]: r["views"] for r in answer["merged"]} == _oracle(events)
        assert answer["batch"] and answer["realtime"] and answer["version"] == 1
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 720})
            # the key is typed once and kept in localStorage, never carried in the URL
            page.add_init_script("localStorage.setItem('lambdalab-key', 'dev-read-key')")
            page.goto(f"{base}/dashboard?view={VIEW}&vkey={URL}&refresh=2&key=leaked")
            assert "key" not in parse_qs(urlparse(page.url).query)  # dropped from the URL
            page.wait_for_function(
                "Number(document.body.dataset.refreshed || 0) >= 1", timeout=30_000
            )
            drawn = _drawn(page)
            cut = page.get_attribute("#cut-line", "data-cut-ms")
            lag = page.inner_text("#health-lag")
            version = page.inner_text(f'#health-batch tr[data-view="{VIEW}"] td:nth-child(2)')
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            browser.close()
    assert drawn["batch"] == {int(b): r["views"] for b, r in answer["batch"].items()}
    assert drawn["realtime"] == {int(b): r["views"] for b, r in answer["realtime"].items()}
    assert cut is not None and int(cut) == answer["cut_ms"]
    assert lag == "0" and version == "1"
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def _drawn(page: Any) -> dict[str, dict[int, float]]:
    """Nonzero bar values per part, as drawn in the SVG."""
    out: dict[str, dict[int, float]] = {"batch": {}, "realtime": {}}
    for rect in page.query_selector_all("#series rect[data-part]"):
        value = float(rect.get_attribute("data-value"))
        if value:
            out[rect.get_attribute("data-part")][int(rect.get_attribute("data-bucket"))] = value
    return out
