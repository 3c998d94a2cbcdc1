"""One drill from start to verdict: namespace, ingest, processes, sampled answers, the end.

A test opens a :class:`Drill` (``open_drill`` fixture), starts the platform processes the
fault concerns, injects the fault, times the recovery, and calls :meth:`Drill.finish`:
stop ingest and the processes, run the final landing and batch cycle, let the speed layer
catch up, verify (``tests/drills/verify.py``), record the table row and fail on any event
lost or doubled or any cell that differs from the oracle.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from batch.reader import BatchReader
from batch.tasks import run_cycle
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.topics import ensure_topics
from serving.merge import iso_ms
from serving.query import merged_query
from speed.consumer import catch_up
from speed.reader import SpeedReader
from tests.drills.harness import (
    REPO,
    SKEW_S,
    STREAM,
    WINDOW_S,
    Proc,
    consumed,
    drill_settings,
    log_end,
)
from tests.drills.ingest import Feed, Ledger
from tests.drills.verify import (
    Verdict,
    check_cells,
    check_master,
    check_samples,
    pool_keys,
    resolve,
)
from tests.namespaces import drop
from views.definition import ViewDef
from views.registry import all_views

Completed = subprocess.CompletedProcess[str]
Query = Callable[[ViewDef, str, tuple[int, int]], dict[str, Any]]
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Sample:
    """One merged answer taken during a drill, ``at`` seconds after the drill started."""

    view: ViewDef
    key: str
    span: tuple[int, int]
    answer: dict[str, Any]
    at: float


class Sampler:
    """Asks for merged answers every ``period_s`` while a fault happens; keeps them all.

    Failures (a 503 while a backend is down, a refused connection while the API is down)
    are kept with the times the query started and failed; wrong answers are found later
    by :func:`check_samples`.
    """

    def __init__(self, query: Query, origin: float, seed: int, period_s: float = 0.25) -> None:
        self.query, self.origin, self.period_s = query, origin, period_s
        self.rng = random.Random(seed)
        self.samples: list[Sample] = []
        self.failures: list[tuple[float, float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drill-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        views = list(all_views().values())
        while not self._stop.wait(self.period_s):
            view = self.rng.choice(views)
            key = self.rng.choice(sorted(pool_keys(view)))
            now = int(time.time() * 1000)
            span = (view.bucket_of(now - DAY_MS), view.bucket_of(now) + 2 * view.bucket_s * 1000)
            at = time.monotonic() - self.origin
            try:
                self.samples.append(Sample(view, key, span, self.query(view, key, span), at))
            except Exception as exc:  # any client may fail while a part is down: keep it
                ended = time.monotonic() - self.origin
                self.failures.append((at, ended, f"{type(exc).__name__}: {exc}"[:200]))

    def answered_since(self, at: float) -> bool:
        return any(s.at >= at for s in self.samples)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def in_process(settings: Settings) -> Query:
    """Merged answers straight from ``serving.query.merged_query`` (HDFS and Redis readers)."""
    batch, speed = BatchReader(settings), SpeedReader(settings)
    return lambda view, key, span: merged_query(settings, batch, speed, view, key, span)


def over_http(base_url: str, read_key: str) -> Query:
    """Merged answers from a running API's ``GET /views/{view}``."""
    client = httpx.Client(base_url=base_url, timeout=10)

    def query(view: ViewDef, key: str, span: tuple[int, int]) -> dict[str, Any]:
        params = {"key": key, "from": iso_ms(span[0]), "to": iso_ms(span[1])}
        resp = client.get(f"/views/{view.name}", params=params, headers={"X-API-Key": read_key})
        resp.raise_for_status()
        return dict(resp.json())

    return query


class Drill:
    """One fault drill in its own namespace, under continuous ingest."""

    def __init__(
        self, name: str, slug: str, base: Settings, workdir: Path, rate: float = 40.0
    ) -> None:
        self.name = name
        self.settings = drill_settings(base, slug)
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger()
        self.feed = Feed(self.settings, self.ledger, seed=zlib.crc32(name.encode()), rate=rate)
        self.procs: list[Proc] = []
        self.samplers: list[Sampler] = []
        self.verdict: Verdict | None = None
        self.problems: list[str] = []  # the drill's own checks that failed (see ``expect``)
        self.fault: dict[str, str] = {}  # what was killed and when, for the table (cluster)
        self.origin = time.monotonic()

    def start(self) -> Drill:
        ensure_topics(self.settings)
        self.feed.start()
        return self

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a platform process in this drill's namespace and windows."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDALAB_BATCH_PAUSE")}
        env.update(
            LAMBDALAB_NAMESPACE=self.settings.namespace,
            LAMBDALAB_DEMO="true",
            LAMBDALAB_BATCH__WINDOW_S=str(WINDOW_S),
            LAMBDALAB_BATCH__CLOCK_SKEW_S=str(SKEW_S),
            PYTHONUNBUFFERED="1",
        )
        return {**env, **extra}

    def spawn(self, name: str, *args: str, supervised: bool = True, **env: str) -> Proc:
        """Start ``lambdalab <args>`` as a platform process of this drill."""
        proc = Proc(name, list(args), self.env(**env), self.workdir / f"{name}.log", supervised)
        self.procs.append(proc)
        return proc.start()

    def speed(self) -> Proc:
        # a stable worker name: restarted after a kill, it takes its partitions back at once
        return self.spawn(
            "speed", "speed", "run", "--quiet", "--stream", STREAM, "--worker", "drill"
        )

    def archiver(self, name: str = "archiver", **env: str) -> Proc:
        """``land --follow``, as the stack runs it."""
        return self.spawn(name, "land", "--follow", **env)

    def cli(self, *args: str, timeout_s: float = 600, **env: str) -> Completed:
        """Run ``lambdalab <args>`` to the end; output kept for the drill's checks."""
        return subprocess.run(
            [sys.executable, "-m", "lambdalab.cli", *args],
            cwd=REPO,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def sample(self, query: Query, period_s: float = 0.25) -> Sampler:
        sampler = Sampler(query, self.origin, seed=len(self.samplers) + 1, period_s=period_s)
        self.samplers.append(sampler)
        return sampler

    def expect(self, holds: bool, problem: str) -> None:
        """A check of the drill itself: a failure is kept and fails the drill at its end,
        after the numbers of the table row have been measured."""
        if not holds:
            self.problems.append(problem)

    def now(self) -> float:
        """Seconds since the drill started (the time axis of samples)."""
        return time.monotonic() - self.origin

    def cycle(self, spark: Any) -> dict[str, Any]:
        """One batch cycle in this process (land, cut, build, publish; no Trino)."""
        report = run_cycle(self.settings, trino=False, spark=spark)
        assert report["ok"], report["summary"]
        return report

    # --- the end ----------------------------------------------------------------------------

    def finish(
        self,
        spark: Any,
        recover_s: float,
        notes: list[str] | None = None,
        notes_after: Callable[[], list[str]] | None = None,
    ) -> Verdict:
        """Stop everything, run the final landing, batch cycle and catch-up, then verify.

        Records the verdict (the fixture writes the table row) and fails the drill on any
        event lost or doubled, or any merged cell or sampled answer that is not exact.
        ``notes_after`` is asked for more notes once the processes have stopped.
        """
        verdict = Verdict(self.name, recover_s=recover_s, notes=list(notes or []))
        verdict.fault = self.fault
        verdict.problems += self.problems
        self.verdict = verdict
        self._halt()
        verdict.notes += notes_after() if notes_after else []
        report = run_cycle(self.settings, trino=False, spark=spark)
        if not report["ok"]:
            verdict.problems.append(f"final batch cycle failed: {report['summary'][:500]}")
        catch_up(self.settings, PAGE_VIEWS)
        if consumed(self.settings) != log_end(self.settings):
            verdict.problems.append("the speed layer did not catch up with the log")
        self._verify(verdict)
        verdict.took_s = self.now()
        self.verdict = verdict  # only now: a drill stopped during its checks is an ERROR row
        row = {k: v for k, v in verdict.row().items() if k != "problems"}
        print(f"\nDRILL {row}")
        assert verdict.ok, "\n".join([f"{self.name}: {row}", *verdict.problems[:40]])
        return verdict

    def _halt(self) -> None:
        for sampler in self.samplers:
            sampler.stop()
        self.feed.stop()
        for proc in self.procs:
            proc.stop()

    def _verify(self, verdict: Verdict) -> None:
        truth = resolve(self.settings, self.ledger)
        verdict.accepted = len(self.ledger.accepted)
        m_lost, m_doubled, problems = check_master(self.settings, truth, self.ledger)
        verdict.cells, c_lost, c_doubled, cell_problems = check_cells(self.settings, truth)
        samples = [s for sampler in self.samplers for s in sampler.samples]
        verdict.answers = len(samples)
        verdict.lost = max(truth.lost_in_log + m_lost, c_lost)
        verdict.doubled = max(truth.doubled_in_log + m_doubled, c_doubled)
        verdict.problems += problems + cell_problems[:40] + check_samples(samples, truth)[:40]
        if doubtful := len(self.ledger.doubtful):
            verdict.notes.append(f"{doubtful} sent in doubt, {truth.doubt_landed} in the log")
        crashes = {p.name: len(p.crashes) for p in self.procs if p.crashes}
        if crashes:
            verdict.notes.append(f"restarted after exiting: {crashes}")
        for proc in self.procs:
            if proc.fatal:
                verdict.problems.append(f"{proc.name} failed to start again (supervisord: FATAL)")

    def close(self) -> None:
        """Teardown: stop whatever still runs and drop the namespace from the stack."""
        try:
            self._halt()
        finally:
            for proc in self.procs:
                proc.kill()
            drop(self.settings)
            for lock in self.settings.paths.state_dir.glob(
                f"archiver-{self.settings.namespace}-*.lock"
            ):
                lock.unlink(missing_ok=True)
