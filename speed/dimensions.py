"""Dimension tables for the speed layer: Redis copies of the versions on HDFS.

HDFS holds every version of a dimension (``batch.dimensions`` publishes them); the speed
layer runs a view pinned to the newest one, as the next batch cycle will. :meth:`sync`
copies that version into Redis (``dim:{name}:v{n}``, then ``dim:{name}:current``, in one
MULTI/EXEC) when Redis does not hold it yet, so a lost Redis is refilled from HDFS like
the rest of the speed layer (invariant 6); with HDFS away it keeps the version Redis has.
The consumer re-syncs periodically and rebuilds a view whose pinned version changed (its
fingerprint changed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from lambdalab.errors import DefinitionError, ServiceUnavailable
from lambdalab.hdfs import dimension_versions, read_dimension, webhdfs
from lambdalab.paths import RedisKeys
from lambdalab.settings import Settings
from speed.store import redis_call
from views.definition import ViewDef
from views.dimension import Table, get_dimension, key_text, key_value

log = logging.getLogger(__name__)


class DimensionTables:
    """The speed layer's view of dimension versions: which is newest, and its rows."""

    def __init__(self, settings: Settings, client: Any) -> None:
        self.settings, self.client = settings, client
        self.keys = RedisKeys(settings)

    def sync(self, names: Iterable[str]) -> dict[str, int | None]:
        """Name -> newest version (copied into Redis if missing); None when there is none."""
        out: dict[str, int | None] = {}
        for name in sorted(set(names)):
            held = redis_call(self.settings, self.client.get, self.keys.dimension_current(name))
            current = int(held) if held is not None else None
            try:
                found = dimension_versions(webhdfs(self.settings), self.settings, name)
            except ServiceUnavailable as exc:
                log.warning("dimension %s: keeping Redis's version %s: %s", name, current, exc)
                out[name] = current
                continue
            newest = found[0] if found else None
            if newest is not None and newest != current:
                self._copy(name, newest)
            out[name] = newest
        return out

    def _copy(self, name: str, n: int) -> None:
        """Version ``n`` from HDFS into its Redis hash, then point ``current`` at it."""
        rows = read_dimension(webhdfs(self.settings), self.settings, name, n).to_pylist()
        dim = get_dimension(name)
        mapping = {
            key_text(row[dim.key.name]): json.dumps([row[f.name] for f in dim.fields])
            for row in rows
        }
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.dimension(name, n))
            if mapping:
                pipe.hset(self.keys.dimension(name, n), mapping=mapping)
            pipe.set(self.keys.dimension_current(name), n)
            redis_call(self.settings, pipe.execute)
        log.info("dimension %s: version %d copied into Redis (%d rows)", name, n, len(mapping))

    def pin(self, views: Mapping[str, ViewDef]) -> tuple[dict[str, ViewDef], dict[str, Table]]:
        """``views`` pinned to their dimensions' newest versions, and those versions' rows.

        A version missing from Redis is copied there first (:meth:`sync`).

        Raises:
            DefinitionError: a dimension has no version at all (saying how to load one).
        """
        versions = self.sync({e.dimension for v in views.values() for e in v.enrich})
        return {n: v.pinned(versions) for n, v in views.items()}, self.tables(versions)

    def tables(self, versions: dict[str, int | None]) -> dict[str, Table]:
        """The rows of each pinned version, read from Redis.

        Raises:
            DefinitionError: a dimension has no version at all (saying how to load one).
        """
        out: dict[str, Table] = {}
        for name, n in versions.items():
            if n is None:
                msg = f"dimension {name!r} has no version yet: lambdalab dim load {name} FILE"
                raise DefinitionError(msg)
            dim = get_dimension(name)
            raw = redis_call(self.settings, self.client.hgetall, self.keys.dimension(name, n))
            out[name] = {key_value(dim, _text(k)): tuple(json.loads(v)) for k, v in raw.items()}
        return out


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
