"""The realtime store's key layout: one partition's transaction stays in one hash slot.

A Redis Cluster refuses a MULTI/EXEC or script whose keys lie in different slots
(CROSSSLOT). Every key a speed-layer transaction touches is a key of one
``PartitionKeys``; these tests compute slots with redis-py's own ``key_slot`` (CRC16 of the
hash tag, as the cluster does), for any view name, view key, source and partition.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.cluster import key_slot

from lambdalab.paths import PartitionKeys, RedisKeys
from lambdalab.settings import load_settings

pytestmark = pytest.mark.unit

names = st.text(min_size=0, max_size=30)  # braces and colons included: they must not matter
sources = st.from_regex(r"[a-z0-9_.-]{1,20}(@[a-z0-9_]{1,12})?", fullmatch=True)


def _every_key(keys: PartitionKeys, view: str, key: str, window: int) -> list[str]:
    return [
        keys.offsets,
        keys.meta(view),
        keys.rt(view, key),
        keys.windows(view),
        keys.window_keys(view, window),
    ]


UNIT_KEYS = RedisKeys(load_settings(namespace="unit"))  # read once, not once per example


@given(sources, st.integers(0, 1023), names, names, names, st.integers(0, 2**45))
def test_one_partition_is_one_slot(
    source: str, partition: int, view: str, other_view: str, key: str, window: int
) -> None:
    keys = UNIT_KEYS.partition(source, partition)
    every = _every_key(keys, view, key, window) + _every_key(keys, other_view, key, window)
    assert {key_slot(k.encode()) for k in every} == {key_slot(keys.offsets.encode())}


def test_partitions_spread_over_the_slots_of_three_masters() -> None:
    """Four partitions of a topic do not all hash to one third of the slot space."""
    keys = RedisKeys(load_settings(namespace="unit"))
    thirds = {
        key_slot(keys.partition("unit.events.pageviews", p).offsets.encode()) * 3 // 16384
        for p in range(12)
    }
    assert thirds == {0, 1, 2}


def test_every_key_carries_the_namespace_prefix() -> None:
    settings = load_settings(namespace="unit")
    keys = RedisKeys(settings).partition("t", 0)
    assert all(k.startswith(settings.redis_prefix) for k in _every_key(keys, "v", "k", 0))
