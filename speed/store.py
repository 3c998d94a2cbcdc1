"""The realtime store: the speed layer's increments in Redis, written effectively once.

Who calls it: the speed consumer, once per Kafka partition per poll batch. One call to
:meth:`RealtimeStore.apply` is one Redis MULTI/EXEC holding every increment the batch's
records *of that partition* make to every view, the window index, the per-window key
sets AND that partition's next offset. So either all of a partition's batch and its
offset become visible, or none do: a consumer killed at any moment resumes each
partition from an offset that matches its increments exactly (invariant 3).

Sharding: every key one such transaction touches is a key of one
:class:`lambdalab.paths.PartitionKeys` (hash tag ``{source|partition}``), so it stays in
one Redis Cluster hash slot while the partitions spread over the shards. A view key's
realtime value is therefore split over partitions; readers merge them
(:mod:`speed.reader`).

Fencing, per partition: a consumer that takes a partition :meth:`~RealtimeStore.claim` s it,
bumping the partition's owner ``epoch``. Every write WATCHes the partition's offsets hash
and checks both the epoch and the next offset against what the writer believes; if another
consumer claimed or moved the partition (a zombie that lost it, a rebuild, a FLUSHALL)
:class:`FencedOut` is raised for that partition and nothing is written. Other partitions
are unaffected.

Every measure is read-merge-written: the fields a batch touches are read (after WATCH) with
one HMGET per hash in one pipeline, merged in Python with the measure algebra of
:mod:`views.measures`, and written with one HSET per hash. The WATCH makes this safe: a
write by anyone else moves the offsets too, and the EXEC then fails. So the commands per
batch grow with the hashes it touches (one per view key and partition), not with its
records or cells; counts and sums stay exact Python ints (HINCRBY would fail beyond int64
inside the EXEC while the rest of the transaction applied).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from lambdalab.errors import FencedOut, ServiceUnavailable
from lambdalab.paths import PartitionKeys, RedisKeys
from lambdalab.settings import Settings
from views.compute import Cell
from views.definition import ViewDef
from views.measures import Kind

RESET_ATTEMPTS = 20


@dataclass
class Plan:
    """The writes of one poll batch for one view, computed without I/O."""

    put: dict[str, dict[str, Any]] = field(default_factory=dict)  # rt key -> field -> value
    windows: dict[int, set[str]] = field(default_factory=dict)  # window_ms -> view keys


def merge_fields(view: ViewDef, cells: Mapping[Cell, dict[str, Any]]) -> dict[str, list[str]]:
    """Per view key, the hash fields a batch touches (their current values are merged)."""
    out: dict[str, list[str]] = {}
    names = [m.name for m in view.measures]
    for window, key, bucket in cells:
        out.setdefault(key, []).extend(RedisKeys.field(window, bucket, name) for name in names)
    return out


def decode_value(kind: Kind, raw: bytes | None) -> Any:
    """A stored field value in its measure's Python form (:meth:`Kind.decode`)."""
    return None if raw is None else kind.decode(raw)


def plan_view(
    view: ViewDef,
    cells: Mapping[Cell, dict[str, Any]],
    current: Mapping[tuple[str, str], bytes | None],
    rt_key: Any,
) -> Plan:
    """Merge a batch's partial aggregates into the stored values: the fields to write.

    Args:
        view: the view definition.
        cells: output of :func:`views.compute.aggregate` for this batch.
        current: (view key, field) -> stored bytes (None when absent), for every field of
            :func:`merge_fields`.
        rt_key: function view key -> Redis hash name.
    """
    plan = Plan()
    for (window, key, bucket), acc in cells.items():
        values = plan.put.setdefault(rt_key(key), {})
        plan.windows.setdefault(window, set()).add(key)
        for kind in view.kinds:
            value = acc.get(kind.name)
            if value is None:  # min/max/sketch of a batch where the field was always missing
                continue
            fld = RedisKeys.field(window, bucket, kind.name)
            merged = kind.merge(decode_value(kind, current.get((key, fld))), value)
            values[fld] = kind.encode(merged)
    return plan


def connect(settings: Settings) -> Any:
    """A Redis client (bytes in, bytes out) for the configured URL.

    With ``redis.cluster`` the URL names a seed node of a Redis Cluster and the client is
    a :class:`redis.cluster.RedisCluster`: every transaction and script of the speed
    layer stays within one hash slot (:class:`lambdalab.paths.PartitionKeys`), which its
    cluster pipeline runs on the slot's master, WATCH included.
    """
    options: dict[str, Any] = {"socket_timeout": 30, "socket_connect_timeout": 5}
    if settings.redis.cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(settings.redis.url, **options)
    return redis.Redis.from_url(settings.redis.url, **options)


@dataclass(frozen=True)
class Claim:
    """A partition as a consumer found it when it took it (:meth:`RealtimeStore.claim`).

    Attributes:
        epoch: the owner epoch this consumer now holds (its fence).
        next: the next offset committed, None when there is none (a rebuild is due).
        fingerprints: view -> fingerprint its realtime data of the partition was built with.
        freshness_ms: the newest ingest time applied to the partition, if any.
    """

    epoch: int
    next: int | None
    fingerprints: dict[str, str | None]
    freshness_ms: int | None


class RealtimeStore:
    """The Redis side of the speed layer for one source (a stream's topic, or a replay)."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        client: Any | None = None,
        *,
        output: str | None = None,
    ) -> None:
        """``output`` names a second instance's own source (a Kappa replay, ``lab.kappa``)."""
        self.settings = settings
        self.keys = RedisKeys(settings)
        self.client = client if client is not None else connect(settings)
        self.source = RedisKeys.source(topic, output)

    def part(self, partition: int) -> PartitionKeys:
        """The keys of one partition of this store's source."""
        return self.keys.partition(self.source, partition)

    def register(self, count: int) -> None:
        """Record the source's partition count, so that readers know what to merge."""
        self._call(self.client.set, self.keys.partitions(self.source), count)

    def read_offsets(self, partitions: Iterable[int] | None = None) -> dict[int, int]:
        """Partition -> next offset committed with the increments.

        For ``partitions`` (default: every registered one); those never written are left out.
        """
        if partitions is None:
            count = self._call(self.client.get, self.keys.partitions(self.source))
            partitions = range(int(count or 0))
        keys = [self.part(p) for p in partitions]
        found = read_next(self.settings, self.client, keys)
        return {k.number: o for k, o in zip(keys, found, strict=True) if o is not None}

    def claim(self, partition: int, views: Iterable[str]) -> Claim:
        """Take ``partition``: bump its owner epoch (fencing out any previous owner).

        One MULTI/EXEC on the partition's slot, after reading (WATCHed) its next offset
        and its views' fingerprints: what is returned is what the new epoch starts from.

        Raises:
            FencedOut: the partition kept changing for ``RESET_ATTEMPTS`` attempts.
            ServiceUnavailable: Redis did not answer.
        """
        keys = self.part(partition)
        return self._watched(keys, "claims", self._claim_once, keys, list(views))

    def _claim_once(self, keys: PartitionKeys, names: list[str]) -> Claim:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.watch(keys.offsets)
            nxt = pipe.hget(keys.offsets, "next")  # after WATCH: runs at once
            metas = [pipe.hmget(keys.meta(n), ["fingerprint", "freshness_ms"]) for n in names]
            pipe.multi()
            pipe.hincrby(keys.offsets, "epoch", 1)
            (epoch,) = pipe.execute()
        fresh = [int(m[1]) for m in metas if m[1] is not None]
        return Claim(
            epoch=int(epoch),
            next=None if nxt is None else int(nxt),
            fingerprints={
                n: None if m[0] is None else m[0].decode()
                for n, m in zip(names, metas, strict=True)
            },
            freshness_ms=max(fresh) if fresh else None,
        )

    def apply(
        self,
        partition: int,
        batch: Mapping[ViewDef, Mapping[Cell, dict[str, Any]]],
        epoch: int,
        expected: int,
        next_offset: int,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Write one partition's share of a poll batch and its next offset in one MULTI/EXEC.

        Args:
            partition: the Kafka partition the records came from.
            batch: view -> partial aggregates of these records.
            epoch: the owner epoch this consumer holds (from :meth:`claim`).
            expected: the next offset this consumer believes is committed.
            next_offset: the next offset after this batch.
            meta: extra fields written to every view's meta hash (freshness, ...).

        Raises:
            FencedOut: the partition was claimed or moved by someone else.
            ServiceUnavailable: Redis did not answer.
        """
        keys = self.part(partition)
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.watch(keys.offsets)
                self._check_fence(pipe, keys, epoch, expected)
                plans = [(v, self._plan(keys, v, cells)) for v, cells in batch.items()]
                pipe.multi()
                for view, plan in plans:
                    self._queue(pipe, keys, view, plan, meta)
                pipe.hset(keys.offsets, "next", next_offset)
                pipe.execute()
        except redis.WatchError as exc:
            msg = f"{keys.offsets} changed during a write: another consumer took the partition"
            raise FencedOut(msg, partition=partition) from exc
        except redis.ConnectionError as exc:
            msg = f"Redis at {self.settings.redis.url} did not answer: {exc}"
            raise ServiceUnavailable(msg) from exc

    def _check_fence(self, pipe: Any, keys: PartitionKeys, epoch: int, expected: int) -> None:
        nxt, held = pipe.hmget(keys.offsets, ["next", "epoch"])
        if nxt is None or held is None:
            msg = f"{keys.offsets} is gone (Redis lost its data): the partition must be rebuilt"
            raise FencedOut(msg, partition=keys.number, lost=True)
        if int(held) > epoch:  # epochs only grow: a later claim, by another consumer
            msg = (
                f"{keys.offsets} is at offset {int(nxt)} epoch {int(held)}, this consumer "
                f"expected offset {expected} epoch {epoch}: another consumer took it"
            )
            raise FencedOut(msg, partition=keys.number)
        if int(held) < epoch or int(nxt) != expected:
            # Nobody claimed it since; Redis went back to an older state of the partition
            # (a master restarted from its append-only file, or a replica promoted before
            # the last writes reached it). That state is consistent -- the offset was
            # committed with its increments -- so the owner claims it again and goes on
            # from there, re-reading the rest from Kafka.
            msg = (
                f"{keys.offsets} went back to offset {int(nxt)} epoch {int(held)} (this "
                f"consumer wrote offset {expected} epoch {epoch}): Redis lost recent writes"
            )
            raise FencedOut(msg, partition=keys.number, lost=True)

    def _plan(
        self, keys: PartitionKeys, view: ViewDef, cells: Mapping[Cell, dict[str, Any]]
    ) -> Plan:
        wanted = merge_fields(view, cells)
        current: dict[tuple[str, str], bytes | None] = {}
        if wanted:
            reader = self.client.pipeline(transaction=False)
            for key, fields in wanted.items():
                reader.hmget(keys.rt(view.name, key), fields)
            for (key, fields), values in zip(wanted.items(), reader.execute(), strict=True):
                current.update({(key, f): v for f, v in zip(fields, values, strict=True)})
        return plan_view(view, cells, current, lambda k: keys.rt(view.name, k))

    def _queue(
        self,
        pipe: Any,
        keys: PartitionKeys,
        view: ViewDef,
        plan: Plan,
        meta: Mapping[str, Any] | None,
    ) -> None:
        for name, values in plan.put.items():
            if values:
                pipe.hset(name, mapping=values)
        for window, members in plan.windows.items():
            pipe.zadd(keys.windows(view.name), {str(window): window})
            pipe.sadd(keys.window_keys(view.name, window), *sorted(members))
        if meta:
            pipe.hset(keys.meta(view.name), mapping=dict(meta))

    def reset(
        self,
        partition: int,
        views: Mapping[str, ViewDef],
        epoch: int,
        start: int,
        meta: Mapping[str, Any],
    ) -> None:
        """Drop the partition's realtime keys of ``views`` and set its offset, in one MULTI/EXEC.

        Only this partition's keys of these views go: other partitions, another stream's
        consumer and other views keep theirs. The keys are found through the partition's
        window index and key sets (no SCAN: a cluster-wide SCAN is neither cheap nor
        atomic), WATCHed from the read to the EXEC.

        Used by the rebuild, by the consumer holding ``epoch`` (:meth:`claim`): a crash
        before EXEC changes nothing, after it the consumer resumes from ``start``.

        Raises:
            FencedOut: another consumer claimed the partition meanwhile, or it kept
                changing for ``RESET_ATTEMPTS`` attempts.
        """
        keys = self.part(partition)
        self._watched(keys, "rebuild attempts", self._reset_once, keys, views, epoch, start, meta)

    def _watched(self, keys: PartitionKeys, what: str, once: Any, *args: Any) -> Any:
        """``once(*args)``, again while a WATCHed key of the partition moved under it.

        Raises:
            FencedOut: it moved during ``RESET_ATTEMPTS`` attempts (or ``once`` raised it).
            ServiceUnavailable: Redis did not answer.
        """
        for _ in range(RESET_ATTEMPTS):
            try:
                return self._call(once, *args)
            except redis.WatchError:
                continue
        msg = f"{keys.tag}: the partition kept changing during {RESET_ATTEMPTS} {what}"
        raise FencedOut(msg, partition=keys.number)

    def _reset_once(
        self,
        keys: PartitionKeys,
        views: Mapping[str, ViewDef],
        epoch: int,
        start: int,
        meta: Mapping[str, Any],
    ) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.watch(keys.offsets, *(keys.windows(n) for n in views))
            held = pipe.hget(keys.offsets, "epoch")
            if held is None or int(held) != epoch:
                msg = f"{keys.offsets} was claimed by another consumer during a rebuild"
                raise FencedOut(msg, partition=keys.number)
            doomed = [k for name in views for k in _keys_of(pipe, keys, name)]
            pipe.multi()
            for chunk in range(0, len(doomed), 1000):
                pipe.delete(*doomed[chunk : chunk + 1000])
            pipe.hset(keys.offsets, "next", start)
            for view in views.values():
                pipe.delete(keys.meta(view.name))
                fields: dict[str | bytes, bytes | float | int | str] = {
                    "fingerprint": view.fingerprint,
                    **{k: str(v) for k, v in meta.items()},
                }
                if view.enrich:  # the dimension versions it runs with, for provenance
                    fields["dimensions"] = json.dumps(view.dimension_versions())
                pipe.hset(keys.meta(view.name), mapping=fields)
            pipe.execute()

    def drop(self, partition: int, views: Iterable[str]) -> int:
        """Delete every key of ``views`` in the partition, and its offsets; how many went."""
        return int(self._call(drop_partition, self.client, self.part(partition), list(views)))

    def windows_held(self, view: str, partitions: Iterable[int]) -> int:
        """How many ingest windows of ``view`` Redis holds over these partitions."""
        pipe = self.client.pipeline(transaction=False)
        for p in partitions:
            pipe.zrange(self.part(p).windows(view), 0, -1)
        return len({w for found in self._call(pipe.execute) for w in found})

    def _call(self, func: Any, *args: Any) -> Any:
        return redis_call(self.settings, func, *args)


def drop_partition(client: Any, keys: PartitionKeys, views: list[str]) -> int:
    """Delete every key of ``views`` in one partition, and its offsets; how many went.

    For a retired replay's output (``lab.kappa``): its consumer, if one still runs, finds
    its offsets gone and is fenced out. One MULTI/EXEC on the partition's slot.
    """
    with client.pipeline(transaction=True) as pipe:
        pipe.watch(keys.offsets, *(keys.windows(n) for n in views))
        doomed = [k for name in views for k in _keys_of(pipe, keys, name)]
        doomed += [keys.offsets, *(keys.meta(n) for n in views)]
        pipe.multi()
        for chunk in range(0, len(doomed), 1000):
            pipe.delete(*doomed[chunk : chunk + 1000])
        pipe.execute()
    return len(doomed)


def _keys_of(pipe: Any, keys: PartitionKeys, view: str) -> list[str | bytes]:
    """Every key of ``view`` in the partition: the window index, its key sets, their hashes.

    ``pipe`` is WATCHing (its commands run at once). Every realtime hash holds a field of
    some window still indexed (expiry empties a hash before it unindexes the window).
    """
    windows = [int(w) for w in pipe.zrange(keys.windows(view), 0, -1)]
    sets = [keys.window_keys(view, w) for w in windows]
    members = union_of(pipe, sets)
    return [keys.windows(view), *sets, *(keys.rt(view, m.decode()) for m in members)]


def union_of(pipe: Any, sets: list[str]) -> set[bytes]:
    """The members of these sets, read by a WATCHing pipeline (its commands run at once).

    One SMEMBERS per set rather than one SUNION: a Redis Cluster pipeline refuses every
    multi-key command, even within one slot.
    """
    out: set[bytes] = set()
    for name in sets:
        out |= pipe.smembers(name)
    return out


def run_scripts(client: Any, script: str, keysets: list[list[str]]) -> list[Any]:
    """Run ``script`` once per key set (each within one hash slot); the results in order.

    On a single Redis the calls go in one pipeline (one round trip); a Redis Cluster
    pipeline cannot carry EVAL, so there each runs on its own (on its slot's master).
    """
    if isinstance(client, redis.Redis):
        pipe = client.pipeline(transaction=False)
        for keys in keysets:
            pipe.eval(script, len(keys), *keys)
        return list(pipe.execute())
    return [client.eval(script, len(keys), *keys) for keys in keysets]


def read_next(settings: Settings, client: Any, keys: list[PartitionKeys]) -> list[int | None]:
    """Each partition's committed next offset (None: none), in one pipeline."""
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.hget(k.offsets, "next")
    found = redis_call(settings, pipe.execute) if keys else []
    return [None if o is None else int(o) for o in found]


def redis_call(settings: Settings, func: Any, *args: Any) -> Any:
    """Call a Redis client method, turning a lost connection into ServiceUnavailable."""
    try:
        return func(*args)
    except redis.ConnectionError as exc:
        msg = f"Redis at {settings.redis.url} did not answer: {exc}"
        raise ServiceUnavailable(msg) from exc
