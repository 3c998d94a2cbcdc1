"""The archiver: lands every record of the ``events`` log into the immutable master dataset.

Exactly once across crashes, by construction rather than by a checkpoint to trust:

- The only progress record is the master dataset itself. Each committed file's name
  carries its partition and offset range (:class:`lambdalab.paths.MasterFile`), so a run
  resumes from :func:`batch.master.next_offsets` of the files that exist.
- Records are grouped per (partition, ingest window); each group becomes ONE file whose
  name covers the consumed range first..last, malformed records included. Committing is a
  single HDFS rename, and an existing name is never overwritten, so a killed run leaves
  whole files only and a rerun re-reads exactly the uncommitted suffix.
- Files of a partition are committed strictly in offset order, so "next offset = last
  committed + 1" never skips a range. Different partitions' files are committed side by
  side (HDFS round trips, not CPU, bound a commit).
- Records are split into events and dead letters by :func:`lambdalab.deadletters.split`;
  dead letters of a range are produced and flushed BEFORE its file is committed (a crash
  in between reports them again; the compacted DLQ keeps each once).

Concurrency: correctness does not depend on a lock. Every commit claims its first offset
in HDFS itself (:func:`batch.master.commit_file`: a create with ``overwrite=false`` that
the NameNode grants once), so any number of landers on any number of hosts land every
offset once; a lander that loses a claim stops its run and the next run resumes from the
committed files. An exclusive ``fcntl`` lock on ``{state_dir}/archiver-{ns}-{stream}.lock``
still orders the landers of one host (a batch cycle waits for the continuous archiver's
turn instead of racing it); the kernel releases it even on SIGKILL.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from hdfs import InsecureClient
from kafka import TopicPartition

from batch.master import check_schema, check_window, commit_file, list_files, next_offsets, to_table
from lambdalab.boundary import window_of
from lambdalab.deadletters import DeadLetter, DeadLetters, split
from lambdalab.errors import BatchError, ClaimLost, ServiceUnavailable, WaitTimeout
from lambdalab.hdfs import webhdfs
from lambdalab.paths import HdfsPaths, MasterFile
from lambdalab.schema import STREAMS, Stream
from lambdalab.settings import Settings
from lambdalab.topics import end_offsets, ensure_topics, kafka_consumer
from lambdalab.wait import wait_until

log = logging.getLogger(__name__)
MAX_ROWS_PER_FILE = 50_000
CLAIM_RETRIES = 5  # runs started over after losing a claim, before the error propagates
FOLLOW_SLEEP_S = 1.0
FOLLOW_LOCK_WAIT_S = 600.0  # a batch cycle may hold the lock while it lands
COMMIT_THREADS = 4  # partitions whose files are committed side by side


@dataclass
class Group:
    """The records of one (partition, ingest window) not yet committed: one future file."""

    partition: int
    window_ms: int
    first: int
    last: int = -1
    rows: list[dict[str, Any]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


@dataclass
class Run:
    """Bookkeeping of one landing run (becomes its manifest)."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    ranges: dict[int, list[int]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    rows: int = 0
    dead_letters: int = 0

    def manifest(self) -> dict[str, Any]:
        """The run as its JSON manifest; ``finished_ms`` is the time of this call."""
        return {
            "run_id": self.run_id,
            "started_ms": self.started_ms,
            "finished_ms": int(time.time() * 1000),
            "ranges": {str(p): r for p, r in sorted(self.ranges.items())},
            "files": self.files,
            "rows": self.rows,
            "dead_letters": self.dead_letters,
        }


@contextmanager
def archiver_lock(settings: Settings, stream: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the exclusive archiver lock of a namespace's stream, waiting up to ``wait_s``.

    Raises:
        BatchError: another archiver still holds it after ``wait_s``.
    """
    folder = settings.paths.state_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"archiver-{settings.namespace}-{stream}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _take_lock(fd, path, settings.namespace, wait_s)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)


def _take_lock(fd: int, path: Path, namespace: str, wait_s: float) -> None:
    """Take the exclusive ``flock`` on ``fd`` (the lock file ``path``), waiting up to ``wait_s``.

    Raises:
        BatchError: another process still holds it after ``wait_s``.
    """

    def free() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    try:
        wait_until(free, timeout_s=wait_s, interval_s=0.2, what=f"archiver lock {path}")
    except WaitTimeout:
        msg = f"another archiver holds {path} for namespace {namespace!r}"
        raise BatchError(msg) from None


def land(
    settings: Settings,
    stream: Stream,
    *,
    until: dict[int, int] | None = None,
    max_rows_per_file: int = MAX_ROWS_PER_FILE,
    lock_wait_s: float = 0.0,
) -> dict[str, Any]:
    """Land ``stream``'s log into the master dataset once; return the run's manifest.

    One run consumes every partition from the master dataset's next offsets up to
    ``until`` (default: the end offsets when the run starts) and writes a manifest.
    """
    ensure_topics(settings)
    with archiver_lock(settings, stream.name, lock_wait_s):
        check_schema(webhdfs(settings), settings, stream)  # refuses a removed/retyped field
        check_window(webhdfs(settings), settings, stream.name)
        for _ in range(CLAIM_RETRIES):
            try:
                return _land_once(settings, stream, until, max_rows_per_file, always_manifest=True)
            except ClaimLost as exc:  # another lander moved on: start over from its commits
                log.warning("landing %s: %s", stream.name, exc)
        return _land_once(settings, stream, until, max_rows_per_file, always_manifest=True)


def wait_landed(
    settings: Settings, stream: Stream, until: dict[int, int], timeout_s: float
) -> dict[str, Any]:
    """Wait until another lander has landed ``stream`` up to ``until``; land nothing.

    For a deployment with one continuous lander (``land --follow``) and a batch that must
    not land itself (``batch.landing = "wait"``). Landed means: the master dataset's next
    offset reaches ``until`` in every partition, or what lies between holds no record a
    read-committed consumer returns (transaction markers and aborted records are never
    landed, so the next offset can stay below the end offset for good).

    Raises:
        BatchError: not landed within ``timeout_s`` (is ``lambdalab land --follow`` running?).
    """
    client = webhdfs(settings)
    topic = settings.topic_for(stream.name)
    started = time.monotonic()

    def landed() -> bool:
        start = next_offsets(list_files(client, settings, stream.name))
        gap = {p: (start.get(p, 0), end) for p, end in until.items() if start.get(p, 0) < end}
        return not gap or not _holds_records(settings, topic, gap)

    try:
        wait_until(landed, timeout_s=timeout_s, interval_s=1.0, what=f"{stream.name} landed")
    except WaitTimeout as exc:
        msg = (
            f"{stream.name}: the archiver did not land up to offsets {until} within "
            f"{timeout_s:.0f} s (batch.landing=wait; is `lambdalab land --follow` running?)"
        )
        raise BatchError(msg) from exc
    return {
        "stream": stream.name,
        "landing": "waited",
        "until": until,
        "waited_s": round(time.monotonic() - started, 3),
    }


def _holds_records(settings: Settings, topic: str, gap: dict[int, tuple[int, int]]) -> bool:
    """Whether a read-committed consumer finds any record in ``gap`` (per partition)."""
    with _reading(settings, topic, gap) as (consumer, tps):
        remaining = set(gap)
        while remaining:
            batch = consumer.poll(timeout_ms=1000, max_records=1)
            if any(r.offset < gap[tp.partition][1] for tp, rs in batch.items() for r in rs):
                return True
            remaining = {p for p in remaining if consumer.position(tps[p]) < gap[p][1]}
        return False


@contextmanager
def _reading(
    settings: Settings, topic: str, ranges: dict[int, tuple[int, int]], **config: Any
) -> Iterator[tuple[Any, dict[int, TopicPartition]]]:
    """A read-committed consumer assigned to ``ranges``' partitions, each at its first offset."""
    consumer = kafka_consumer(settings, **config)
    try:
        tps = {p: TopicPartition(topic, p) for p in ranges}
        consumer.assign(list(tps.values()))
        for p, (first, _end) in ranges.items():
            consumer.seek(tps[p], first)
        yield consumer, tps
    finally:
        consumer.close()


def land_forever(settings: Settings, max_rows: int = MAX_ROWS_PER_FILE) -> dict[str, Any]:
    """Land every declared stream, run after run, until SIGTERM/SIGINT.

    Runs that landed nothing write no manifest, and the lock is held per run only, so that
    a batch cycle's own landing (``lock_wait_s`` > 0) can take its turn between two runs.
    Returns the last manifest that landed files.
    """
    ensure_topics(settings)
    stop = {"now": False}

    def _stop(_signum: int, _frame: Any) -> None:
        stop["now"] = True

    for stream in STREAMS.values():  # a refused evolution stops the archiver at start-up
        check_schema(webhdfs(settings), settings, stream)
        check_window(webhdfs(settings), settings, stream.name)
    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    last: dict[str, Any] = {}
    try:
        while not stop["now"]:
            for stream in STREAMS.values():
                try:
                    with archiver_lock(settings, stream.name, FOLLOW_LOCK_WAIT_S):
                        manifest = _land_once(
                            settings, stream, None, max_rows, always_manifest=False
                        )
                except BatchError as exc:  # another lander won a claim: resume next run
                    log.warning("landing %s: %s", stream.name, exc)
                    continue
                last = manifest if manifest["files"] else last
            deadline = time.monotonic() + FOLLOW_SLEEP_S
            while not stop["now"] and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return last


def _land_once(
    settings: Settings,
    stream: Stream,
    until: dict[int, int] | None,
    max_rows: int,
    *,
    always_manifest: bool,
) -> dict[str, Any]:
    client = webhdfs(settings)
    run = Run()
    topic = settings.topic_for(stream.name)
    goal = until if until is not None else end_offsets(settings, topic)
    try:
        start = next_offsets(list_files(client, settings, stream.name))
    except OSError as exc:
        msg = f"HDFS at {settings.hdfs.webhdfs_url} did not answer: {exc}"
        raise ServiceUnavailable(msg) from exc
    todo = {p: (start.get(p, 0), end) for p, end in goal.items() if start.get(p, 0) < end}
    if todo:
        _Lander(settings, client, stream, run, max_rows).consume(todo)
    manifest = run.manifest()
    if always_manifest or run.files:
        _write_manifest(client, settings, stream, manifest)
    return manifest


class _Lander:
    """One run's consumption: open groups per partition, committed in offset order."""

    def __init__(
        self, settings: Settings, client: InsecureClient, stream: Stream, run: Run, max_rows: int
    ) -> None:
        self.settings = settings
        self.client = client
        self.stream = stream
        self.run = run
        self.max_rows = max_rows
        self.topic = settings.topic_for(stream.name)
        self.dead = DeadLetters(settings, layer="archiver")
        self.groups: dict[int, Group] = {}
        self.closed: list[Group] = []  # complete groups, committed after each poll

    def consume(self, todo: dict[int, tuple[int, int]]) -> None:
        """Land every partition p from todo[p][0] up to (excluding) todo[p][1]."""
        fetch = {"max_partition_fetch_bytes": 4 * 1024 * 1024}
        try:
            with _reading(self.settings, self.topic, todo, **fetch) as (consumer, tps):
                self._consume(consumer, tps, todo)
        finally:
            self.dead.close()

    def _consume(
        self, consumer: Any, tps: dict[int, TopicPartition], todo: dict[int, tuple[int, int]]
    ) -> None:
        remaining = dict(todo)
        while remaining:
            batch = consumer.poll(timeout_ms=1000, max_records=5000)
            for tp, records in batch.items():
                end = todo[tp.partition][1]
                for r in records:
                    if r.offset >= end:
                        break
                    self.add(r)
            for p in list(remaining):
                if consumer.position(tps[p]) >= todo[p][1]:
                    remaining.pop(p)
                    consumer.pause(tps[p])
                    if p in self.groups:
                        self.closed.append(self.groups.pop(p))
            self.commit_closed()

    def add(self, record: Any) -> None:
        """Put one record in its partition's open group, closing the group it ends."""
        p = record.partition
        window = window_of(record.timestamp, self.settings.batch.window_s)
        group = self.groups.get(p)
        if group is not None and (group.window_ms != window or len(group.rows) >= self.max_rows):
            self.closed.append(group)
            group = None
        if group is None:
            group = self.groups[p] = Group(p, window, record.offset)
        group.last = record.offset
        good, dead = split(self.stream, [record])
        group.dead.extend(dead)
        for decoded in good:
            group.rows.append(
                {
                    "topic": record.topic,
                    "partition": p,
                    "offset": record.offset,
                    "ingest_ts": record.timestamp,
                    "key": record.key,
                    "value": record.value,
                    "event": decoded.event,
                }
            )

    def commit_closed(self) -> None:
        """Commit the closed groups: dead letters first (flushed), then the files.

        Each partition's files are committed in offset order, different partitions side by
        side; the run records them in the order they were closed.
        """
        closed, self.closed = self.closed, []
        if not closed:
            return
        for group in closed:
            self.dead.report(group.dead)
        self.dead.flush()
        by_partition: dict[int, list[Group]] = {}
        for group in closed:
            by_partition.setdefault(group.partition, []).append(group)

        def in_order(groups: list[Group]) -> list[str]:
            return [self.commit(group) for group in groups]

        threads = min(COMMIT_THREADS, len(by_partition))
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="commit") as pool:
            paths = dict(zip(by_partition, pool.map(in_order, by_partition.values()), strict=True))
        for group in closed:
            self._record(group, paths[group.partition].pop(0))

    def commit(self, group: Group) -> str:
        """The one atomic file commit of a group's range (its dead letters are flushed)."""
        mf = MasterFile(group.window_ms, group.partition, group.first, group.last)
        table = to_table(self.stream, group.rows)
        return commit_file(self.client, self.settings, self.stream, mf, table, self.run.run_id)

    def _record(self, group: Group, path: str) -> None:
        run = self.run
        run.files.append(path)
        run.rows += len(group.rows)
        run.dead_letters += len(group.dead)
        span = run.ranges.setdefault(group.partition, [group.first, group.last])
        span[1] = group.last


def _write_manifest(
    client: InsecureClient, settings: Settings, stream: Stream, manifest: dict[str, Any]
) -> str:
    """Write-then-rename, so a reader sees a whole manifest or none."""
    folder = HdfsPaths(settings).manifests(stream.name)
    name = f"landing-{manifest['started_ms']}-{manifest['run_id']}.json"
    tmp = f"{folder}/.tmp.{name}"
    client.write(tmp, data=orjson.dumps(manifest, option=orjson.OPT_INDENT_2), overwrite=True)
    client.rename(tmp, f"{folder}/{name}")
    return f"{folder}/{name}"
