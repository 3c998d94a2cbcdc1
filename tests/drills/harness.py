"""What every drill runs on besides its ingest: settings, processes, probes, stack services.

A drill works in a namespace of its own with 5-second ingest windows
(:func:`drill_settings`), starts the platform's processes as the real CLI (:class:`Proc`:
``speed run``, ``land --follow``, ``serve``, ``batch run``), reads how far each layer got
(speed offsets in Redis, next offsets of the master dataset, end offsets of the log) to
time a recovery, and stops and starts services of the local stack (:func:`stopped`).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch.master import list_files, next_offsets
from infra.health import check_for
from infra.stack import WAIT_S, Stack
from lambdalab.hdfs import webhdfs
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.topics import end_offsets
from lambdalab.wait import wait_until
from speed.store import RealtimeStore, connect

REPO = Path(__file__).resolve().parents[2]
FULL = os.environ.get("LAMBDALAB_DRILLS", "short") == "full"
WINDOW_S, SKEW_S = 5, 1  # short ingest windows: a batch cycle covers data within seconds
STREAM = PAGE_VIEWS.name
START_S, START_RETRIES = 3.0, 3  # supervisord's startsecs (infra/supervise.py), startretries


def drill_settings(base: Settings, slug: str) -> Settings:
    """``base`` in a namespace of its own (``drill_{slug}_{hex}``) with 5-second windows."""
    batch = base.batch.model_copy(update={"window_s": WINDOW_S, "clock_skew_s": SKEW_S})
    name = f"drill_{slug}_{os.urandom(3).hex()}"
    return base.model_copy(update={"namespace": name, "batch": batch})


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> float:
    """Seconds until ``check`` holds; a failing check (a backend down) means "not yet"."""
    started = time.monotonic()
    wait_until(check, timeout_s=timeout_s, interval_s=0.2, what=what, retry_on=(Exception,))
    return time.monotonic() - started


# --- platform processes --------------------------------------------------------------------


class Proc:
    """One platform process (``python -m lambdalab.cli …``) in its own process group.

    ``supervised`` processes are restarted as the stack's supervisord restarts them
    (``infra/supervise.py``: ``autorestart=unexpected``, ``startsecs=3``, supervisord's
    default ``startretries=3``): an exit the drill did not ask for is recorded in
    ``crashes`` and restarted at once; a process that exits within ``START_S`` of its
    start failed to start and is retried after 1, 2, 3 s, then given up on (``fatal``),
    so a process that cannot come back on the real stack does not come back here either.
    Output goes to a log file in the drill's folder.
    """

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log: Path, supervised: bool
    ) -> None:
        self.name, self.args, self.env, self.log = name, args, env, log
        self.supervised = supervised
        self.crashes: list[int] = []
        self.fatal = False
        self.popen: subprocess.Popen[bytes] | None = None
        self._failed_starts = 0
        self._halting = True
        self._lock = threading.Lock()

    def start(self) -> Proc:
        with self._lock:
            self._halting, self._failed_starts, self.fatal = False, 0, False
            self._spawn()
        return self

    def _spawn(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "lambdalab.cli", *self.args],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.supervised:
            threading.Thread(target=self._watch, args=(self.popen,), daemon=True).start()

    def _watch(self, popen: subprocess.Popen[bytes]) -> None:
        started = time.monotonic()
        code = popen.wait()
        with self._lock:
            if self._halting or popen is not self.popen:
                return
            self.crashes.append(code)
            if code == 0:  # an expected exit (exitcodes=0): supervisord leaves it stopped
                return
            quick = time.monotonic() - started < START_S
            self._failed_starts = self._failed_starts + 1 if quick else 0
            self.fatal = self._failed_starts > START_RETRIES
            if self.fatal:
                return
        time.sleep(self._failed_starts)  # supervisord's backoff: 1, 2, 3 s
        with self._lock:
            if not self._halting and popen is self.popen:
                self._spawn()

    def kill(self) -> None:
        """SIGKILL the whole process group (a Spark JVM child goes too); no restart."""
        self._signal(signal.SIGKILL, wait_s=30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 60 s; no restart."""
        try:
            self._signal(signal.SIGTERM, wait_s=60)
        except subprocess.TimeoutExpired:
            self.kill()

    def _signal(self, sig: int, wait_s: float) -> None:
        with self._lock:
            self._halting = True
            popen = self.popen
        if popen is None or popen.poll() is not None:
            return
        try:
            os.killpg(popen.pid, sig)
        except ProcessLookupError:
            return
        popen.wait(timeout=wait_s)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_output(self, text: str, timeout_s: float) -> None:
        """Wait until ``text`` appears in the log; fail early if the process exited."""

        def seen() -> bool:
            if text in self.output():
                return True
            assert self.popen is not None and self.popen.poll() is None, (
                f"{self.name} exited ({self.popen and self.popen.returncode}) before "
                f"printing {text!r}:\n{self.output()[-3000:]}"
            )
            return False

        wait_until(seen, timeout_s=timeout_s, interval_s=0.2, what=f"{self.name}: {text}")


# --- probes: how far each layer got ----------------------------------------------------------


def log_end(settings: Settings) -> int:
    """Records in the drill's topic (sum of end offsets)."""
    return sum(end_offsets(settings, settings.topic_for(STREAM)).values())


def landed(settings: Settings) -> int:
    """Offsets covered by the master dataset (sum of its next offsets)."""
    return sum(next_offsets(list_files(webhdfs(settings), settings, STREAM)).values())


def consumed(settings: Settings) -> int:
    """Offsets the speed layer committed in Redis with its increments."""
    client = connect(settings)
    try:
        store = RealtimeStore(settings, settings.topic_for(STREAM), client)
        return sum(store.read_offsets().values())
    finally:
        client.close()


# --- services of the local stack -------------------------------------------------------------


@dataclass
class Outage:
    """One stop/start of a stack service; monotonic times of each step."""

    service: str
    stopped_at: float = 0.0
    started_at: float = 0.0
    healthy_at: float = 0.0


@contextmanager
def stopped(stack: Stack, service: str) -> Iterator[Outage]:
    """Stop a stack service for the block; always start it again and wait until healthy."""
    outage = Outage(service)
    stack.supervisor.stop(service)
    outage.stopped_at = time.monotonic()
    try:
        yield outage
    finally:
        outage.started_at = time.monotonic()
        bring_back(stack, service)
        outage.healthy_at = time.monotonic()


def bring_back(stack: Stack, service: str) -> None:
    """Start ``service`` (a no-op if it runs) and wait for its health check to pass."""
    stack.supervisor.start(service)
    wait_until(
        lambda: check_for(service)(stack.settings),
        timeout_s=WAIT_S.get(service, 90),
        interval_s=1.0,
        what=f"{service} healthy again",
        retry_on=(Exception,),
    )


def jitter(rng: random.Random, low: float, high: float) -> None:
    """Sleep a random moment in [low, high) seconds."""
    time.sleep(rng.uniform(low, high))
