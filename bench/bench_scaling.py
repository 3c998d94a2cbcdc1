"""Benchmark of the partitioned speed layer: 1, 2 and 4 workers over 8 partitions.

For each worker count N (and REPEATS times, in fresh namespaces whose topic has
``PARTITIONS`` partitions), N ``lambdalab speed run`` processes join the stream's consumer
group on an empty topic; once every partition is claimed and the group has been stable for
``STABLE_S``, ``EVENTS`` page views are appended at once with ``kcat`` (librdkafka: far
faster than the workers, so they always have a backlog). Two figures per N:

- **events/s**: the slope of the committed offsets (summed over partitions, read from the
  partitions' offsets hashes in Redis, the speed layer's only commit) between 10 % and 90 %
  of the backlog: start-up and the tail do not count;
- **freshness p99**: then, under a fixed background load of ``LOAD_EVS`` events/s
  (kafka-python producer in a thread), ``PROBES`` probe events are sent 100 ms apart; a
  probe's freshness is the time from its send to the moment the speed layer's committed
  offset of its partition passes the probe's offset (polled every 5 ms): visible to any
  merged answer from then on.

The same-run baseline of every figure is N = 1. An extra single-worker run over a
one-partition topic prices the per-partition overhead (one transaction per partition per
poll batch): the paper in docs/operations.md scales from these numbers. On this 2-core
machine the workers share the cores with Kafka, Redis and the load, so N > 2 cannot scale
linearly here: the figures say what it does.

Run alone: ``.venv/bin/python -m bench.bench_scaling``.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer

from bench.cleanup import drop_redis_keys, drop_topics
from bench.summary import figure
from ingest.generator import GeneratorConfig, generate, utc_now
from lambdalab.paths import RedisKeys
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings, load_settings
from lambdalab.topics import ensure_topics
from speed.store import connect, read_next

WORKERS = (1, 2, 4)
PARTITIONS = 8
EVENTS = int(os.environ.get("LAMBDALAB_BENCH_SCALING_EVENTS", "120000"))
REPEATS = int(os.environ.get("LAMBDALAB_BENCH_SCALING_REPEATS", "2"))
LOAD_EVS = 3000
PROBES = 100
STABLE_S = 4.0
JOIN_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 300.0
REPO = Path(__file__).resolve().parent.parent


def _namespaced(settings: Settings, partitions: int) -> Settings:
    kafka = settings.kafka.model_copy(update={"partitions": partitions})
    ns = f"{settings.namespace}n{uuid.uuid4().hex[:6]}"
    return settings.model_copy(update={"namespace": ns, "kafka": kafka})


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "LAMBDALAB_NAMESPACE": settings.namespace,
        "LAMBDALAB_KAFKA__PARTITIONS": str(settings.kafka.partitions),
        "PYTHONPATH": str(REPO),
    }


class Offsets:
    """The speed layer's committed offsets and owner epochs, read from Redis."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = connect(settings)
        keys = RedisKeys(settings)
        source = settings.topic_for(PAGE_VIEWS.name)
        self.parts = [keys.partition(source, p) for p in range(settings.kafka.partitions)]

    def read(self) -> list[tuple[int | None, int | None]]:
        """(next, epoch) per partition (None where never written)."""
        out = []
        for part in self.parts:
            nxt, epoch = self.client.hmget(part.offsets, ["next", "epoch"])
            out.append((None if nxt is None else int(nxt), None if epoch is None else int(epoch)))
        return out

    def next_of(self, partition: int) -> int:
        """The committed next offset of ``partition`` (-1 when never written)."""
        raw = self.client.hget(self.parts[partition].offsets, "next")
        return -1 if raw is None else int(raw)

    def total(self) -> int:
        """Committed offsets summed over partitions: the events the workers applied."""
        return sum(n or 0 for n in read_next(self.settings, self.client, self.parts))


def _start_workers(settings: Settings, n: int, logs: Path) -> list[subprocess.Popen[bytes]]:
    lambdalab = Path(sys.executable).with_name("lambdalab")
    procs = []
    for i in range(n):
        with (logs / f"worker{i}.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [str(lambdalab), "speed", "run", "--quiet", "--group"],
                    env=_env(settings),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    return procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_stable(offsets: Offsets, procs: list[subprocess.Popen[bytes]], logs: Path) -> float:
    """Seconds until every partition is claimed and no epoch moved for STABLE_S."""
    started = time.monotonic()
    last, since = None, time.monotonic()
    while time.monotonic() - started < JOIN_TIMEOUT_S:
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            tail = (logs / "worker0.log").read_text()[-2000:]
            msg = f"a speed worker exited with {dead[0].returncode}: {tail}"
            raise RuntimeError(msg)
        state = offsets.read()
        if state != last:
            last, since = state, time.monotonic()
        elif all(e is not None for _, e in state) and time.monotonic() - since >= STABLE_S:
            return round(since - started, 1)
        time.sleep(0.2)
    msg = f"speed workers not stable within {JOIN_TIMEOUT_S} s: {last}"
    raise RuntimeError(msg)


def _backlog_file(count: int, seed: int) -> Path:
    cfg = GeneratorConfig(seed=seed)
    fd, name = tempfile.mkstemp(prefix="bench-scaling-", suffix=".jsonl")
    with os.fdopen(fd, "wb") as out:
        for planned in generate(cfg, utc_now(), count):
            out.write(orjson.dumps(planned.event) + b"\n")
    return Path(name)


def _kcat(settings: Settings, path: Path) -> None:
    kcat = shutil.which("kcat")
    if kcat is None:
        msg = "kcat not found: `make deps` installs it (Debian package kcat)"
        raise RuntimeError(msg)
    subprocess.run(
        [kcat, "-P", "-b", settings.kafka.bootstrap_servers, "-t",
         settings.topic_for(PAGE_VIEWS.name), "-X", "acks=all", "-l", str(path)],
        check=True,
        timeout=300,
    )  # fmt: skip


def _throughput(offsets: Offsets, base: int, count: int) -> float:
    """Events/s of the committed offsets between 10 % and 90 % of the backlog."""
    lo, hi = base + count // 10, base + count * 9 // 10
    t_lo = t_hi = None
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        done, now = offsets.total(), time.monotonic()
        if t_lo is None and done >= lo:
            t_lo, at_lo = now, done
        if t_lo is not None and done >= hi:
            t_hi, at_hi = now, done
            break
        time.sleep(0.02)
    if t_lo is None or t_hi is None or t_hi <= t_lo:
        msg = f"the workers did not drain {count} events in {DRAIN_TIMEOUT_S} s"
        raise RuntimeError(msg)
    return (at_hi - at_lo) / (t_hi - t_lo)


def _drained(offsets: Offsets, total: int) -> None:
    """Wait until the workers committed ``total`` offsets (the whole backlog)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while offsets.total() < total:
        if time.monotonic() > deadline:
            msg = f"the workers did not drain the backlog in {DRAIN_TIMEOUT_S} s"
            raise RuntimeError(msg)
        time.sleep(0.05)


def _freshness(settings: Settings, offsets: Offsets) -> list[float]:
    """Probe freshness in ms under LOAD_EVS events/s of background load."""
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=5
    )
    topic = settings.topic_for(PAGE_VIEWS.name)
    stop = threading.Event()
    events = (p.event for p in generate(GeneratorConfig(seed=99), utc_now()))

    def load() -> None:
        tick = 0.02
        per_tick = int(LOAD_EVS * tick)
        next_at = time.monotonic()
        while not stop.is_set():
            for _ in range(per_tick):
                producer.send(topic, orjson.dumps(next(events)))
            next_at += tick
            time.sleep(max(0.0, next_at - time.monotonic()))

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    seen: list[float] = []
    try:
        time.sleep(2.0)  # the load reaches its rate first
        for planned in generate(GeneratorConfig(seed=98), utc_now(), PROBES):
            probe = planned.event
            sent = time.perf_counter()
            meta = producer.send(topic, orjson.dumps(probe)).get(timeout=10)
            while offsets.next_of(meta.partition) <= meta.offset:
                if time.perf_counter() - sent > 10:
                    break
                time.sleep(0.005)
            seen.append(round((time.perf_counter() - sent) * 1000, 1))
            time.sleep(max(0.0, 0.1 - (time.perf_counter() - sent)))
    finally:
        stop.set()
        loader.join(timeout=5)
        producer.close()
    return seen


def one_run(settings: Settings, workers: int, partitions: int, backlog: Path) -> dict[str, Any]:
    """One worker count in a fresh namespace: join, drain the backlog, probe freshness."""
    ns = _namespaced(settings, partitions)
    ensure_topics(ns)
    offsets = Offsets(ns)
    with tempfile.TemporaryDirectory(prefix="bench-scaling-logs-") as tmp:
        procs = _start_workers(ns, workers, Path(tmp))
        try:
            join_s = _wait_stable(offsets, procs, Path(tmp))
            base = offsets.total()
            loader = threading.Thread(target=_kcat, args=(ns, backlog))
            loader.start()
            rate = _throughput(offsets, base, EVENTS)
            loader.join()
            _drained(offsets, base + EVENTS)  # probes must not queue behind the backlog
            fresh = _freshness(ns, offsets)
        finally:
            _stop(procs)
            drop_topics(ns)
            drop_redis_keys(ns)
    q = statistics.quantiles(fresh, n=100)
    return {
        "workers": workers,
        "partitions": partitions,
        "join_s": join_s,
        "events_per_s": round(rate, 1),
        "fresh_p50_ms": round(statistics.median(fresh), 1),
        "fresh_p99_ms": round(q[98], 1),
        "fresh_max_ms": max(fresh),
    }


def run(settings: Settings) -> dict[str, Any]:
    """Every worker count REPEATS times (taking turns), plus the one-partition run."""
    backlog = _backlog_file(EVENTS, seed=3)
    runs: list[dict[str, Any]] = []
    try:
        for _ in range(REPEATS):
            for n in WORKERS:
                runs.append(one_run(settings, n, PARTITIONS, backlog))
                print(runs[-1], flush=True)
            runs.append(one_run(settings, 1, 1, backlog))
            print(runs[-1], flush=True)
    finally:
        backlog.unlink()
    result: dict[str, Any] = {"events": EVENTS, "load_evs": LOAD_EVS, "runs": runs}
    result["figures"] = _figures(runs)
    result["details_md"] = _details(runs)
    return result


def _col(runs: list[dict[str, Any]], n: int, parts: int, what: str) -> list[float]:
    return [r[what] for r in runs if r["workers"] == n and r["partitions"] == parts]


def _figures(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    one = f"1 worker, {PARTITIONS} partitions (same run)"
    base_rate = _col(runs, 1, PARTITIONS, "events_per_s")
    base_fresh = _col(runs, 1, PARTITIONS, "fresh_p99_ms")
    for n in WORKERS:
        out.append(
            figure("scaling", f"speed events/s, {n} worker(s) / {PARTITIONS} partitions",
                   "events/s", _col(runs, n, PARTITIONS, "events_per_s"), base_rate,
                   baseline_name=one)
        )  # fmt: skip
        out.append(
            figure("scaling", f"freshness p99 at {LOAD_EVS:,} ev/s, {n} worker(s)", "ms",
                   _col(runs, n, PARTITIONS, "fresh_p99_ms"), base_fresh, baseline_name=one)
        )  # fmt: skip
    out.append(
        figure("scaling", "1 worker over 1 partition vs over 8 (per-partition overhead)",
               "events/s", _col(runs, 1, 1, "events_per_s"), base_rate, baseline_name=one)
    )  # fmt: skip
    return out


def _details(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"{EVENTS:,} events of backlog per run appended with kcat; events/s is the slope of the "
        "committed offsets between 10 % and 90 % of it. Freshness: 100 probes, 100 ms apart, "
        f"under {LOAD_EVS:,} ev/s of background load; send -> the partition's committed offset "
        "in Redis passes the probe.",
        "",
        "| workers | partitions | join s | events/s | fresh p50 ms | p99 ms | max ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['workers']} | {r['partitions']} | {r['join_s']} | {r['events_per_s']:,.0f} "
            f"| {r['fresh_p50_ms']} | {r['fresh_p99_ms']} | {r['fresh_max_ms']} |"
        )
    return lines


if __name__ == "__main__":
    base = load_settings()
    out = run(base.model_copy(update={"namespace": f"bench{uuid.uuid4().hex[:8]}"}))
    print("\n".join(out["details_md"]))
