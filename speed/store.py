"""The realtime store: the speed layer's increments in Redis, written effectively once.

Who calls it: the speed consumer, once per Kafka poll batch. One call to :meth:`apply`
is one Redis MULTI/EXEC holding every increment of the batch for every view, the window
index, the per-window key sets AND the next offset of each partition. So either all of a
batch's effects and its offsets become visible, or none do: a consumer killed at any
moment resumes from offsets that match the increments exactly (invariant 3).

Fencing: the offsets hash is WATCHed and compared with the positions this consumer
believes it holds. If another (zombie) consumer moved them, :class:`FencedOut` is raised
and nothing is written.

Every measure is read-merge-written: the fields a batch touches are read (after WATCH) with
one HMGET per hash in one pipeline, merged in Python with the measure algebra of
:mod:`views.measures`, and written with one HSET per hash. The WATCH makes this safe: a
write by anyone else moves the offsets too, and the EXEC then fails. So the commands per
batch grow with the hashes it touches (one per view key), not with its records or cells;
counts and sums stay exact Python ints (HINCRBY would fail beyond int64 inside the EXEC
while the rest of the transaction applied).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from lambdalab.errors import FencedOut, ServiceUnavailable
from lambdalab.paths import RedisKeys
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


def connect(settings: Settings) -> redis.Redis:
    """A Redis client (bytes in, bytes out) for the configured URL."""
    return redis.Redis.from_url(settings.redis.url, socket_timeout=30, socket_connect_timeout=5)


class RealtimeStore:
    """The Redis side of the speed layer for one namespace."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        client: redis.Redis | None = None,
        *,
        output: str | None = None,
    ) -> None:
        """``output`` names a second instance's own offsets (a Kappa replay, ``lab.kappa``)."""
        self.settings = settings
        self.keys = RedisKeys(settings)
        self.client = client if client is not None else connect(settings)
        self.offsets_key = self.keys.offsets(f"{topic}@{output}" if output else topic)

    def read_offsets(self) -> dict[int, int] | None:
        """Partition -> next offset committed with the increments; None if never written."""
        raw = self._call(self.client.hgetall, self.offsets_key)
        if not raw:
            return None
        return {int(p): int(o) for p, o in raw.items()}

    def fingerprint(self, view: str) -> str | None:
        """The view fingerprint the realtime data of ``view`` was built with."""
        raw = self._call(self.client.hget, self.keys.meta(view), "fingerprint")
        return None if raw is None else raw.decode()

    def apply(
        self,
        batch: Mapping[ViewDef, Mapping[Cell, dict[str, Any]]],
        expected: Mapping[int, int],
        next_offsets: Mapping[int, int],
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Write one poll batch and its offsets in one MULTI/EXEC.

        Args:
            batch: view -> partial aggregates of this batch.
            expected: the offsets this consumer believes are committed (fencing).
            next_offsets: partition -> next offset after this batch.
            meta: extra fields written to every view's meta hash (freshness, ...).

        Raises:
            FencedOut: the offsets were moved by someone else.
            ServiceUnavailable: Redis did not answer.
        """
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.watch(self.offsets_key)
                self._check_fence(pipe, expected)
                plans = [(v, self._plan(pipe, v, cells)) for v, cells in batch.items()]
                pipe.multi()
                for view, plan in plans:
                    self._queue(pipe, view, plan, meta)
                if next_offsets:
                    pipe.hset(
                        self.offsets_key, mapping={str(p): o for p, o in next_offsets.items()}
                    )
                pipe.execute()
        except redis.WatchError as exc:
            msg = f"offsets {self.offsets_key} changed during a write: another consumer runs"
            raise FencedOut(msg) from exc
        except redis.ConnectionError as exc:
            msg = f"Redis at {self.settings.redis.url} did not answer: {exc}"
            raise ServiceUnavailable(msg) from exc

    def _check_fence(self, pipe: Any, expected: Mapping[int, int]) -> None:
        raw = pipe.hgetall(self.offsets_key)
        stored = {int(p): int(o) for p, o in raw.items()}
        moved = {p: o for p, o in stored.items() if expected.get(p) != o}
        if moved or set(expected) - set(stored):
            msg = (
                f"offsets {self.offsets_key} are {stored}, this consumer expected "
                f"{dict(expected)}: another consumer moved them"
            )
            raise FencedOut(msg)

    def _plan(self, pipe: Any, view: ViewDef, cells: Mapping[Cell, dict[str, Any]]) -> Plan:
        wanted = merge_fields(view, cells)
        current: dict[tuple[str, str], bytes | None] = {}
        if wanted:
            reader = self.client.pipeline(transaction=False)
            for key, fields in wanted.items():
                reader.hmget(self.keys.rt(view.name, key), fields)
            for (key, fields), values in zip(wanted.items(), reader.execute(), strict=True):
                current.update({(key, f): v for f, v in zip(fields, values, strict=True)})
        return plan_view(view, cells, current, lambda k: self.keys.rt(view.name, k))

    def _queue(self, pipe: Any, view: ViewDef, plan: Plan, meta: Mapping[str, Any] | None) -> None:
        for name, values in plan.put.items():
            if values:
                pipe.hset(name, mapping=values)
        for window, keys in plan.windows.items():
            pipe.zadd(self.keys.windows(view.name), {str(window): window})
            pipe.sadd(self.keys.window_keys(view.name, window), *sorted(keys))
        if meta:
            pipe.hset(self.keys.meta(view.name), mapping=dict(meta))

    def reset(
        self, views: Mapping[str, ViewDef], start: Mapping[int, int], meta: Mapping[str, Any]
    ) -> None:
        """Drop every realtime key of ``views`` and set the offsets, in one MULTI/EXEC.

        Only these views' keys go: another stream's consumer keeps its own.

        Used by the rebuild: a crash before EXEC changes nothing, after it the consumer
        simply resumes from ``start`` like after any restart.

        Fencing: the offsets hash is WATCHed from before the SCAN to the EXEC. A live
        consumer that commits meanwhile (creating keys the SCAN may not have seen) aborts
        the EXEC, and the reset starts over; once it went through, that consumer's next
        write finds offsets it did not expect and is fenced out (:class:`FencedOut`).

        Raises:
            FencedOut: the offsets kept moving for ``RESET_ATTEMPTS`` attempts.
        """
        for _ in range(RESET_ATTEMPTS):
            try:
                self._reset_once(views, start, meta)
                return
            except redis.WatchError:
                continue
        msg = f"offsets {self.offsets_key} kept moving during {RESET_ATTEMPTS} rebuild attempts"
        raise FencedOut(msg)

    def _reset_once(
        self, views: Mapping[str, ViewDef], start: Mapping[int, int], meta: Mapping[str, Any]
    ) -> None:
        patterns = [pattern for name in views for pattern in self.keys.view_patterns(name)]
        with self.client.pipeline(transaction=True) as pipe:
            pipe.watch(self.offsets_key)
            doomed = [k for pattern in patterns for k in self._scan(pattern)]
            pipe.multi()
            for chunk in range(0, len(doomed), 1000):
                pipe.delete(*doomed[chunk : chunk + 1000])
            pipe.delete(self.offsets_key)
            pipe.hset(self.offsets_key, mapping={str(p): o for p, o in start.items()})
            for view in views.values():
                pipe.delete(self.keys.meta(view.name))
                fields: dict[str | bytes, bytes | float | int | str] = {
                    "fingerprint": view.fingerprint,
                    **{k: str(v) for k, v in meta.items()},
                }
                if view.enrich:  # the dimension versions it runs with, for provenance
                    fields["dimensions"] = json.dumps(view.dimension_versions())
                pipe.hset(self.keys.meta(view.name), mapping=fields)
            pipe.execute()

    def _scan(self, pattern: str) -> list[bytes]:
        return list(self.client.scan_iter(match=pattern, count=1000))

    def windows_held(self, view: str) -> int:
        """How many ingest windows of ``view`` Redis holds."""
        return int(self._call(self.client.zcard, self.keys.windows(view)))

    def _call(self, func: Any, *args: Any) -> Any:
        return redis_call(self.settings, func, *args)


def redis_call(settings: Settings, func: Any, *args: Any) -> Any:
    """Call a Redis client method, turning a lost connection into ServiceUnavailable."""
    try:
        return func(*args)
    except redis.ConnectionError as exc:
        msg = f"Redis at {settings.redis.url} did not answer: {exc}"
        raise ServiceUnavailable(msg) from exc
