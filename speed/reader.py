"""The speed layer's read side: realtime partials for the serving layer's merge.

The serving layer answers ``batch_v[key, bucket] ⊕ Σ_{w ≥ cut(v)} speed_w[key, bucket]``;
:meth:`SpeedReader.partials` is the second term, merged over the Kafka partitions whose
shares the speed layer keeps apart (one hash slot each). Each partition is read
atomically with its offset, so a read never sees half of a poll batch, and the offsets
it returns name exactly what it reflects.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import redis

from lambdalab.errors import ServiceUnavailable
from lambdalab.paths import PartitionKeys, RedisKeys
from lambdalab.settings import Settings
from speed.store import (
    connect,
    decode_value,
    read_next,
    redis_call,
    run_scripts,
    union_of,
)
from views.compute import combine
from views.definition import ViewDef
from views.registry import get_view, views_of

SNAPSHOT_ATTEMPTS = 5  # a consumer commits once per poll batch: a read rarely loses twice
SWITCH_ATTEMPTS = 5  # reads that may find the Kappa switch moved (one per replay: rare)
# One partition of one view key, atomically: its next offset, freshness and the key's hash.
KEY_SCRIPT = """
return {redis.call('HGET', KEYS[1], 'next'), redis.call('HGET', KEYS[2], 'freshness_ms'),
        redis.call('HGETALL', KEYS[3])}
"""
# The fallback of view_snapshot, per partition: next offset, freshness, the keys of the
# windows >= ARGV[1] (their rtk sets), then each key's hash, all in one atomic script.
SNAPSHOT_SCRIPT = """
local out = {redis.call('HGET', KEYS[1], 'next'), redis.call('HGET', KEYS[2], 'freshness_ms')}
local seen, keys = {}, {}
for _, w in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], ARGV[1], '+inf')) do
  for _, k in ipairs(redis.call('SMEMBERS', ARGV[2] .. w)) do
    if not seen[k] then seen[k] = true; table.insert(keys, k) end
  end
end
table.insert(out, keys)
for _, k in ipairs(keys) do table.insert(out, redis.call('HGETALL', ARGV[3] .. k)) end
return out
"""


@dataclass(frozen=True)
class _Part:
    """What one partition contributed to a read: its offset, freshness and hashes."""

    number: int
    next: int | None  # None: never written (contributes nothing)
    freshness_ms: int | None
    hashes: dict[str, dict[bytes, bytes]]  # view key -> its hash in this partition


class SpeedReader:
    """Reads the realtime views of one namespace from Redis, merging over partitions.

    The speed layer keeps each Kafka partition's share of a view in that partition's own
    keys (one hash slot each, :class:`lambdalab.paths.PartitionKeys`). A read takes each
    partition's offset together with its cells atomically (one script or MULTI/EXEC per
    partition), then merges the partials: the answer reflects exactly the records below
    the returned offset vector, a consistent cut of the log since partitions are
    independent. Its freshness is the newest ingest time over the partitions (what one
    consumer reported before sharding; a lagging partition shows in the offsets, not
    here). A partition never written contributes nothing and is absent from the offsets.
    """

    def __init__(self, settings: Settings, redis_client: Any | None = None) -> None:
        self.settings = settings
        self.keys = RedisKeys(settings)
        self.client = redis_client if redis_client is not None else connect(settings)

    def _source(self, stream: str) -> str:
        return RedisKeys.source(self.settings.topic_for(stream))

    def _parts(self, source: str) -> list[PartitionKeys]:
        """The partitions of ``source`` its consumers registered (none before they start)."""
        count = self._call(self.client.get, self.keys.partitions(source))
        return [self.keys.partition(source, p) for p in range(int(count or 0))]

    def partials(
        self, view: str, key: str, since_window_ms: int, bucket_from_ms: int, bucket_to_ms: int
    ) -> dict[int, dict[str, Any]]:
        """bucket_ms -> measures merged over ingest windows ≥ ``since_window_ms``.

        Buckets in ``[bucket_from_ms, bucket_to_ms)``; hll values as sketch bytes.

        Raises:
            NotFound: unknown view.
            ServiceUnavailable: Redis did not answer.
        """
        return self.snapshot(view, key, since_window_ms, bucket_from_ms, bucket_to_ms).rows

    def snapshot(
        self, view: str, key: str, since_window_ms: int, bucket_from_ms: int, bucket_to_ms: int
    ) -> Snapshot:
        """The partials of one view key with the offsets and freshness they reflect.

        Per partition one script reads its offset, the view's freshness and the key's
        hash, so the three come from the same instant of that partition (the consumer
        writes increments and offset in one MULTI/EXEC too). The Kappa switch is read
        before and after: if it moved, the read starts over.

        Raises:
            NotFound: unknown view.
            ServiceUnavailable: Redis did not answer.
        """
        vdef = get_view(view)
        pointer = self.keys.kappa(view)
        for _ in range(SWITCH_ATTEMPTS):
            switched = self._call(self.client.get, pointer)
            target = None if switched is None else KappaTarget.parse(switched)
            if target is None:
                name, source, since, defn = view, self._source(vdef.stream), since_window_ms, vdef
            else:  # serving is switched to a replay: read the replay
                name, source, since, defn = target.output, target.source, 0, target.view
            parts, again = self._call(self._read_key, source, name, key, pointer)
            if again != switched:  # switched between the reads: start over
                continue
            raws = [p.hashes[key] for p in parts]
            return Snapshot(
                rows=_merge_windows(defn, raws, since, bucket_from_ms, bucket_to_ms),
                freshness_ms=_newest(parts),
                offsets=_offsets(parts),
                kappa=target,
            )
        msg = f"view {view}: the Kappa switch kept moving for {SWITCH_ATTEMPTS} reads"
        raise ServiceUnavailable(msg)

    def _read_key(self, source: str, view: str, key: str, pointer: str) -> tuple[list[_Part], Any]:
        parts = self._parts(source)
        keysets = [[k.offsets, k.meta(view), k.rt(view, key)] for k in parts]
        found = run_scripts(self.client, KEY_SCRIPT, keysets)
        again = self.client.get(pointer)
        read = [
            _Part(k.number, _int(nxt), _int(fresh), {key: _pairs(raw)})
            for k, (nxt, fresh, raw) in zip(parts, found, strict=True)
        ]
        return read, again

    def kappa(self, view: str) -> KappaTarget | None:
        """The replayed output serving ``view`` (``lab replay``), or None: batch ⊕ realtime."""
        raw = self._call(self.client.get, self.keys.kappa(view))
        return None if raw is None else KappaTarget.parse(raw)

    def view_snapshot(
        self,
        view: str,
        since_window_ms: int,
        bucket_from_ms: int,
        bucket_to_ms: int,
        keep: Callable[[str], bool] | None = None,
    ) -> ViewSnapshot:
        """The partials of every view key (that ``keep`` accepts), each partition at one instant.

        Per partition: which keys have realtime data is read first (the windows ≥
        ``since_window_ms`` and their key sets) with the partition's offsets hash and window
        index WATCHed; then one MULTI/EXEC reads its offset, freshness and every such key's
        hash. Each speed-layer transaction writes the offsets hash (and a rebuild or
        FLUSHALL resets it), so any write between the two steps aborts the EXEC and the
        read starts over. After SNAPSHOT_ATTEMPTS lost races one Lua script does the same
        reads atomically. The partitions' partials are then merged: the guarantee of
        :meth:`snapshot`, over many keys.

        Raises:
            NotFound: unknown view.
            ServiceUnavailable: Redis did not answer.
        """
        vdef = get_view(view)
        source = self._source(vdef.stream)
        for _ in range(SWITCH_ATTEMPTS):
            target = self.kappa(view)
            if target is None:
                return self._view_snapshot(
                    view, vdef, source, since_window_ms, bucket_from_ms, bucket_to_ms, keep
                )
            snap = self._view_snapshot(
                target.output, target.view, target.source, 0, bucket_from_ms, bucket_to_ms, keep
            )
            if self.kappa(view) == target:  # the replay read was the one serving throughout
                return replace(snap, kappa=target)
        msg = f"view {view}: the Kappa switch kept moving for {SWITCH_ATTEMPTS} reads"
        raise ServiceUnavailable(msg)

    def _view_snapshot(
        self,
        view: str,
        vdef: ViewDef,
        source: str,
        since_window_ms: int,
        bucket_from_ms: int,
        bucket_to_ms: int,
        keep: Callable[[str], bool] | None,
    ) -> ViewSnapshot:
        parts = [self._read_partition(k, view, since_window_ms, keep) for k in self._parts(source)]
        names = sorted({key for p in parts for key in p.hashes})
        cells = {
            key: rows
            for key in names
            if (
                rows := _merge_windows(
                    vdef,
                    [p.hashes[key] for p in parts if key in p.hashes],
                    since_window_ms,
                    bucket_from_ms,
                    bucket_to_ms,
                )
            )
        }
        return ViewSnapshot(cells=cells, freshness_ms=_newest(parts), offsets=_offsets(parts))

    def _read_partition(
        self, k: PartitionKeys, view: str, since: int, keep: Callable[[str], bool] | None
    ) -> _Part:
        for _ in range(SNAPSHOT_ATTEMPTS):
            try:
                return self._call(self._read_keys, k, view, since, keep)
            except redis.WatchError:
                continue
        return self._call(self._read_all, k, view, since, keep)

    def _read_all(
        self, k: PartitionKeys, view: str, since: int, keep: Callable[[str], bool] | None
    ) -> _Part:
        """The same reads as :meth:`_read_keys` in one Lua script: atomic, never retried.

        Redis runs a script with nothing in between, so it cannot lose to a commit; it
        reads every key with realtime data since the window (the filter runs here, after).
        """
        window_keys = k.window_keys(view, 0)[:-1]  # "…rtk:{view}:" + window
        args = [since, window_keys, k.rt(view, "")]
        names = [k.offsets, k.meta(view), k.windows(view)]
        nxt, fresh, members, *hashes = self.client.eval(SNAPSHOT_SCRIPT, 3, *names, *args)
        named = [(member.decode(), raw) for member, raw in zip(members, hashes, strict=True)]
        kept = {key: _pairs(raw) for key, raw in named if keep is None or keep(key)}
        return _Part(k.number, _int(nxt), _int(fresh), kept)

    def _read_keys(
        self, k: PartitionKeys, view: str, since: int, keep: Callable[[str], bool] | None
    ) -> _Part:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.watch(k.offsets, k.windows(view))
            # after WATCH a pipeline runs commands at once, until MULTI
            windows: list[bytes] = pipe.zrangebyscore(k.windows(view), since, "+inf")
            sets = [k.window_keys(view, int(w)) for w in windows]
            members = union_of(pipe, sets)
            named = (member.decode() for member in members)
            keys = sorted(key for key in named if keep is None or keep(key))
            pipe.multi()
            pipe.hget(k.offsets, "next")
            pipe.hget(k.meta(view), "freshness_ms")
            for key in keys:
                pipe.hgetall(k.rt(view, key))
            nxt, fresh, *hashes = pipe.execute()
        return _Part(k.number, _int(nxt), _int(fresh), dict(zip(keys, hashes, strict=True)))

    def offsets(self, view: str) -> dict[int, int]:
        """Partition -> next offset committed together with the increments of ``view``.

        Raises:
            NotFound: unknown view.
            ServiceUnavailable: Redis did not answer.
        """
        return self.stream_offsets(get_view(view).stream)

    def stream_offsets(self, stream: str) -> dict[int, int]:
        """Partition -> next offset the speed consumers of ``stream`` committed."""
        parts = self._parts(self._source(stream))
        found = read_next(self.settings, self.client, parts)
        return {k.number: o for k, o in zip(parts, found, strict=True) if o is not None}

    def freshness_ms(self, view: str) -> int | None:
        """Newest ingest timestamp (ms) applied to ``view``'s realtime part, None if none yet."""
        return _extreme(max, self._metas(view), "freshness_ms")

    def dimensions(self, view: str) -> dict[str, int | None]:
        """Dimension -> version the realtime part of ``view`` was built with ({} if none)."""
        raw = next((m["dimensions"] for m in self._metas(view) if "dimensions" in m), None)
        return dict(json.loads(raw)) if raw else {}

    def status(self, stream: str) -> dict[str, Any]:
        """The speed consumers of ``stream``, for the pipeline health.

        Their offsets, freshness (the oldest over its views, each the newest over
        partitions), last update, rebuild info (the oldest rebuild over partitions), and
        the windows held per view (over partitions).
        """
        views = views_of(stream)
        per_view = {name: self._metas(name) for name in views}
        newest = (_extreme(max, found, "freshness_ms") for found in per_view.values())
        fresh = [f for f in newest if f is not None]
        metas = [m for found in per_view.values() for m in found]
        return {
            "offsets": self.stream_offsets(stream),
            "freshness_ms": min(fresh) if fresh else None,
            "updated_ms": _extreme(max, metas, "updated_ms"),
            "rebuilt_from_ms": _extreme(min, metas, "rebuilt_from_ms"),
            "rebuilt_at_ms": _extreme(max, metas, "rebuilt_at_ms"),
            "windows_held": {n: self._windows_held(n, self._source(stream)) for n in views},
        }

    def _windows_held(self, view: str, source: str) -> int:
        pipe = self.client.pipeline(transaction=False)
        for k in self._parts(source):
            pipe.zrange(k.windows(view), 0, -1)
        return len({w for found in self._call(pipe.execute) for w in found})

    def _metas(self, view: str) -> list[dict[str, str]]:
        """The meta hash of ``view`` in every partition that has one."""
        pipe = self.client.pipeline(transaction=False)
        for k in self._parts(self._source(get_view(view).stream)):
            pipe.hgetall(k.meta(view))
        found = self._call(pipe.execute)
        return [{k.decode(): v.decode() for k, v in raw.items()} for raw in found if raw]

    def _call(self, func: Any, *args: Any) -> Any:
        return redis_call(self.settings, func, *args)


@dataclass(frozen=True)
class ViewSnapshot:
    """The realtime part of a query over many keys and the speed-layer state it reflects."""

    cells: dict[str, dict[int, dict[str, Any]]]  # view key -> bucket_ms -> measures
    freshness_ms: int | None
    offsets: dict[int, int]
    kappa: KappaTarget | None = None  # read from a replay (no batch part), see ``kappa``


@dataclass(frozen=True)
class Snapshot:
    """The realtime part of one answer and the speed-layer state it reflects."""

    rows: dict[int, dict[str, Any]]
    freshness_ms: int | None
    offsets: dict[int, int]
    kappa: KappaTarget | None = None  # read from a replay (no batch part), see ``kappa``


@dataclass(frozen=True)
class KappaTarget:
    """A replayed output that serves a view in place of batch ⊕ realtime (``lab replay``).

    Attributes:
        output: the output's own view name, ``{view}__k{generation}``.
        generation: which replay of the view it is.
        source: the source the output's consumer writes (``{topic}@{output}``).
        view: the definition the output was computed with (named ``output``).
        switched_ms: when serving switched to it.
    """

    output: str
    generation: int
    source: str
    view: ViewDef
    switched_ms: int

    @classmethod
    def parse(cls, raw: bytes | str) -> KappaTarget:
        """The switch as ``lab.kappa`` writes it (JSON)."""
        data = json.loads(raw)
        return cls(
            output=data["output"],
            generation=int(data["generation"]),
            source=data["source"],
            view=ViewDef.from_dict(data["definition"]),
            switched_ms=int(data["switched_ms"]),
        )

    def dump(self) -> str:
        """The JSON :meth:`parse` reads."""
        return json.dumps(
            {
                "output": self.output,
                "generation": self.generation,
                "source": self.source,
                "definition": self.view.to_dict(),
                "switched_ms": self.switched_ms,
            },
            sort_keys=True,
        )


def _merge_windows(
    vdef: ViewDef, raws: list[dict[bytes, bytes]], since_window_ms: int, lo: int, hi: int
) -> dict[int, dict[str, Any]]:
    """Per bucket in [lo, hi): its measures merged over windows ≥ ``since_window_ms``.

    ``raws`` are one view key's hashes, one per partition: merged over them too.
    """
    kinds = {kind.name: kind for kind in vdef.kinds}
    parts: dict[int, dict[tuple[int, int], dict[str, Any]]] = defaultdict(dict)
    for n, raw in enumerate(raws):
        for fld, value in raw.items():
            window, bucket, measure = RedisKeys.parse_field(fld.decode())
            if window < since_window_ms or not lo <= bucket < hi:
                continue
            if measure in kinds:
                value = decode_value(kinds[measure], value)
                parts[bucket].setdefault((n, window), {})[measure] = value
    return {b: combine(vdef, per_window.values()) for b, per_window in sorted(parts.items())}


def _offsets(parts: list[_Part]) -> dict[int, int]:
    """The offset vector a read reflects (partitions never written left out)."""
    return {p.number: p.next for p in parts if p.next is not None}


def _newest(parts: list[_Part]) -> int | None:
    fresh = [p.freshness_ms for p in parts if p.freshness_ms is not None]
    return max(fresh) if fresh else None


def _extreme(pick: Callable[..., int], metas: list[dict[str, str]], name: str) -> int | None:
    found = [int(m[name]) for m in metas if name in m]
    return pick(found) if found else None


def _pairs(flat: Any) -> dict[bytes, bytes]:
    """A hash as a script returns it (field, value, field, value, ...) as a dict."""
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
