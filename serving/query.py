"""One merged query: read one batch version and the realtime partials since its cut.

This is where invariant 2 (exact merge) is kept on the read side: a query calls
``BatchReader.current()`` once and uses that version and its cut throughout, and reads the
realtime part between two identical readings of the speed layer's committed offsets (the
speed layer commits offsets and increments in one Redis transaction), so the provenance
returned names exactly the Kafka records the answer reflects. The availability setting
decides what an unavailable backend does: 503 (consistent) or a partial answer (available).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from lambdalab.errors import PartUnavailable, ServiceUnavailable
from lambdalab.settings import Settings
from serving.deps import BatchSource, SpeedSource
from serving.merge import Provenance, Rows, answer
from serving.selection import Cells
from views.definition import ViewDef


def _unavailable(settings: Settings, part: str, exc: ServiceUnavailable) -> None:
    if settings.api.availability == "consistent":
        msg = (
            f"the {part} view is unavailable ({exc}); api.availability=consistent answers "
            "503 rather than a partial answer (set it to 'available' to get one)"
        )
        raise PartUnavailable(msg) from exc


def read_batch(
    settings: Settings, batch: BatchSource, view: ViewDef, key: str, span: tuple[int, int]
) -> tuple[Any, Rows, bool]:
    """(version info or None, batch rows, whether the batch part is missing)."""
    info = None
    try:
        info = batch.current(view.name)
        if info is None:
            return None, {}, False
        return info, batch.rows(view.name, info.version, key, *span), False
    except ServiceUnavailable as exc:
        _unavailable(settings, "batch", exc)
        return info, {}, True


def read_realtime(
    settings: Settings,
    speed: SpeedSource,
    view: ViewDef,
    key: str,
    since_ms: int,
    span: tuple[int, int],
) -> tuple[Rows, int | None, dict[int, int] | None, bool, Any]:
    """(partials since ``since_ms``, freshness, offsets, whether missing, Kappa switch).

    One atomic snapshot of the speed layer (:meth:`speed.reader.SpeedReader.snapshot`): the
    offsets in the provenance are exactly those the partials reflect. When serving is
    switched to a Kappa replay (``lab replay``), the partials are the replay's, from its
    first window, and the last element names it (else None).
    """
    try:
        snap = speed.snapshot(view.name, key, since_ms, *span)
        return snap.rows, snap.freshness_ms, snap.offsets, False, getattr(snap, "kappa", None)
    except ServiceUnavailable as exc:
        _unavailable(settings, "realtime", exc)
        return {}, None, None, True, None


def kappa_source(target: Any) -> dict[str, Any] | None:
    """The provenance of a Kappa-served answer: which replay output, which generation."""
    if target is None:
        return None
    return {
        "output": target.output,
        "generation": target.generation,
        "switched_ms": target.switched_ms,
    }


def dimension_sources(
    speed: SpeedSource, view: ViewDef, info: Any
) -> dict[str, dict[str, int | None]] | None:
    """Which dimension versions each part used (None for a view without enrichment).

    The batch part's are in its version's lineage; the realtime part's in the speed
    layer's bookkeeping (it rebuilds a view when a dimension gets a new version).
    """
    if not view.enrich:
        return None
    lineage = getattr(info, "lineage", None) or {}
    try:
        realtime = speed.dimensions(view.name)
    except ServiceUnavailable:
        realtime = {}
    return {"batch": dict(lineage.get("dimensions", {})), "realtime": realtime}


def merged_query(
    settings: Settings,
    batch: BatchSource,
    speed: SpeedSource,
    view: ViewDef,
    key: str,
    span: tuple[int, int],
    *,
    sketches: bool = False,
) -> dict[str, Any]:
    """The merged answer of ``view`` for ``key`` over buckets in ``span`` = [from, to) ms.

    Raises:
        PartUnavailable: a backend did not answer and api.availability is "consistent".
    """
    info, batch_rows, batch_missing = read_batch(settings, batch, view, key, span)
    cut_ms = info.cut_ms if info is not None else None
    since = cut_ms if cut_ms is not None else 0
    rt_rows, fresh, offsets, rt_missing, kappa = read_realtime(
        settings, speed, view, key, since, span
    )
    if kappa is not None:  # Kappa: the replay's output is the whole answer, no batch part
        info, batch_rows, batch_missing, cut_ms = None, {}, False, None
        view = replace(kappa.view, name=view.name)
    prov = Provenance(
        version=info.version if info is not None else None,
        cut_ms=cut_ms,
        freshness_ms=fresh,
        speed_offsets=offsets,
        missing=[p for p, gone in (("batch", batch_missing), ("realtime", rt_missing)) if gone],
        kappa=kappa_source(kappa),
        dimensions=dimension_sources(speed, view, info),
    )
    return answer(view, key, batch_rows, rt_rows, prov, sketches=sketches)


def merged_cells(
    settings: Settings,
    batch: BatchSource,
    speed: SpeedSource,
    view: ViewDef,
    span: tuple[int, int],
    keep: Callable[[str], bool],
) -> tuple[list[Cells], Provenance]:
    """Both parts of the merged answer over many keys, and where they came from.

    One version pointer (and its cut) and one realtime snapshot
    (:meth:`speed.reader.SpeedReader.view_snapshot`) for the whole request, as for one key:
    the batch cells of that version, the realtime cells of the windows at or after its cut,
    of every key ``keep`` accepts with buckets in ``span``.

    Raises:
        PartUnavailable: a backend did not answer and api.availability is "consistent".
    """

    def read(info: Any) -> Cells:
        return batch.cells(view.name, info.version, *span, keep)

    batch_cells, rt_cells, prov = _merged(settings, batch, speed, view, read, span, keep)
    return [batch_cells or {}, rt_cells], prov


def merged_parts(
    settings: Settings,
    batch: BatchSource,
    speed: SpeedSource,
    view: ViewDef,
    span: tuple[int, int] = (-(2**62), 2**62),
    keep: Callable[[str], bool] | None = None,
    realtime: Callable[[int], Any] | None = None,
) -> tuple[Any, Cells, Provenance]:
    """The merged view as its two parts, read as :func:`merged_cells` reads them.

    Returns this host's local copy of the current batch version (None when none is
    published, or HDFS is away and api.availability allows a partial answer), the realtime
    cells since that version's cut of every key ``keep`` accepts (all by default) with
    buckets in ``span`` (all by default), and their provenance. ``realtime(cut_ms)``, when
    given, reads the realtime part instead (``serving.realtime.RealtimeTables``: a table).

    Raises:
        PartUnavailable: a backend did not answer and api.availability is "consistent".
    """

    def read(info: Any) -> Any:
        return batch.local(view.name, info.version)

    return _merged(settings, batch, speed, view, read, span, keep, realtime)


def _merged(
    settings: Settings,
    batch: BatchSource,
    speed: SpeedSource,
    view: ViewDef,
    read: Callable[[Any], Any],
    span: tuple[int, int],
    keep: Callable[[str], bool] | None,
    realtime: Callable[[int], Any] | None = None,
) -> tuple[Any, Cells, Provenance]:
    info, batch_part, batch_missing = None, None, False
    try:
        info = batch.current(view.name)
        if info is not None:
            batch_part = read(info)
    except ServiceUnavailable as exc:
        _unavailable(settings, "batch", exc)
        batch_missing = True
    cut_ms = info.cut_ms if info is not None else None
    rt_cells, fresh, offsets, rt_missing, kappa = {}, None, None, False, None
    try:
        if realtime is not None:
            snap = realtime(cut_ms or 0)
        else:
            snap = speed.view_snapshot(view.name, cut_ms or 0, *span, keep)
        rt_cells, fresh, offsets = snap.cells, snap.freshness_ms, snap.offsets
        kappa = getattr(snap, "kappa", None)
    except ServiceUnavailable as exc:
        _unavailable(settings, "realtime", exc)
        rt_missing = True
    if kappa is not None:  # Kappa: the replay's output is the whole answer, no batch part
        info, batch_part, batch_missing, cut_ms = None, None, False, None
    prov = Provenance(
        version=info.version if info is not None else None,
        cut_ms=cut_ms,
        freshness_ms=fresh,
        speed_offsets=offsets,
        missing=[p for p, gone in (("batch", batch_missing), ("realtime", rt_missing)) if gone],
        kappa=kappa_source(kappa),
        dimensions=dimension_sources(speed, view, info),
    )
    return batch_part, rt_cells, prov
