"""Freshness benchmark: how long until an event posted to the API is in a merged answer.

``run(settings)`` starts, in child processes on this machine, the API (``lambdalab serve``
under uvicorn, which also serves ``POST /events``) and the speed consumer (``lambdalab
speed run``). Then, for each background load level, a third child process sends load at a
fixed rate while this process sends probes: one event with a URL of its own through
``POST /events``, then ``GET /views/pageviews_by_url_hourly?key=<that URL>`` every few
milliseconds until the merged answer counts it. A probe's freshness is the time from just
before its POST to the first answer that holds it; probes follow each other. Each probe is
also timed by stage (:class:`Probe`): until the POST's ack, until the speed layer commits
its offset in Redis, until the API's answer counts it. A level's p99 is over all its
probes ("p99 stays under 1 s for the level"), with the p99 of each third as its spread.

Background load goes straight to Kafka through ``ingest.producer.EventProducer`` (the
producer behind ``POST /events``, same acks and linger) with pre-encoded valid events, in
chunks every 20 ms, not through HTTP: the HTTP path of one Python process tops out well
below the rates asked. The "max" level sends unpaced: the highest rate this ingest
producer sustains beside everything else. The levels: idle (the same-run baseline), 5k,
10k, 20k events/s and max, each LAMBDALAB_BENCH_FRESHNESS_S seconds (60 by default; a
shorter value is for quick runs). After each level the bench records how long the speed
layer took to commit the end offsets (its drain time; near zero when it kept up), so a
level where the speed layer was the bottleneck shows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from bench.bench_serving import _port, _spawn, own_keys
from bench.summary import figure
from lambdalab.schema import PAGE_VIEWS, format_ts
from lambdalab.settings import Settings, load_settings
from lambdalab.topics import end_offsets_of, ensure_topics, kafka_consumer, partitions
from lambdalab.wait import wait_until
from speed.store import RealtimeStore

VIEW = "pageviews_by_url_hourly"
LEVELS: tuple[int | None, ...] = (0, 5_000, 10_000, 20_000, None)  # events/s; None: unpaced
TICK_S = 0.02
POLL_S = 0.003
PROBE_TIMEOUT_S = 10.0
PROBE_GAP_S = 0.05


def _duration() -> float:
    return float(os.environ.get("LAMBDALAB_BENCH_FRESHNESS_S", "60"))


# --- the background load (a child process) ---------------------------------------------


def load(settings: Settings, rate: int | None, seconds: float) -> dict[str, float]:
    """Send valid events at ``rate`` per second (unpaced when None) for ``seconds``."""
    from ingest.generator import GeneratorConfig, generate
    from ingest.producer import EventProducer

    producer = EventProducer(settings, PAGE_VIEWS)
    events = [p.event for p in generate(GeneratorConfig(seed=5), datetime.now(UTC), 5000)]
    pool = [(None, PAGE_VIEWS.encode(e)) for e in events]
    producer.send_raw(pool[:1])  # connect outside the timing
    sent, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(elapsed * rate) if rate else sent + 2000
        chunk = [pool[(sent + i) % len(pool)] for i in range(due - sent)]
        if chunk:
            producer.send_raw(chunk)
            sent += len(chunk)
        if rate:
            time.sleep(max(0.0, TICK_S - (time.perf_counter() - started - elapsed)))
    elapsed = time.perf_counter() - started
    producer.close()
    return {"sent": sent, "seconds": elapsed, "rate": sent / elapsed}


def _load_main() -> None:
    rate, seconds = int(sys.argv[2]), float(sys.argv[3])
    out = load(load_settings(), rate or None, seconds)
    print(orjson.dumps(out).decode(), flush=True)


# --- probes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One probe's times in ms from just before its POST: acked, committed, seen.

    ``acked``: ``POST /events`` answered (validated, appended, the broker acked);
    ``committed``: the speed layer committed its partition past the probe's offset in Redis
    (the same MULTI/EXEC as its increments); ``seen``: a merged answer counts it. All
    three are PROBE_TIMEOUT_S * 1000 for a probe never seen.
    """

    at: float  # seconds since the level's probing started
    acked: float
    committed: float
    seen: float

    @property
    def stages(self) -> dict[str, float]:
        """Milliseconds in ingest (POST to ack), speed (ack to commit), serving (to answer)."""
        return {
            "ingest": self.acked,
            "speed": self.committed - self.acked,
            "serving": self.seen - self.committed,
        }


class Prober:
    """Sends probes one after the other and times each one's stages (:class:`Probe`)."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.write = {"X-API-Key": settings.api.write_keys[0], "Content-Type": "application/json"}
        self.read = {"X-API-Key": settings.api.read_keys[0]}
        self.client = httpx.Client(base_url=self.base, timeout=30)
        self.store = RealtimeStore(settings, settings.topic_for(PAGE_VIEWS.name))
        self.run_id = uuid.uuid4().hex[:6]
        self.count = 0

    def probe(self, at: float = 0.0) -> Probe:
        """Send one probe and follow it: committed in Redis first, then in a merged answer.

        Polling Redis for the partition's committed offset (one HGET) before polling the
        API adds nothing to the total: no answer can count the probe before that commit.
        """
        self.count += 1
        url = f"/fresh/{self.run_id}/{self.count}"
        event = {
            "event_id": f"probe-{self.run_id}-{self.count}",
            "url": url,
            "user_id": "prober",
            "bytes": 1,
            "event_time": format_ts(datetime.now(UTC)),
        }
        started = time.perf_counter()

        def ms() -> float:
            return (time.perf_counter() - started) * 1000

        posted = self.client.post("/events", content=orjson.dumps([event]), headers=self.write)
        acked = ms()
        where = posted.json()["offsets"][0] if posted.status_code == 200 else None
        committed = None
        while ms() < PROBE_TIMEOUT_S * 1000:
            if committed is None and where is not None:
                done = self.store.read_offsets([where["partition"]])
                if done.get(where["partition"], -1) > where["offset"]:
                    committed = ms()
                else:
                    time.sleep(POLL_S / 3)
                    continue
            answer = self.client.get(f"/views/{VIEW}", params={"key": url}, headers=self.read)
            if answer.status_code == 200 and answer.json()["merged"]:
                seen = ms()
                return Probe(at, acked, seen if committed is None else committed, seen)
            time.sleep(POLL_S)
        never = PROBE_TIMEOUT_S * 1000
        return Probe(at, acked, never, never)

    def during(self, seconds: float) -> list[Probe]:
        """Probe for ``seconds``, one probe after the other."""
        out, started = [], time.perf_counter()
        while (at := time.perf_counter() - started) < seconds:
            out.append(self.probe(at))
            time.sleep(PROBE_GAP_S)
        return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- one level --------------------------------------------------------------------------


def _level(settings: Settings, prober: Prober, rate: int | None, seconds: float) -> dict:
    load_proc = None
    if rate != 0:
        load_proc = _spawn(
            ["-m", "bench.bench_freshness", "load", str(rate or 0), str(seconds)],
            settings,
            stdout=subprocess.PIPE,
        )
        time.sleep(1.0)  # let the load reach its rate before probing
    probes = prober.during(seconds - (1.0 if load_proc else 0.0))
    achieved = None
    if load_proc is not None:
        out, _ = load_proc.communicate(timeout=seconds + 60)
        achieved = orjson.loads(out.strip().splitlines()[-1])["rate"]
    drain_s = _drain(settings)
    ms = [p.seen for p in probes]
    span = max((p.at for p in probes), default=0.0) / 3 or 1.0
    thirds = [[p.seen for p in probes if min(2, int(p.at // span)) == i] for i in range(3)]
    timed = [p.stages for p in probes]
    stages = {
        stage: {
            "p50_ms": round(_pct([t[stage] for t in timed], 0.50), 1),
            "p99_ms": round(_pct([t[stage] for t in timed], 0.99), 1),
        }
        for stage in ("ingest", "speed", "serving")
    }
    return {
        "rate_asked": rate,
        "rate_achieved": round(achieved, 1) if achieved is not None else 0.0,
        "probes": len(ms),
        "p50_ms": round(_pct(ms, 0.50), 1),
        "p99_ms": round(_pct(ms, 0.99), 1),
        "max_ms": round(max(ms), 1),
        "p99_by_third_ms": [round(_pct(t, 0.99), 1) for t in thirds if t],
        "stages": stages,
        "speed_drain_s": round(drain_s, 2),
    }


def _drain(settings: Settings) -> float:
    """Seconds until the speed layer has committed the topic's end offsets (max 60)."""
    consumer = kafka_consumer(settings)
    try:
        parts = partitions(consumer, settings.topic_for(PAGE_VIEWS.name))
        end = end_offsets_of(consumer, parts)
    finally:
        consumer.close()
    store = RealtimeStore(settings, settings.topic_for(PAGE_VIEWS.name))
    started = time.perf_counter()

    def caught_up() -> bool:
        done = store.read_offsets() or {}
        return all(done.get(p, -1) >= o for p, o in end.items())

    wait_until(caught_up, timeout_s=60, interval_s=0.05, what="speed layer caught up")
    return time.perf_counter() - started


# --- processes ------------------------------------------------------------------------


def run(settings: Settings) -> dict[str, Any]:
    """Start the API and the speed consumer, then measure every load level in turn."""
    settings = own_keys(settings)
    ensure_topics(settings)
    seconds = _duration()
    port = _port()
    procs = [
        _spawn(["-m", "lambdalab.cli", "serve", "--port", str(port)], settings),
        _spawn(["-m", "lambdalab.cli", "speed", "run", "--quiet"], settings),
    ]
    levels: list[dict[str, Any]] = []
    try:
        prober = Prober(settings, port)
        wait_until(
            lambda: _answers(prober), timeout_s=90, interval_s=0.2, what="API and speed layer up"
        )
        for rate in LEVELS:
            level = _level(settings, prober, rate, seconds if rate != 0 else min(seconds, 15))
            print(f"freshness at {rate if rate is not None else 'max'}: {level}", flush=True)
            levels.append(level)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)
    return _result(levels, seconds)


def _answers(prober: Prober) -> bool:
    try:
        return prober.probe().seen < PROBE_TIMEOUT_S * 1000
    except httpx.HTTPError:
        return False


def _label(level: dict[str, Any]) -> str:
    rate = level["rate_asked"]
    return "idle" if rate == 0 else ("max" if rate is None else f"{rate // 1000}k ev/s")


def _result(levels: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    idle = levels[0]
    figs = []
    for level in levels[1:]:
        target = "value <= 100" if level["rate_asked"] == 10_000 else "value <= 1000"
        figs.append(
            figure(
                "freshness",
                f"p99 at {_label(level)} (achieved {level['rate_achieved']:,.0f} ev/s)",
                "ms",
                level["p99_by_third_ms"],
                baseline_name=None,
                target=target,
                whole=level["p99_ms"],
            )
        )
        figs[-1]["baseline"] = idle["p99_ms"]  # shown beside it; the target is absolute
        figs[-1]["baseline_name"] = "idle p99, same run"
    under = [lv for lv in levels[1:] if lv["p99_ms"] < 1000]
    best = max((lv["rate_achieved"] for lv in under), default=0.0)
    figs.append(figure("freshness", "highest load rate with p99 < 1 s", "events/s", [best]))
    return {
        "seconds_per_level": seconds,
        "levels": levels,
        "idle_p50_ms": idle["p50_ms"],
        "highest_rate_p99_under_1s": best,
        "figures": figs,
        "details_md": _details(levels, seconds),
    }


def _details(levels: list[dict[str, Any]], seconds: float) -> list[str]:
    lines = [
        f"Each level {seconds:.0f} s (idle: {min(seconds, 15):.0f} s); probes through "
        "`POST /events`, seen in `GET /views/pageviews_by_url_hourly`; background load "
        "straight to Kafka through `EventProducer` (see bench/bench_freshness.py). "
        "Drain: seconds the speed layer needed after the load stopped to commit the end "
        "offsets.",
        "",
        "| load | asked ev/s | achieved ev/s | probes | p50 ms | p99 ms | max ms "
        "| p99 per third ms | speed drain s |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for lv in levels:
        asked = "-" if lv["rate_asked"] is None else f"{lv['rate_asked']:,}"
        lines.append(
            f"| {_label(lv)} | {asked} | {lv['rate_achieved']:,.0f} | {lv['probes']} "
            f"| {lv['p50_ms']} | {lv['p99_ms']} | {lv['max_ms']} "
            f"| {' / '.join(str(x) for x in lv['p99_by_third_ms'])} | {lv['speed_drain_s']} |"
        )
    lines += [
        "",
        "Where a probe's time went, per stage (p50 / p99 ms of each stage on its own, so "
        "the stages' p99s need not add up to the total's): ingest = `POST /events` until "
        "the broker's ack; speed = ack until the speed layer's MULTI/EXEC commits the "
        "probe's partition past its offset in Redis; serving = that commit until a merged "
        "answer counts it.",
        "",
        "| load | ingest p50 / p99 | speed p50 / p99 | serving p50 / p99 |",
        "|---|---|---|---|",
    ]
    for lv in levels:
        st = lv["stages"]
        cells = [f"{st[s]['p50_ms']} / {st[s]['p99_ms']}" for s in ("ingest", "speed", "serving")]
        lines.append(f"| {_label(lv)} | {' | '.join(cells)} |")
    return lines


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        _load_main()
    else:
        result = run(load_settings(namespace=f"bench{uuid.uuid4().hex[:8]}"))
        print("\n".join(result["details_md"]))
