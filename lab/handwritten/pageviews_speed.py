"""Page views per URL per hour -- the SPEED-layer copy, written by hand.

WRITTEN TWICE ON PURPOSE: the batch copy is lab/handwritten/pageviews_batch.py. Any change
here must be made there too; ``lambdalab lab drift`` shows what happens when it is not.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

HOUR_MS = 3_600_000


def compute(events: Iterable[dict[str, Any]]) -> dict[tuple[str, int], dict[str, int]]:
    """(url, hour start ms) -> {views, min_bytes, max_bytes} over validated events."""
    out: dict[tuple[str, int], dict[str, int]] = {}
    for event in events:
        moment = datetime.fromisoformat(str(event["event_time"]).replace("Z", "+00:00"))
        event_ms = int(moment.timestamp() * 1000)
        hour = event_ms - event_ms % HOUR_MS
        row = out.setdefault(
            (event["url"], hour), {"views": 0, "min_bytes": 2**63 - 1, "max_bytes": -(2**63)}
        )
        row["views"] += 1
        row["min_bytes"] = min(row["min_bytes"], event["bytes"])
        row["max_bytes"] = max(row["max_bytes"], event["bytes"])
    return out
