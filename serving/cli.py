"""CLI of the serving layer: ``lambdalab serve`` (the API) and ``lambdalab demo`` (everything).

The demo starts the API and the speed consumer as background child processes with their
logs and pid files under ``<state_dir>/demo``; under supervision (supervisord) they are two
programs: ``lambdalab serve`` and ``lambdalab speed run --quiet``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
import orjson
import typer

from lambdalab.cliutil import console, friendly
from lambdalab.errors import ServiceUnavailable
from lambdalab.settings import Settings, get_settings

SAMPLE_VIEW = "pageviews_by_url_hourly"
SAMPLE_KEY = "https://shop.example/p/0"  # the generator's most frequent URL (Zipf rank 1)


@friendly
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default: api.host)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: api.port)")] = None,
) -> None:
    """Run the serving API (merged queries, SQL, metrics, dashboard, ingest) with uvicorn."""
    import uvicorn

    from serving.app import create_app

    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=host or settings.api.host,
        port=port or settings.api.port,
        log_level="warning",
    )


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    """Wait until ``url`` answers 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    msg = f"{url} did not answer within {timeout_s:.0f}s (see the demo logs)"
    raise ServiceUnavailable(msg)


def _generate(base: str, settings: Settings, seconds: float, rate: float) -> int:
    from ingest.generator import GeneratorConfig, generate, http_sink, run, utc_now

    sink = http_sink(base, settings.api.write_keys[0])
    return run(generate(GeneratorConfig(rate=rate), utc_now()), sink, duration_s=seconds)


def _sample(base: str, settings: Settings) -> dict[str, Any]:
    response = httpx.get(
        f"{base}/views/{SAMPLE_VIEW}",
        params={"key": SAMPLE_KEY},
        headers={"X-API-Key": settings.api.read_keys[0]},
        timeout=30,
    )
    body: dict[str, Any] = response.json()
    return body


def seconds_until_cut_covers(settings: Settings, first_ms: int, now_ms: int) -> float:
    """Seconds to wait until a batch cut (window boundary <= now - skew) passes ``first_ms``."""
    width = settings.batch.window_s * 1000
    boundary = (first_ms // width + 1) * width
    return max(0.0, (boundary + settings.batch.clock_skew_s * 1000 - now_ms) / 1000 + 0.5)


@friendly
def demo(
    seconds: Annotated[float, typer.Option(help="seconds of generated traffic")] = 30.0,
    rate: Annotated[float, typer.Option(help="events per second")] = 100.0,
) -> None:
    """The whole pipeline: stack and platform services up, traffic, a batch cycle, an answer.

    The archiver, speed consumer, API and batch loop run under the stack's supervisord
    (``lambdalab stack up --platform``); ``lambdalab stack down`` stops everything.
    """
    settings = get_settings()
    from batch.tasks import run_cycle
    from lambdalab.stack import Stack
    from lambdalab.topics import ensure_topics

    with console.status("stack and platform services up (archiver, speed, API, batch loop)…"):
        Stack(settings).up(with_platform=True)
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
    query = urlencode({"key": settings.api.read_keys[0], "view": SAMPLE_VIEW, "vkey": SAMPLE_KEY})
    print(f"\nAPI docs:   {base}/docs\nDashboard:  {base}/dashboard?{query}")
    print(f"Metrics:    {base}/metrics")
    print("Services:   lambdalab stack status (logs: lambdalab stack logs api)")
    print("Stop:       lambdalab stack down\n")
    console.print(f"sample merged answer ({SAMPLE_VIEW}, key {SAMPLE_KEY}):")
    console.print_json(orjson.dumps(_sample(base, settings)).decode())


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``demo`` to the ``lambdalab`` command."""
    app.command("serve")(serve)
    app.command("demo")(demo)
