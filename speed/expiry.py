"""Expiry: the speed layer forgets what two published batch versions already cover.

The serving layer answers ``batch_v ⊕ realtime windows ≥ cut(v)``. A query may have
started on the version before the newest one, so realtime windows are kept down to the
cut of the *previous* published version (two generations) and deleted below it: that
cut is the **horizon**. With fewer than two published versions nothing expires.

Cuts are read with :func:`lambdalab.hdfs.published_cuts` and the horizon is
:func:`lambdalab.boundary.horizon`: the speed layer never parses the batch layer's paths.
Expiry runs per Kafka partition (each partition's keys sit in one hash slot), by the
consumer that owns it.
"""

from __future__ import annotations

from typing import Any

from lambdalab.paths import PartitionKeys


def expire(client: Any, keys: PartitionKeys, view: str, before_ms: int) -> int:
    """Delete the partition's realtime windows of ``view`` older than ``before_ms``.

    Returns how many windows went. Per window: HDEL its fields from every key listed in
    its key set, then drop the set, then the window index member. Idempotent: a crash
    midway leaves the member, and the next pass finishes the job.
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
