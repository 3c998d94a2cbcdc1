"""Dependencies of the serving layer's routes: settings and the two readers it merges.

The batch reader (HDFS views) and the speed reader (Redis views) are created once per
app, lazily, and kept in ``app.state``; tests swap them with
``app.dependency_overrides[get_batch] = ...``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from hdfs import InsecureClient

from lambdalab.errors import LambdaLabError
from lambdalab.hdfs import webhdfs
from lambdalab.settings import Settings
from serving.auth import require
from serving.kafkaprobe import KafkaProbe

log = logging.getLogger(__name__)
_lock = threading.Lock()
VERSION_TTL_S = 1.0


class BatchSource(Protocol):
    """What the serving layer needs from ``batch.reader.BatchReader``."""

    def versions(self, view: str) -> list[Any]:
        """Published versions of ``view``, newest first (``VersionInfo``)."""

    def current(self, view: str) -> Any:
        """The newest published version of ``view``, or None before the first one."""

    def rows(
        self, view: str, version: int, key: str, bucket_from_ms: int, bucket_to_ms: int
    ) -> dict[int, dict[str, Any]]:
        """bucket_ms -> {measure: value} of one key in one version, buckets in [from, to).

        Raises:
            ServiceUnavailable: HDFS did not answer.
        """

    def cells(
        self,
        view: str,
        version: int,
        bucket_from_ms: int,
        bucket_to_ms: int,
        keep: Callable[[str], bool] | None = None,
    ) -> dict[str, dict[int, dict[str, Any]]]:
        """Per key ``keep`` accepts: bucket_ms -> measures, in one version.

        Raises:
            ServiceUnavailable: HDFS did not answer.
        """

    def info(self, view: str, version: int) -> Any:
        """Version ``version`` of ``view`` (``VersionInfo``); NotFound when not published."""

    def ready(self, info: Any) -> bool:
        """Whether this host's local copy of the version is built."""

    def prepare(self, info: Any) -> None:
        """Build this host's local copy of the version (blocks).

        Raises:
            ServiceUnavailable: HDFS did not answer.
        """

    def local(self, view: str, version: int) -> Any:
        """The local copy of a version (``batch.localcopy.LocalVersion``), built if needed."""


class SpeedSource(Protocol):
    """What the serving layer needs from ``speed.reader.SpeedReader``."""

    def partials(
        self, view: str, key: str, since_window_ms: int, bucket_from_ms: int, bucket_to_ms: int
    ) -> dict[int, dict[str, Any]]:
        """bucket_ms -> measures of one key over ingest windows >= ``since_window_ms``."""

    def snapshot(
        self, view: str, key: str, since_window_ms: int, bucket_from_ms: int, bucket_to_ms: int
    ) -> Any:
        """The partials with the offsets and freshness they reflect, read atomically.

        Raises:
            ServiceUnavailable: Redis did not answer.
        """

    def view_snapshot(
        self,
        view: str,
        since_window_ms: int,
        bucket_from_ms: int,
        bucket_to_ms: int,
        keep: Callable[[str], bool] | None = None,
    ) -> Any:
        """Partials of every key ``keep`` accepts, with their offsets, read at one instant.

        Raises:
            ServiceUnavailable: Redis did not answer.
        """

    def freshness_ms(self, view: str) -> int | None:
        """Newest ingest time (ms) applied to ``view``'s realtime part, None if none yet."""

    def offsets(self, view: str) -> dict[int, int]:
        """Partition -> next offset committed together with ``view``'s increments."""

    def stream_offsets(self, stream: str) -> dict[int, int]:
        """Partition -> next offset the speed consumer of ``stream`` committed."""

    def dimensions(self, view: str) -> dict[str, int | None]:
        """Dimension -> version the realtime part of ``view`` was built with."""

    def status(self, stream: str) -> dict[str, Any]:
        """The speed consumer of ``stream``: offsets, freshness, rebuild, windows held."""


# The dependencies below are ``async def`` although they do no I/O: FastAPI runs a plain
# ``def`` dependency in its threadpool, a hop per dependency per request.


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def shared(state: Any, attr: str, factory: Any) -> Any:
    """``state.<attr>``, created once from ``state.settings`` by ``factory`` on first use.

    Routes reach it through a request; the history sampler (:mod:`serving.history`)
    through the app's state directly, so both share one reader and one probe.
    """
    with _lock:
        if getattr(state, attr, None) is None:
            setattr(state, attr, factory(state.settings))
    return getattr(state, attr)


def _cached(request: Request, attr: str, factory: Any) -> Any:
    return shared(request.app.state, attr, factory)


def same_definition(a: Any, b: Any) -> bool:
    """Whether two versions of a view were built from the same definition (lineage)."""
    la, lb = getattr(a, "lineage", None) or {}, getattr(b, "lineage", None) or {}
    return bool(la.get("view_fingerprint") == lb.get("view_fingerprint"))


class PointerCache:
    """A batch source whose version pointer is cached briefly and only names ready versions.

    Reading the pointer costs two WebHDFS round trips (~8 ms), most of a merged query, so
    it is read at most every ``ttl_s`` seconds. A pointer at most ``ttl_s`` old is still
    exact: the answer uses that version's cut throughout, and the speed layer keeps the
    realtime windows of two generations.

    A newly published version becomes current here only once this host's local copy of it
    is built (``BatchReader.ready``): until then a background thread builds it and queries
    keep reading the version just before it, which is exact for the same reason (its cut
    is the expiry horizon). When no such version is ready (a fresh process, or two
    publications during one build) the query waits for the build instead.
    """

    def __init__(self, inner: BatchSource, ttl_s: float = VERSION_TTL_S) -> None:
        self.inner = inner
        self.ttl_s = ttl_s
        self._pointers: dict[str, tuple[float, Any]] = {}
        self._served: dict[str, Any] = {}  # view -> the newest version served (ready)
        self._builds: dict[tuple[str, int], threading.Thread] = {}
        self._lock = threading.Lock()

    def versions(self, view: str) -> list[Any]:
        """Published versions of ``view`` from the inner source (not cached)."""
        return self.inner.versions(view)

    def current(self, view: str) -> Any:
        """The newest version of ``view`` (read at most ``ttl_s`` ago) once its copy is ready.

        While that copy builds: the version just before it, when this host has its copy.
        """
        newest = self._newest(view)
        if newest is None or not hasattr(self.inner, "ready") or self.inner.ready(newest):
            self._served[view] = newest
            return newest
        build = self._prefetch(newest)
        older = self._older(view, newest)
        if older is not None:
            return older
        build.join()
        self.inner.prepare(newest)  # re-raises what the background build hit, if anything
        self._served[view] = newest
        return newest

    def fresh(self, view: str) -> bool:
        """Whether :meth:`current` answers from memory (no HDFS read, no build to wait for).

        The async point query runs inline when it does, in the threadpool otherwise.
        """
        hit = self._pointers.get(view)
        if hit is None or time.monotonic() - hit[0] >= self.ttl_s:
            return False
        served = self._served.get(view)
        return hit[1] is None or (served is not None and served.version == hit[1].version)

    def _newest(self, view: str) -> Any:
        now = time.monotonic()
        hit = self._pointers.get(view)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        info = self.inner.current(view)
        self._pointers[view] = (now, info)
        return info

    def _older(self, view: str, newest: Any) -> Any:
        """The ready version just before ``newest``, if there is one (else None).

        Only one built from the same definition (view fingerprint, with the dimension
        versions it was pinned to): a changed definition or dimension makes the speed
        layer rebuild from ``newest``'s cut, so the windows the older version needs are
        gone, and answering from it would drop every record between the two cuts.
        """
        served = self._served.get(view)
        if served is not None and served.version == newest.version - 1:
            return served if same_definition(served, newest) else None
        try:
            before = self.inner.info(view, newest.version - 1)
        except LambdaLabError:  # not published (pruned or the first version): wait instead
            return None
        if self.inner.ready(before) and same_definition(before, newest):
            self._served[view] = before
            return before
        return None

    def _prefetch(self, info: Any) -> threading.Thread:
        """The thread building ``info``'s local copy (started on first sight)."""
        with self._lock:
            build = self._builds.get((info.view, info.version))
            if build is None:
                build = threading.Thread(
                    target=self._build, args=(info,), name=f"copy-{info.view}", daemon=True
                )
                self._builds[(info.view, info.version)] = build
                build.start()
            return build

    def _build(self, info: Any) -> None:
        try:
            self.inner.prepare(info)
        except LambdaLabError as exc:  # HDFS away or version pruned: the next query retries
            log.warning("view %s: local copy of v%06d failed: %s", info.view, info.version, exc)
        finally:
            with self._lock:
                self._builds.pop((info.view, info.version), None)

    def rows(
        self, view: str, version: int, key: str, bucket_from_ms: int, bucket_to_ms: int
    ) -> dict[int, dict[str, Any]]:
        """The inner source's rows (from its local copy of the version)."""
        return self.inner.rows(view, version, key, bucket_from_ms, bucket_to_ms)

    def cells(
        self,
        view: str,
        version: int,
        bucket_from_ms: int,
        bucket_to_ms: int,
        keep: Callable[[str], bool] | None = None,
    ) -> dict[str, dict[int, dict[str, Any]]]:
        """The inner source's cells (from its local copy, like :meth:`rows`)."""
        return self.inner.cells(view, version, bucket_from_ms, bucket_to_ms, keep)

    def local(self, view: str, version: int) -> Any:
        """The inner source's local copy of a version (what merged SQL scans)."""
        return self.inner.local(view, version)

    def close(self) -> None:
        """Close the inner source, if it has anything to close (the app's shutdown)."""
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


async def get_batch(request: Request) -> BatchSource:
    """The app's batch reader (``batch.reader.BatchReader`` behind a pointer cache)."""
    from batch.reader import BatchReader

    reader: BatchSource = _cached(request, "batch_reader", lambda s: PointerCache(BatchReader(s)))
    return reader


def speed_of(state: Any) -> SpeedSource:
    """The speed reader (``speed.reader.SpeedReader``) of an app's ``state``."""
    from speed.reader import SpeedReader

    reader: SpeedSource = shared(state, "speed_reader", SpeedReader)
    return reader


def probe_of(state: Any) -> KafkaProbe:
    """The Kafka probe (end offsets, dead letters) of an app's ``state``."""
    probe: KafkaProbe = shared(state, "kafka_probe", KafkaProbe)
    return probe


async def get_speed(request: Request) -> SpeedSource:
    """The app's speed reader (``speed.reader.SpeedReader``), created on first use."""
    return speed_of(request.app.state)


async def get_probe(request: Request) -> KafkaProbe:
    """The app's Kafka probe (end offsets, dead letters), created on first use."""
    return probe_of(request.app.state)


async def get_hdfs(request: Request) -> InsecureClient:
    """The app's WebHDFS client (the archiver's progress on the master dataset)."""
    client: InsecureClient = _cached(request, "hdfs_client", webhdfs)
    return client


SettingsDep = Annotated[Settings, Depends(get_settings)]
BatchDep = Annotated[BatchSource, Depends(get_batch)]
SpeedDep = Annotated[SpeedSource, Depends(get_speed)]
ProbeDep = Annotated[KafkaProbe, Depends(get_probe)]
HdfsDep = Annotated[InsecureClient, Depends(get_hdfs)]
ReadKey = Annotated[str, Depends(require("read"))]
