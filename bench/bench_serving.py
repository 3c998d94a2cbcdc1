"""Serving-layer benchmark: merged query latency and throughput against same-run baselines.

``run(settings)`` fills a namespace (events through the real producer, one batch cycle,
more events, the speed consumer caught up), starts the API and a trivial FastAPI app under
uvicorn in child processes on 127.0.0.1, and measures, with bounded request counts:
``GET /views/{view}`` (batch @ cut ⊕ realtime since cut, with provenance), ``GET /ping``
of the trivial app (the HTTP framework floor) and a raw Redis ``GET`` (the store floor).
Unloaded latency is sequential requests on one keep-alive connection; throughput uses a
few client threads. Ratios are against the same run's baselines, never absolute targets.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import redis

from bench.summary import figure
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.wait import wait_until

VIEW = "pageviews_by_url_hourly"
KEY = "/bench"
SEQUENTIAL = 300
THREADS = 4
PER_THREAD = 150
REPEATS = 3
TRIVIAL = (
    "import sys, uvicorn\nfrom fastapi import FastAPI\napp = FastAPI()\n"
    "@app.get('/ping')\ndef ping() -> dict:\n    return {'ok': True}\n"
    "uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[1]), log_level='warning')\n"
)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _events(n: int, start: datetime) -> list[dict[str, Any]]:
    return [
        {
            "event_id": uuid.uuid4().hex,
            "url": KEY if i % 2 else f"/u{i % 50}",
            "user_id": f"u{i % 97}",
            "referrer": None,
            "bytes": i,
            "event_time": (start - timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }
        for i in range(n)
    ]


def fill(settings: Settings, n: int = 2000) -> None:
    """Events before a batch cut, a batch cycle, events after it, the speed layer caught up."""
    from batch.tasks import run_cycle
    from ingest.producer import EventProducer
    from lambdalab.topics import ensure_topics
    from speed.consumer import catch_up

    ensure_topics(settings)
    now = datetime.now(UTC)
    producer = EventProducer(settings, PAGE_VIEWS)
    try:
        producer.send_many(_events(n, now))
        time.sleep(settings.batch.window_s + 0.5)
        run_cycle(settings, trino=False, views=[VIEW])
        producer.send_many(_events(n // 4, now))
    finally:
        producer.close()
    catch_up(settings, PAGE_VIEWS)


def own_keys(settings: Settings) -> Settings:
    """``settings`` with API keys of its own: the API refuses the dev keys outside demo mode."""
    key = uuid.uuid4().hex
    api = settings.api.model_copy(update={"write_keys": [key], "read_keys": [key]})
    return settings.model_copy(update={"api": api})


def _spawn(
    args: list[str], settings: Settings, stdout: int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """A Python child in ``settings``' namespace, taking its API keys (:func:`own_keys`)."""
    env = {
        **os.environ,
        "LAMBDALAB_NAMESPACE": settings.namespace,
        "LAMBDALAB_API__WRITE_KEYS": json.dumps(settings.api.write_keys),
        "LAMBDALAB_API__READ_KEYS": json.dumps(settings.api.read_keys),
    }
    return subprocess.Popen([sys.executable, *args], env=env, stdout=stdout)


def _wait(url: str, headers: dict[str, str]) -> None:
    """Wait up to 60 s for ``url`` to answer 200 (the API just spawned).

    Raises:
        WaitTimeout: it did not.
    """
    wait_until(
        lambda: httpx.get(url, headers=headers, timeout=5).status_code == 200,
        timeout_s=60,
        interval_s=0.3,
        what=f"GET {url} answering 200",
        retry_on=(httpx.HTTPError,),
    )


def measure(call: Callable[[], None]) -> dict[str, float]:
    """p50/p99 (ms) of sequential calls, then calls/s from THREADS threads."""
    for _ in range(20):
        call()
    lat = []
    for _ in range(SEQUENTIAL):
        t = time.perf_counter()
        call()
        lat.append((time.perf_counter() - t) * 1000)
    started = time.perf_counter()

    def worker(_: int) -> None:
        for _ in range(PER_THREAD):
            call()

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(worker, range(THREADS)))
    rate = THREADS * PER_THREAD / (time.perf_counter() - started)
    q = statistics.quantiles(lat, n=100)
    return {"p50_ms": round(q[49], 3), "p99_ms": round(q[98], 3), "rps": round(rate, 1)}


def _http(url: str, params: dict[str, str], headers: dict[str, str]) -> Callable[[], None]:
    local = __import__("threading").local()

    def call() -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=30)
        response = client.get(url, params=params, headers=headers)
        assert response.status_code == 200, response.text

    return call


def _redis_get(client: redis.Redis, key: str) -> Callable[[], None]:
    def call() -> None:
        assert client.get(key) is not None

    return call


def run(settings: Settings) -> dict[str, Any]:
    """Fill a namespace, then measure the merged query against the two baselines."""
    settings = own_keys(settings)
    fill(settings)
    api_port, ping_port = _port(), _port()
    procs = [
        _spawn(["-m", "lambdalab.cli", "serve", "--port", str(api_port)], settings),
        _spawn(["-c", TRIVIAL, str(ping_port)], settings),
    ]
    try:
        read = {"X-API-Key": settings.api.read_keys[0]}
        query_url = f"http://127.0.0.1:{api_port}/views/{VIEW}"
        now = datetime.now(UTC)
        span = {
            "key": KEY,
            "from": (now - timedelta(hours=3)).strftime("%Y-%m-%dT%H:00:00Z"),
            "to": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:00:00Z"),
        }
        _wait(f"{query_url}?key={KEY}", read)
        _wait(f"http://127.0.0.1:{ping_port}/ping", {})
        client = redis.Redis.from_url(settings.redis.url)
        client.set(f"{settings.redis_prefix}bench", b"x" * 64)
        calls = {
            "merged_query": _http(query_url, span, read),
            "trivial_fastapi": _http(f"http://127.0.0.1:{ping_port}/ping", {}, {}),
            "redis_get": _redis_get(client, f"{settings.redis_prefix}bench"),
        }
        runs = [{name: measure(call) for name, call in calls.items()} for _ in range(REPEATS)]
        results: dict[str, Any] = {
            name: {k: statistics.median(r[name][k] for r in runs) for k in runs[0][name]}
            for name in calls
        }
        results["runs"] = runs
        client.delete(f"{settings.redis_prefix}bench")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
    base = results["trivial_fastapi"]
    results["ratios"] = {
        "p50_vs_trivial": round(results["merged_query"]["p50_ms"] / base["p50_ms"], 2),
        "rps_vs_trivial": round(results["merged_query"]["rps"] / base["rps"], 3),
        "p50_vs_redis_get": round(
            results["merged_query"]["p50_ms"] / results["redis_get"]["p50_ms"], 1
        ),
    }
    results["figures"] = _figures(runs)
    print(table(results))
    return results


def _figures(runs: list[dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    def col(name: str, what: str) -> list[float]:
        return [r[name][what] for r in runs]

    trivial = "trivial FastAPI app under uvicorn, same run"
    return [
        figure("serving", "merged query p50", "ms", col("merged_query", "p50_ms"),
               col("trivial_fastapi", "p50_ms"), baseline_name=trivial),
        figure("serving", "merged query p99", "ms", col("merged_query", "p99_ms"),
               col("trivial_fastapi", "p99_ms"), baseline_name=trivial),
        figure("serving", "merged query req/s", "req/s", col("merged_query", "rps"),
               col("trivial_fastapi", "rps"), baseline_name=trivial),
        figure("serving", "merged query p50 vs raw Redis GET", "ms", col("merged_query", "p50_ms"),
               col("redis_get", "p50_ms"), baseline_name="raw Redis GET, same run"),
    ]  # fmt: skip


def table(results: dict[str, Any]) -> str:
    """A plain-text table of the three measured targets."""
    lines = [f"{'target':<18}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}"]
    for name in ("merged_query", "trivial_fastapi", "redis_get"):
        r = results[name]
        lines.append(f"{name:<18}{r['p50_ms']:>10.3f}{r['p99_ms']:>10.3f}{r['rps']:>10.1f}")
    lines.append(f"ratios: {results['ratios']}")
    return "\n".join(lines)
