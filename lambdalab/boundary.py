"""The time boundary: the one place that says which side of a cut a record falls on.

Records are split between batch and speed by ingest time (the broker's LogAppendTime),
in ingest windows of width W (``batch.window_s``). The archiver files records by window,
the batch layer picks a cut at a window boundary, the speed layer keys its increments by
window, the serving layer reads the realtime windows at or after a version's cut, and
expiry forgets the windows below the cut of the previous version. Every one of them uses
the arithmetic below and nothing else (docs/architecture.md, "The time boundary").
"""

from __future__ import annotations

from collections.abc import Sequence

from lambdalab.settings import Settings


def window_of(ingest_ms: int, window_s: int) -> int:
    """Start (ms) of the ingest window holding a record appended at ``ingest_ms``."""
    width = window_s * 1000
    return ingest_ms - ingest_ms % width


def cut_at(settings: Settings, snapshot_ms: int) -> int:
    """The cut of a batch run that snapshotted the end offsets at ``snapshot_ms``.

    The ingest-window boundary at or before ``snapshot_ms - batch.clock_skew_s``: every
    record with an ingest time below it was appended before the snapshot, so it is landed.
    """
    edge = snapshot_ms - settings.batch.clock_skew_s * 1000
    return window_of(edge, settings.batch.window_s)


def horizon(cuts: Sequence[int]) -> int | None:
    """The expiry horizon: the cut of the previous published version (None with < 2).

    Args:
        cuts: the cuts of the published versions of one view, newest version first.
    """
    return cuts[1] if len(cuts) >= 2 else None


def seconds_until_cut_covers(settings: Settings, first_ms: int, now_ms: int) -> float:
    """Seconds to wait until a cut taken then lies past the window holding ``first_ms``."""
    width = settings.batch.window_s * 1000
    boundary = window_of(first_ms, settings.batch.window_s) + width
    return max(0.0, (boundary + settings.batch.clock_skew_s * 1000 - now_ms) / 1000 + 0.5)
