"""The demo: the whole pipeline end to end, for a first look (``lambdalab demo``).

Sends generated traffic through ``POST /events``, waits until a batch cut covers it, runs
one batch cycle, and prints where to look (API docs, dashboard, metrics) with a sample
merged answer and its provenance.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from batch.tasks import run_cycle
from ingest.generator import GeneratorConfig, generate, http_sink, utc_now
from ingest.generator import run as run_generator
from lambdalab.boundary import seconds_until_cut_covers
from lambdalab.cliutil import console
from lambdalab.errors import ServiceUnavailable, WaitTimeout
from lambdalab.settings import Settings
from lambdalab.topics import ensure_topics
from lambdalab.wait import wait_until

SAMPLE_VIEW = "pageviews_by_url_hourly"
SAMPLE_KEY = "https://shop.example/p/0"  # the generator's most frequent URL (Zipf rank 1)


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    """Wait until ``url`` answers 200 (the demo's API, started just before).

    Raises:
        ServiceUnavailable: no 200 within ``timeout_s``.
    """
    try:
        wait_until(
            lambda: httpx.get(url, timeout=2).status_code == 200,
            timeout_s=timeout_s,
            interval_s=0.5,
            what=f"GET {url} answering 200",
            retry_on=(httpx.HTTPError,),
        )
    except WaitTimeout:
        msg = f"{url} did not answer within {timeout_s:.0f}s (see the demo logs)"
        raise ServiceUnavailable(msg) from None


def _generate(base: str, settings: Settings, seconds: float, rate: float) -> int:
    sink = http_sink(base, settings.api.write_keys[0])
    return run_generator(generate(GeneratorConfig(rate=rate), utc_now()), sink, duration_s=seconds)


def _sample(base: str, settings: Settings) -> dict[str, Any]:
    response = httpx.get(
        f"{base}/views/{SAMPLE_VIEW}",
        params={"key": SAMPLE_KEY},
        headers={"X-API-Key": settings.api.read_keys[0]},
        timeout=30,
    )
    body: dict[str, Any] = response.json()
    return body


def run(settings: Settings, seconds: float, rate: float) -> None:
    """Traffic over HTTP, one batch cycle once a cut covers it, then the URLs and an answer.

    Expects the stack and the platform services (archiver, speed consumer, API, batch loop)
    to be up: the ``lambdalab demo`` command starts them first.
    """
    ensure_topics(settings)
    base = f"http://{settings.api.host}:{settings.api.port}"
    wait_http(f"{base}/health")
    started_ms = int(time.time() * 1000)
    with console.status(f"sending {rate:.0f} events/s over HTTP for {seconds:.0f}s…"):
        sent = _generate(base, settings, seconds, rate)
    console.print(f"sent {sent} events through POST {base}/events")
    wait_s = seconds_until_cut_covers(settings, started_ms, int(time.time() * 1000))
    if wait_s > 0:
        with console.status(f"waiting {wait_s:.0f}s for the ingest window to close (the cut)…"):
            time.sleep(wait_s)
    with console.status("one batch cycle (land, cut, build, publish)…"):
        report = run_cycle(settings)
    console.print(f"batch cycle ok={report.get('ok')}")
    time.sleep(2)
    query = urlencode({"view": SAMPLE_VIEW, "vkey": SAMPLE_KEY})
    print(f"\nAPI docs:   {base}/docs\nDashboard:  {base}/dashboard?{query}")
    print(f"Read key:   {settings.api.read_keys[0]} (paste it into the dashboard's key field)")
    print(f"Metrics:    {base}/metrics")
    print("Services:   lambdalab stack status (logs: lambdalab stack logs api)")
    print("Stop:       lambdalab stack down\n")
    console.print(f"sample merged answer ({SAMPLE_VIEW}, key {SAMPLE_KEY}):")
    console.print_json(orjson.dumps(_sample(base, settings)).decode())
