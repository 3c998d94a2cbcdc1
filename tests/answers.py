"""What a client is served: the merged cells of some keys, as the oracle shapes them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from batch.reader import BatchReader
from batch.tasks import run_cycle
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


def every_layer_equals(
    settings: Settings, view: ViewDef, oracle: dict[tuple[str, int], dict[str, Any]]
) -> None:
    """The speed layer holds ``oracle`` (every event consumed); then a batch cycle whose cut
    is after every event holds it too, and so does the merged answer of each cell."""
    width = view.bucket_s * 1000
    speed = SpeedReader(settings)
    for (key, bucket), want in oracle.items():
        assert speed.partials(view.name, key, 0, bucket, bucket + width) == {bucket: want}
    cut = (int(datetime.now(UTC).timestamp() * 1000) // 60_000 + 2) * 60_000
    report = run_cycle(settings, cut_ms=cut, views=[view], trino=False, allow_future_cut=True)
    assert report["views"][view.name]["status"] == "published", report
    batch = BatchReader(settings)
    version = batch.current(view.name)
    assert version is not None
    for (key, bucket), want in oracle.items():
        rows = batch.rows(view.name, version.version, key, bucket, bucket + width)
        assert {m: rows[bucket][m] for m in want} == want
        answer = merged_query(settings, batch, speed, view, key, (bucket, bucket + width))
        assert {m: answer["merged"][0][m] for m in want} == want
