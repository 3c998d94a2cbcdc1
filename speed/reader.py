"""The speed layer's read side: realtime partials for the serving layer's merge.

The serving layer answers ``batch_v[key, bucket] ⊕ Σ_{w ≥ cut(v)} speed_w[key, bucket]``;
:meth:`SpeedReader.partials` is the second term. One HGETALL of the view key's hash is
atomic, so a read never sees half of a poll batch.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import redis

from lambdalab.errors import ServiceUnavailable
from lambdalab.paths import RedisKeys
from lambdalab.settings import Settings
from speed.store import connect, decode_value, redis_call
from views.compute import combine
from views.definition import ViewDef
from views.registry import get_view, views_of

SNAPSHOT_ATTEMPTS = 5  # a consumer commits once per poll batch: a read rarely loses twice
SWITCH_ATTEMPTS = 5  # reads that may find the Kappa switch moved (one per replay: rare)
# The fallback of view_snapshot: offsets, freshness, the keys of the windows >= ARGV[1]
# (their rtk sets), then each key's hash, all in one atomic script.
SNAPSHOT_SCRIPT = """
local out = {redis.call('HGETALL', KEYS[1]), redis.call('HGET', KEYS[2], 'freshness_ms')}
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


class SpeedReader:
    """Reads the realtime views of one namespace from Redis."""

    def __init__(self, settings: Settings, redis_client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.keys = RedisKeys(settings)
        self.client = redis_client if redis_client is not None else connect(settings)

    def partials(
        self, view: str, key: str, since_window_ms: int, bucket_from_ms: int, bucket_to_ms: int
    ) -> dict[int, dict[str, Any]]:
        """bucket_ms -> measures merged over ingest windows ≥ ``since_window_ms``.

        Buckets in ``[bucket_from_ms, bucket_to_ms)``; hll values as sketch bytes.

        Raises:
            NotFound: unknown view.
            ServiceUnavailable: Redis did not answer.
        """
        vdef = get_view(view)
        raw = self._call(self.client.hgetall, self.keys.rt(view, key))
        return _merge_windows(vdef, raw, since_window_ms, bucket_from_ms, bucket_to_ms)

    def snapshot(
        self, view: str, key: str, since_window_ms: int, bucket_from_ms: int, bucket_to_ms: int
    ) -> Snapshot:
        """The partials of one view key with the offsets and freshness they reflect.

        One MULTI/EXEC reads the offsets hash, the view's freshness and the key's hash, so
        the three come from the same instant: no speed-layer transaction lands between them
        (the consumer writes increments and offsets in one MULTI/EXEC too).

        Raises:
            NotFound: unknown view.
            ServiceUnavailable: Redis did not answer.
        """
        vdef = get_view(view)
        offsets_key = self.keys.offsets(self.settings.topic_for(vdef.stream))
        pointer = self.keys.kappa(view)
        for _ in range(SWITCH_ATTEMPTS):
            offsets, fresh, raw, switched = self._call(
                self._read_one, offsets_key, self.keys.meta(view), self.keys.rt(view, key), pointer
            )
            target = None if switched is None else KappaTarget.parse(switched)
            if target is not None:  # serving is switched to a replay: read the replay
                since_window_ms, vdef = 0, target.view
                offsets, fresh, raw, again = self._call(
                    self._read_one,
                    target.offsets_key,
                    self.keys.meta(target.output),
                    self.keys.rt(target.output, key),
                    pointer,
                )
                if again != switched:  # switched again between the two reads: start over
                    continue
            return Snapshot(
                rows=_merge_windows(vdef, raw, since_window_ms, bucket_from_ms, bucket_to_ms),
                freshness_ms=None if fresh is None else int(fresh),
                offsets={int(p): int(o) for p, o in offsets.items()},
                kappa=target,
            )
        msg = f"view {view}: the Kappa switch kept moving for {SWITCH_ATTEMPTS} reads"
        raise ServiceUnavailable(msg)

    def _read_one(self, offsets_key: str, meta: str, rt: str, pointer: str) -> list[Any]:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(offsets_key)
            pipe.hget(meta, "freshness_ms")
            pipe.hgetall(rt)
            pipe.get(pointer)
            return list(pipe.execute())

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
        """The partials of every view key (that ``keep`` accepts), read at one instant.

        Which keys have realtime data is read first (the windows ≥ ``since_window_ms`` and
        their key sets) with the offsets hash and the window index WATCHed; then one
        MULTI/EXEC reads the offsets, the freshness and every such key's hash. Each speed
        layer transaction writes the offsets hash (and a rebuild or FLUSHALL resets it), so
        any write between the two steps aborts the EXEC and the read starts over. After
        SNAPSHOT_ATTEMPTS lost races (a consumer committing back to back) one Lua script
        does the same reads atomically. Either way the cells and offsets returned come from
        one instant, the guarantee of :meth:`snapshot`, over many keys.

        Raises:
            NotFound: unknown view.
            ServiceUnavailable: Redis did not answer.
        """
        vdef = get_view(view)
        offsets_key = self.keys.offsets(self.settings.topic_for(vdef.stream))
        for _ in range(SWITCH_ATTEMPTS):
            target = self.kappa(view)
            if target is None:
                return self._view_snapshot(
                    view, vdef, offsets_key, since_window_ms, bucket_from_ms, bucket_to_ms, keep
                )
            snap = self._view_snapshot(
                target.output,
                target.view,
                target.offsets_key,
                0,
                bucket_from_ms,
                bucket_to_ms,
                keep,
            )
            if self.kappa(view) == target:  # the replay read was the one serving throughout
                return replace(snap, kappa=target)
        msg = f"view {view}: the Kappa switch kept moving for {SWITCH_ATTEMPTS} reads"
        raise ServiceUnavailable(msg)

    def _view_snapshot(
        self,
        view: str,
        vdef: ViewDef,
        offsets_key: str,
        since_window_ms: int,
        bucket_from_ms: int,
        bucket_to_ms: int,
        keep: Callable[[str], bool] | None,
    ) -> ViewSnapshot:
        read = None
        for _ in range(SNAPSHOT_ATTEMPTS):
            try:
                read = self._call(self._read_keys, view, offsets_key, since_window_ms, keep)
                break
            except redis.WatchError:
                continue
        if read is None:  # a consumer committing back to back: one atomic script instead
            read = self._call(self._read_all, view, offsets_key, since_window_ms, keep)
        offsets, fresh, keys, hashes = read
        cells = {
            key: rows
            for key, raw in zip(keys, hashes, strict=True)
            if (rows := _merge_windows(vdef, raw, since_window_ms, bucket_from_ms, bucket_to_ms))
        }
        return ViewSnapshot(
            cells=cells,
            freshness_ms=None if fresh is None else int(fresh),
            offsets={int(p): int(o) for p, o in offsets.items()},
        )

    def _read_all(
        self, view: str, offsets_key: str, since_window_ms: int, keep: Callable[[str], bool] | None
    ) -> tuple[Any, Any, list[str], list[Any]]:
        """The same reads as :meth:`_read_keys` in one Lua script: atomic, never retried.

        Redis runs a script with nothing in between, so it cannot lose to a commit; it
        reads every key with realtime data since the window (the filter runs here, after).
        """
        window_keys = self.keys.window_keys(view, 0)[:-1]  # "…rtk:{view}:" + window
        args = [since_window_ms, window_keys, self.keys.rt(view, "")]
        names = [offsets_key, self.keys.meta(view), self.keys.windows(view)]
        offsets, fresh, members, *hashes = self.client.eval(SNAPSHOT_SCRIPT, 3, *names, *args)
        named = [(member.decode(), raw) for member, raw in zip(members, hashes, strict=True)]
        pairs = [(key, _pairs(raw)) for key, raw in named if keep is None or keep(key)]
        return _pairs(offsets), fresh, [k for k, _ in pairs], [h for _, h in pairs]

    def _read_keys(
        self, view: str, offsets_key: str, since_window_ms: int, keep: Callable[[str], bool] | None
    ) -> tuple[Any, Any, list[str], list[Any]]:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.watch(offsets_key, self.keys.windows(view))
            # after WATCH a pipeline runs commands at once, until MULTI
            windows: list[bytes] = pipe.zrangebyscore(  # type: ignore[assignment]
                self.keys.windows(view), since_window_ms, "+inf"
            )
            sets = [self.keys.window_keys(view, int(w)) for w in windows]
            members: set[bytes] = pipe.sunion(sets) if sets else set()  # type: ignore[assignment]
            named = (member.decode() for member in members)
            keys = sorted(k for k in named if keep is None or keep(k))
            pipe.multi()
            pipe.hgetall(offsets_key)
            pipe.hget(self.keys.meta(view), "freshness_ms")
            for key in keys:
                pipe.hgetall(self.keys.rt(view, key))
            offsets, fresh, *hashes = pipe.execute()
        return offsets, fresh, keys, hashes

    def offsets(self, view: str) -> dict[int, int]:
        """Partition -> next offset committed together with the increments of ``view``.

        Raises:
            NotFound: unknown view.
            ServiceUnavailable: Redis did not answer.
        """
        return self.stream_offsets(get_view(view).stream)

    def stream_offsets(self, stream: str) -> dict[int, int]:
        """Partition -> next offset the speed consumer of ``stream`` committed."""
        raw = self._call(self.client.hgetall, self.keys.offsets(self.settings.topic_for(stream)))
        return {int(p): int(o) for p, o in raw.items()}

    def freshness_ms(self, view: str) -> int | None:
        """Newest ingest timestamp (ms) applied to ``view``'s realtime part, None if none yet."""
        return _int(self._meta(view).get("freshness_ms"))

    def dimensions(self, view: str) -> dict[str, int | None]:
        """Dimension -> version the realtime part of ``view`` was built with ({} if none)."""
        raw = self._meta(view).get("dimensions")
        return dict(json.loads(raw)) if raw else {}

    def status(self, stream: str) -> dict[str, Any]:
        """The speed consumer of ``stream``, for the pipeline health.

        Its offsets, freshness (the oldest over its views), last update, rebuild info, and
        the windows held per view.
        """
        views = views_of(stream)
        metas = [self._meta(name) for name in views]
        fresh = [int(m["freshness_ms"]) for m in metas if "freshness_ms" in m]
        first = metas[0] if metas else {}
        windows = {n: int(self._call(self.client.zcard, self.keys.windows(n))) for n in views}
        return {
            "offsets": self.stream_offsets(stream),
            "freshness_ms": min(fresh) if fresh else None,
            "updated_ms": _int(first.get("updated_ms")),
            "rebuilt_from_ms": _int(first.get("rebuilt_from_ms")),
            "rebuilt_at_ms": _int(first.get("rebuilt_at_ms")),
            "windows_held": windows,
        }

    def _meta(self, view: str) -> dict[str, str]:
        raw = self._call(self.client.hgetall, self.keys.meta(view))
        return {k.decode(): v.decode() for k, v in raw.items()}

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
        offsets_key: the Redis hash of the offsets the output reflects.
        view: the definition the output was computed with (named ``output``).
        switched_ms: when serving switched to it.
    """

    output: str
    generation: int
    offsets_key: str
    view: ViewDef
    switched_ms: int

    @classmethod
    def parse(cls, raw: bytes | str) -> KappaTarget:
        """The switch as ``lab.kappa`` writes it (JSON)."""
        data = json.loads(raw)
        return cls(
            output=data["output"],
            generation=int(data["generation"]),
            offsets_key=data["offsets_key"],
            view=ViewDef.from_dict(data["definition"]),
            switched_ms=int(data["switched_ms"]),
        )

    def dump(self) -> str:
        """The JSON :meth:`parse` reads."""
        return json.dumps(
            {
                "output": self.output,
                "generation": self.generation,
                "offsets_key": self.offsets_key,
                "definition": self.view.to_dict(),
                "switched_ms": self.switched_ms,
            },
            sort_keys=True,
        )


def _merge_windows(
    vdef: ViewDef, raw: dict[bytes, bytes], since_window_ms: int, lo: int, hi: int
) -> dict[int, dict[str, Any]]:
    """Per bucket in [lo, hi): its measures merged over ingest windows ≥ ``since_window_ms``."""
    kinds = {kind.name: kind for kind in vdef.kinds}
    parts: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
    for fld, value in raw.items():
        window, bucket, measure = RedisKeys.parse_field(fld.decode())
        if window < since_window_ms or not lo <= bucket < hi:
            continue
        if measure in kinds:
            parts[bucket].setdefault(window, {})[measure] = decode_value(kinds[measure], value)
    return {b: combine(vdef, per_window.values()) for b, per_window in sorted(parts.items())}


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    """A hash as a script returns it (field, value, field, value, ...) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)
