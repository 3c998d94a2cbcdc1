"""Where each layer keeps its data: the contracts between archiver, batch, speed, serving.

HDFS (under ``settings.hdfs_root``):

- master dataset, append-only Parquet, one file per (ingest window, Kafka partition,
  offset range), never rewritten::

      master/{stream}/ingest_date=YYYY-MM-DD/w{window_ms}-p{partition:03d}-o{first:012d}-{last:012d}.parquet
      master/{stream}/_manifests/landing-{started_ms}-{run_id}.json

- batch views, immutable versions published by one atomic rename from _staging::

      views/{view}/versions/v{N:06d}/data/*.parquet
      views/{view}/versions/v{N:06d}/_lineage.json
      views/{view}/_staging/{fingerprint}-{run_id}/

Redis (under ``settings.redis_prefix``), see :class:`RedisKeys`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from lambdalab.settings import Settings

MASTER_FILE = re.compile(
    r"^w(?P<window>\d+)-p(?P<partition>\d+)-o(?P<first>\d+)-(?P<last>\d+)\.parquet$"
)
VERSION_DIR = re.compile(r"^v(?P<n>\d{6})$")


@dataclass(frozen=True)
class MasterFile:
    """One committed file of the master dataset, described by its name alone."""

    window_ms: int
    partition: int
    first_offset: int
    last_offset: int

    @property
    def name(self) -> str:
        """The file name, ``w{window}-p{partition}-o{first}-{last}.parquet``.

        Offsets are zero-padded so names sort in offset order; :meth:`parse` reads it back.
        """
        return (
            f"w{self.window_ms}-p{self.partition:03d}-"
            f"o{self.first_offset:012d}-{self.last_offset:012d}.parquet"
        )

    @property
    def date_dir(self) -> str:
        """The Hive-style partition folder of the file's ingest window (UTC date)."""
        day = datetime.fromtimestamp(self.window_ms / 1000, tz=UTC).strftime("%Y-%m-%d")
        return f"ingest_date={day}"

    @classmethod
    def parse(cls, name: str) -> MasterFile | None:
        """The file described by ``name``, or None for any other name (temporaries, claims)."""
        m = MASTER_FILE.match(name)
        if not m:
            return None
        return cls(int(m["window"]), int(m["partition"]), int(m["first"]), int(m["last"]))


class HdfsPaths:
    """HDFS paths of one namespace."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.hdfs_root
        self.namenode = settings.hdfs.namenode

    def master(self, stream: str) -> str:
        """Root of ``stream``'s master dataset (its files sit in ``ingest_date=`` folders)."""
        return f"{self.root}/master/{stream}"

    def manifests(self, stream: str) -> str:
        """Where each landing run of ``stream`` writes its manifest (ranges, files, rows)."""
        return f"{self.master(stream)}/_manifests"

    def claims(self, stream: str) -> str:
        """Where landers claim a master file's first offset (one claim per start, ever)."""
        return f"{self.master(stream)}/_claims"

    def view_root(self, view: str) -> str:
        """Everything the batch layer keeps for ``view``: versions, staging, markers."""
        return f"{self.root}/views/{view}"

    def versions(self, view: str) -> str:
        """The folder of ``view``'s published versions (``v000001``, ...)."""
        return f"{self.view_root(view)}/versions"

    def version(self, view: str, n: int) -> str:
        """Published version ``n`` of ``view``: a staged folder renamed here is published."""
        return f"{self.versions(view)}/v{n:06d}"

    def staging(self, view: str) -> str:
        """Where versions of ``view`` are built before the publishing rename."""
        return f"{self.view_root(view)}/_staging"

    def dimension(self, name: str) -> str:
        """The versions of dimension table ``name`` (``v000001``, ...: one rename each)."""
        return f"{self.root}/dimensions/{name}"

    def dimension_version(self, name: str, n: int) -> str:
        """Version ``n`` of dimension ``name``: its ``data.parquet`` and ``_meta.json``."""
        return f"{self.dimension(name)}/v{n:06d}"

    def uri(self, path: str) -> str:
        """The hdfs:// URI of a path, for Spark and Trino."""
        return f"{self.namenode}{path}"


class RedisKeys:
    """Redis keys of the speed layer, laid out so that a Redis Cluster can shard them.

    The speed layer writes one transaction per (source, Kafka partition): a *source* is a
    stream's topic, or ``{topic}@{output}`` for a second instance with offsets of its own
    (a Kappa replay, ``lab.kappa``). Every key such a transaction touches carries the
    hash tag ``{source|partition}``, so it sits in one hash slot (a Redis Cluster refuses
    a MULTI/EXEC or script across slots with CROSSSLOT) while the partitions spread over
    the shards. On a single Redis the tags are harmless. :class:`PartitionKeys` names the
    keys of one partition; the keys outside any partition are:

    - ``parts:{source}`` the partition count of a source, written by its consumers, so
      readers know which partitions to merge.
    - ``dim:{name}:v{n}`` hash key -> JSON values of version n of a dimension table, and
      ``dim:{name}:current`` its newest version copied from HDFS (``speed.dimensions``).
    - ``kappa:{view}`` the Kappa switch: JSON naming the replayed output that serves
      ``view`` instead of batch ⊕ realtime (``lab replay``); ``kappa:{view}:gen`` counts
      the replays. A replay writes its output as a view of its own, ``{view}__k{n}``,
      from the source ``{topic}@{view}__k{n}``.
    """

    def __init__(self, settings: Settings) -> None:
        self.p = settings.redis_prefix

    @staticmethod
    def source(topic: str, output: str | None = None) -> str:
        """The source a consumer writes: its topic, or ``{topic}@{output}`` for a replay."""
        return f"{topic}@{output}" if output else topic

    def partition(self, source: str, partition: int) -> PartitionKeys:
        """The keys of one partition of ``source`` (all in one hash slot)."""
        return PartitionKeys(self.p, source, partition)

    def partitions(self, source: str) -> str:
        """The partition count of ``source`` (``parts:{source}``), for readers."""
        return f"{self.p}parts:{source}"

    def kappa(self, view: str) -> str:
        """The Kappa switch of ``view``: which replayed output serves it (JSON), if any."""
        return f"{self.p}kappa:{view}"

    def kappa_generation(self, view: str) -> str:
        """The counter of ``view``'s replays (their outputs are ``{view}__k{n}``)."""
        return f"{self.p}kappa:{view}:gen"

    def dimension(self, name: str, n: int) -> str:
        """The hash of version ``n`` of dimension ``name``: key -> JSON list of its values."""
        return f"{self.p}dim:{name}:v{n}"

    def dimension_current(self, name: str) -> str:
        """The version of dimension ``name`` the Redis copy holds (``dim:{name}:current``)."""
        return f"{self.p}dim:{name}:current"

    @staticmethod
    def field(window_ms: int, bucket_ms: int, measure: str) -> str:
        """The ``rt:`` hash field of one measure: ``{window_ms}|{bucket_ms}|{measure}``."""
        return f"{window_ms}|{bucket_ms}|{measure}"

    @staticmethod
    def parse_field(field: str) -> tuple[int, int, str]:
        """(window_ms, bucket_ms, measure) of a field written by :meth:`field`."""
        window, bucket, measure = field.split("|", 2)
        return int(window), int(bucket), measure


@dataclass(frozen=True)
class PartitionKeys:
    """The keys of one (source, partition): one hash slot, one transaction per poll batch.

    Each key starts with the namespace prefix and the hash tag ``{source|partition}``
    (the first ``{…}`` of the key, so view names and view keys cannot move it):

    - ``…:offsets`` hash: ``next`` (the next offset to consume, written in the same
      MULTI/EXEC as the increments it covers) and ``epoch`` (the owner's fence: each
      consumer that takes the partition bumps it, a zombie with an older epoch writes
      nothing).
    - ``…:rt:{view}:{key}`` hash, field ``{window_ms}|{bucket_ms}|{measure}``: the realtime
      increments of one view key from this partition (ints as decimal strings, HLL
      sketches as bytes). A view key's answer is the merge over partitions.
    - ``…:rtw:{view}`` sorted set of ingest windows held (member and score: window_ms).
    - ``…:rtk:{view}:{window_ms}`` set of view keys touched in that window (for expiry and
      for the reset, which finds every key of the partition through these sets).
    - ``…:meta:{view}`` hash of bookkeeping (fingerprint, freshness, rebuilt_from).
    """

    prefix: str
    source: str
    number: int

    @property
    def tag(self) -> str:
        """The hash tag shared by every key of the partition."""
        return f"{{{self.source}|{self.number}}}"

    def _key(self, rest: str) -> str:
        return f"{self.prefix}{self.tag}:{rest}"

    @property
    def offsets(self) -> str:
        """The partition's ``next`` offset and owner ``epoch`` (the fence)."""
        return self._key("offsets")

    def rt(self, view: str, key: str) -> str:
        """The hash of one view key's realtime increments from this partition."""
        return self._key(f"rt:{view}:{key}")

    def windows(self, view: str) -> str:
        """The sorted set of ingest windows ``view`` holds from this partition."""
        return self._key(f"rtw:{view}")

    def window_keys(self, view: str, window_ms: int) -> str:
        """The set of view keys touched in one ingest window of this partition."""
        return self._key(f"rtk:{view}:{window_ms}")

    def meta(self, view: str) -> str:
        """The bookkeeping hash of ``view`` in this partition (fingerprint, freshness)."""
        return self._key(f"meta:{view}")
