"""CLI of the serving layer: ``lambdalab serve`` (the API) and ``lambdalab demo`` (everything).

The demo starts the API and the speed consumer as background child processes with their
logs and pid files under ``<state_dir>/demo``; under supervision (supervisord) they are two
programs: ``lambdalab serve`` and ``lambdalab speed run --quiet``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
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


def _demo_dir(settings: Settings) -> Path:
    path = settings.paths.state_dir / "demo"
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_background(settings: Settings, name: str, args: list[str]) -> int:
    """Start ``lambdalab <args>`` detached, logging to and recording its pid in the demo dir."""
    folder = _demo_dir(settings)
    with (folder / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lambdalab.cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (folder / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def stop_background(settings: Settings) -> list[str]:
    """Stop the processes the demo started (by their recorded pids)."""
    stopped = []
    for pid_file in sorted(_demo_dir(settings).glob("*.pid")):
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
            stopped.append(f"{pid_file.stem} (pid {pid})")
        except ProcessLookupError:
            pass
        pid_file.unlink()
    return stopped


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
    stop: Annotated[bool, typer.Option("--stop", help="stop what a previous demo started")] = False,
    stack: Annotated[
        bool, typer.Option("--stack/--no-stack", help="bring the local stack up first")
    ] = True,
) -> None:
    """The whole pipeline: stack up, API and speed consumer up, traffic, a batch cycle."""
    settings = get_settings()
    if stop:
        console.print(f"stopped: {', '.join(stop_background(settings)) or 'nothing'}")
        return
    from batch.tasks import run_cycle
    from lambdalab.stack import Stack
    from lambdalab.topics import ensure_topics

    if stack:
        with console.status("stack up…"):
            Stack(settings).up()
    ensure_topics(settings)
    stop_background(settings)
    base = f"http://{settings.api.host}:{settings.api.port}"
    pids = {
        "api": start_background(settings, "api", ["serve"]),
        "speed": start_background(settings, "speed", ["speed", "run", "--quiet"]),
    }
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
    running = ", ".join(f"{n} pid {p}" for n, p in pids.items())
    print(f"\nAPI docs:   {base}/docs\nDashboard:  {base}/dashboard?{query}")
    print(f"Metrics:    {base}/metrics\nbackground: {running}")
    print(f"            logs in {_demo_dir(settings)}; stop them with: lambdalab demo --stop\n")
    console.print(f"sample merged answer ({SAMPLE_VIEW}, key {SAMPLE_KEY}):")
    console.print_json(orjson.dumps(_sample(base, settings)).decode())


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``demo`` to the ``lambdalab`` command."""
    app.command("serve")(serve)
    app.command("demo")(demo)
