"""Expiry: the speed layer forgets what two published batch versions already cover.

The serving layer answers ``batch_v ⊕ realtime windows ≥ cut(v)``. A query may have
started on the version before the newest one, so realtime windows are kept down to the
cut of the *previous* published version (two generations) and deleted below it: that
cut is the **horizon**. With fewer than two published versions nothing expires.

Cuts are read from the batch layer's version directories on HDFS
(``views/{view}/versions/v{N:06d}/_lineage.json``, field ``cut_ms``); a version exists
only once published, so every directory listed there is a published version.
"""

from __future__ import annotations

import json
from typing import Any

import redis
from hdfs.util import HdfsError
from requests.exceptions import RequestException

from lambdalab.errors import ServiceUnavailable
from lambdalab.paths import VERSION_DIR, HdfsPaths, RedisKeys
from lambdalab.settings import Settings


def published_cuts(settings: Settings, view: str, client: Any | None = None) -> list[int]:
    """Cuts (ms) of the published versions of ``view``, newest version first.

    Raises:
        ServiceUnavailable: HDFS (WebHDFS) did not answer.
    """
    from batch.master import webhdfs

    hdfs = client if client is not None else webhdfs(settings)
    root = HdfsPaths(settings).versions(view)
    try:
        if hdfs.status(root, strict=False) is None:
            return []
        numbers = sorted(
            (int(m["n"]) for name in hdfs.list(root) if (m := VERSION_DIR.match(name))),
            reverse=True,
        )
        return [_cut(hdfs, f"{root}/v{n:06d}/_lineage.json") for n in numbers]
    except (HdfsError, RequestException) as exc:
        msg = f"HDFS (WebHDFS {settings.hdfs.webhdfs_url}) did not answer for {root}: {exc}"
        raise ServiceUnavailable(msg) from exc


def _cut(hdfs: Any, path: str) -> int:
    with hdfs.read(path) as reader:
        return int(json.loads(reader.read())["cut_ms"])


def horizon(cuts: list[int]) -> int | None:
    """The expiry horizon: cut of the previous published version (None with < 2)."""
    return cuts[1] if len(cuts) >= 2 else None


def expire(client: redis.Redis, keys: RedisKeys, view: str, before_ms: int) -> int:
    """Delete the realtime windows of ``view`` older than ``before_ms``; return how many.

    Per window: HDEL its fields from every key listed in its key set, then drop the set,
    then the window index member. Idempotent: a crash midway leaves the member, and the
    next pass finishes the job.
    """
    windows = [int(w) for w in client.zrangebyscore(keys.windows(view), "-inf", f"({before_ms}")]
    for window in windows:
        members = client.smembers(keys.window_keys(view, window))
        prefix = f"{window}|"
        for member in members:
            name = keys.rt(view, member.decode())
            fields = [f for f in client.hkeys(name) if f.decode().startswith(prefix)]
            if fields:
                client.hdel(name, *fields)
        client.delete(keys.window_keys(view, window))
        client.zrem(keys.windows(view), str(window))
    return len(windows)
