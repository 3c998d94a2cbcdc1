"""The realtime part of many-key queries as an Arrow table, reused until the speed layer commits.

A query over every key of a view (``/rows`` pushed down, ``POST /sql/merged``) reads the
realtime snapshot of every key since the version's cut: one Redis transaction reading
each key's hash, then a Python merge of its windows -- ~0.9 s for 50,000 keys, most of such
a query. Every speed-layer transaction writes its partition's next offset (and a rebuild
resets it), so while the offset vector reads the same, the realtime views since the cut
are the same: the table built from the last snapshot is the snapshot now. The whole
vector (one pipelined HGET per partition) decides; any commit in between, on any
partition, makes the next query read a fresh snapshot.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from serving.mergedsql import realtime_table
from views.definition import ViewDef

EVERYTHING = (-(2**62), 2**62)


@dataclass(frozen=True)
class RealtimeTable:
    """Every key's realtime cells since ``since_ms`` and the speed-layer state they reflect."""

    since_ms: int
    cells: pa.Table  # the columns of serving.mergedsql.realtime_table
    freshness_ms: int | None
    offsets: dict[int, int]
    kappa: Any = None  # the Kappa replay read instead (no batch part), as ViewSnapshot.kappa


def _replay(speed: Any, view: ViewDef) -> Any:
    """The Kappa replay serving ``view`` (one GET), None when the speed layer serves it.

    Read before the offsets: when it is None and the offsets then equal the cached
    snapshot's, the cached table is the state at that GET.
    """
    kappa = getattr(speed, "kappa", None)
    return kappa(view.name) if callable(kappa) else None


class RealtimeTables:
    """One cached :class:`RealtimeTable` per view; thread-safe, one instance per app."""

    def __init__(self) -> None:
        self._tables: dict[str, RealtimeTable] = {}
        self._lock = threading.Lock()

    def read(self, speed: Any, view: ViewDef, since_ms: int) -> RealtimeTable:
        """The realtime table of ``view`` since ``since_ms``, rebuilt only after a commit.

        Raises:
            ServiceUnavailable: Redis did not answer.
        """
        with self._lock:
            hit = self._tables.get(view.name)
        reusable = hit is not None and hit.since_ms == since_ms and _replay(speed, view) is None
        if hit is not None and reusable and speed.offsets(view.name) == hit.offsets:
            return hit
        snap = speed.view_snapshot(view.name, since_ms, *EVERYTHING)
        kappa = getattr(snap, "kappa", None)
        table = RealtimeTable(
            since_ms, realtime_table(view, snap.cells), snap.freshness_ms, snap.offsets, kappa
        )
        if kappa is not None:  # a Kappa replay serves the view: never reused (its offsets differ)
            return table
        with self._lock:
            self._tables[view.name] = table
        return table
