"""What a client is served: the merged cells of some keys, as the oracle shapes them."""

from __future__ import annotations

from typing import Any

from batch.reader import BatchReader
from lambdalab.settings import Settings
from serving.query import merged_query
from speed.reader import SpeedReader
from views.definition import ViewDef


def served(settings: Settings, view: ViewDef, keys: list[str]) -> dict[tuple[str, int], Any]:
    """Every merged cell of ``keys`` over all buckets, by (key, bucket) -> {measure: value}."""
    out = {}
    batch, speed = BatchReader(settings), SpeedReader(settings)
    for key in keys:
        answer = merged_query(settings, batch, speed, view, key, (0, 2**53))
        for row in answer["merged"]:
            out[(key, int(row["bucket_ms"]))] = {m.name: row[m.name] for m in view.measures}
    return out
