"""N speed workers per stream, on the local stack: partitions move, nothing lost or doubled.

Two workers join the stream's consumer group under continuous ingest (one a subprocess,
one a thread); the subprocess is SIGKILLed and its partitions move to the survivor after
the session timeout; a third worker joins and takes a share. A zombie -- a consumer that
held every partition before the group took them -- writes nothing once fenced. At the end
the realtime views equal the oracle, and the merged reader's offsets name every
partition at its end offset.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.topics import end_offsets_of, ensure_topics, kafka_consumer, partitions
from speed.consumer import SpeedConsumer
from speed.reader import SpeedReader
from tests.events import EventFactory
from tests.integration.test_speed_layer import (
    WINDOW_S,
    _events,
    assert_equal,
    oracle,
    produce,
    read_back,
    redis_state,
)

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ns(stack: Settings, settings: Settings) -> Settings:
    """The test's namespace with 2-second windows (as ``test_speed_layer``)."""
    s = settings.model_copy(
        update={"batch": settings.batch.model_copy(update={"window_s": WINDOW_S})}
    )
    ensure_topics(s)
    return s


class _Worker:
    """A group worker in a thread of this process, so the test can see what it owns."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.consumer = SpeedConsumer(
            settings, PAGE_VIEWS, group=True, worker=name, max_poll_records=100
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name)
        self.failed: list[BaseException] = []

    def _run(self) -> None:
        try:
            self.consumer.setup()
            self.consumer.run(stop=self.stop)
        except BaseException as exc:  # surfaced by owns()
            self.failed.append(exc)
        finally:
            self.consumer.close()

    def owns(self) -> set[int]:
        assert not self.failed, self.failed
        return set(dict(self.consumer.owned))

    def __enter__(self) -> _Worker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def _spawn(settings: Settings, name: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LAMBDALAB_NAMESPACE": settings.namespace,
        "LAMBDALAB_BATCH__WINDOW_S": str(WINDOW_S),
        "LAMBDALAB_REDIS__URL": settings.redis.url,
    }
    cmd = [str(REPO / ".venv/bin/lambdalab"), "speed", "run", "--quiet", "--worker", name]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stderr=subprocess.PIPE)


def _until(check: Callable[[], bool], what: str, timeout_s: float = 40.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
        time.sleep(0.2)


@pytest.fixture
def feeding(ns: Settings, make_event: EventFactory) -> Iterator[threading.Event]:
    """Continuous ingest until the returned event is set (or the test ends)."""
    done = threading.Event()
    feed = _events(make_event)

    def keep_producing() -> None:
        while not done.is_set():
            produce(ns, feed, 40)
            time.sleep(0.1)

    feeder = threading.Thread(target=keep_producing)
    feeder.start()
    yield done
    done.set()
    feeder.join()


def test_workers_join_crash_and_leave_without_a_gap_or_a_double_count(
    ns: Settings, feeding: threading.Event
) -> None:
    every = set(range(ns.kafka.partitions))
    zombie = SpeedConsumer(ns, PAGE_VIEWS, max_poll_records=100)  # owns all, no group
    zombie.setup()
    time.sleep(0.5)
    zombie.step()
    assert set(zombie.owned) == every
    killed = _spawn(ns, "a")
    try:
        with _Worker(ns, "b") as b:
            _until(lambda: bool(b.owns()) and b.owns() != every, "the group splits them")
            zombie.applied = 0
            deadline = time.monotonic() + 10
            while zombie.owned and time.monotonic() < deadline:
                zombie.step()  # its partitions were claimed by the group: fenced, not written
            assert zombie.owned == {} and zombie.applied == 0
            killed.send_signal(signal.SIGKILL)
            assert killed.wait(timeout=10) == -signal.SIGKILL
            started = time.monotonic()
            _until(lambda: b.owns() == every, "the killed worker's partitions move to b")
            moved_s = time.monotonic() - started
            with _Worker(ns, "c") as c:
                _until(lambda: bool(c.owns()) and b.owns() | c.owns() == every, "c takes a share")
                assert not b.owns() & c.owns()
                time.sleep(1.0)
                feeding.set()  # ingest stops; the two catch up
                _until(lambda: _caught_up(ns), "b and c catch up", timeout_s=60)
    finally:
        zombie.close()
        if killed.poll() is None:
            killed.kill()
    client = redis.Redis.from_url(ns.redis.url)
    assert_equal(oracle(read_back(ns), WINDOW_S), redis_state(ns, client))
    offsets = SpeedReader(ns).stream_offsets(PAGE_VIEWS.name)
    assert offsets == _ends(ns) and set(offsets) == every
    assert moved_s < 20, f"partitions moved {moved_s:.1f} s after the kill"


def _ends(settings: Settings) -> dict[int, int]:
    consumer = kafka_consumer(settings)
    try:
        return end_offsets_of(consumer, partitions(consumer, settings.topic_for(PAGE_VIEWS.name)))
    finally:
        consumer.close()


def _caught_up(settings: Settings) -> bool:
    return SpeedReader(settings).stream_offsets(PAGE_VIEWS.name) == _ends(settings)
