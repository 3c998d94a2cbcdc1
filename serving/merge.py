"""The Lambda merge: ``batch view @ cut ⊕ realtime view since cut``, with its provenance.

Pure logic, no I/O. The routes read one batch version (and its cut) and the realtime
partials since that cut, then hand both here. Every measure is merged with the view's
own algebra (:func:`views.compute.combine`), so the answer is exact whichever side of the
cut a record fell on. Each measure is rendered by its kind (:mod:`views.measures`):
sketches as estimates or quantiles, their bytes base64-encoded on request.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from views.compute import combine
from views.definition import ViewDef

Rows = dict[int, dict[str, Any]]  # event-time bucket start (ms) -> {measure: value}


@dataclass(frozen=True)
class Provenance:
    """Where a merged answer came from: one batch version, its cut, the speed layer state.

    Attributes:
        version: the batch version read, or None when none is published (or HDFS is down).
        cut_ms: that version's ingest-time cut C (the version covers ingest time < C).
        freshness_ms: newest ingest time the speed layer had applied, if known.
        speed_offsets: next Kafka offset per partition covered by the realtime part.
        missing: the parts that could not be read ("batch", "realtime").
        kappa: the replay output that served the answer instead of batch ⊕ realtime
            (``lab replay``: output, generation, switched_ms), None when Lambda served it.
        dimensions: for a view enriched from dimension tables, the version of each that
            each part used: ``{"batch": {name: n}, "realtime": {name: n}}``.
    """

    version: int | None = None
    cut_ms: int | None = None
    freshness_ms: int | None = None
    speed_offsets: dict[int, int] | None = None
    missing: list[str] = field(default_factory=list)
    kappa: dict[str, Any] | None = None
    dimensions: dict[str, dict[str, int | None]] | None = None


def iso_ms(ms: int | None) -> str | None:
    """ISO-8601 UTC text (milliseconds, ``Z``) of an epoch-ms instant, None for None."""
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def merge_rows(view: ViewDef, batch: Rows, realtime: Rows) -> Rows:
    """Per bucket, the batch row combined with the realtime row (raw values, sketches)."""
    buckets = sorted(set(batch) | set(realtime))
    return {b: combine(view, [part[b] for part in (batch, realtime) if b in part]) for b in buckets}


def render_row(view: ViewDef, row: dict[str, Any], *, sketches: bool) -> dict[str, Any]:
    """A JSON-ready row: each measure rendered by its kind, sketches base64 if ``sketches``.

    A sketch renders as its estimate (hll, theta) or its quantiles; an avg as sum/count.
    """
    out: dict[str, Any] = {}
    for kind in view.kinds:
        value = kind.merge_all([row.get(kind.name)])
        out[kind.name] = kind.render(value)
        if sketches and kind.finishes:
            blob = kind.sketch(value)
            out[f"{kind.name}_sketch"] = base64.b64encode(blob).decode() if blob else None
    return out


def freshness(prov: Provenance) -> int | None:
    """Newest ingest time reflected: the speed layer's, or the cut when it has nothing newer."""
    candidates = [t for t in (prov.cut_ms, prov.freshness_ms) if t is not None]
    if "realtime" in prov.missing:
        candidates = [prov.cut_ms] if prov.cut_ms is not None else []
    return max(candidates) if candidates else None


def answer(
    view: ViewDef,
    key: str,
    batch: Rows,
    realtime: Rows,
    prov: Provenance,
    *,
    sketches: bool = False,
) -> dict[str, Any]:
    """The merged answer of one view key over a bucket range, with its provenance.

    Args:
        view: the view definition (its measures decide how parts merge).
        key: the view key (``ViewDef.key_of`` form).
        batch: rows of the batch version ``prov.version`` (empty if none).
        realtime: realtime partials merged over ingest windows >= ``prov.cut_ms``.
        prov: which version, cut and speed-layer state produced the parts.
        sketches: also return each HLL sketch base64-encoded.

    Returns:
        A JSON-ready dict: version, cut, batch and realtime parts per bucket, merged rows
        in bucket order, freshness, speed offsets, and partial/missing flags.
    """
    merged = merge_rows(view, batch, realtime)
    sources = provenance(prov)
    return {
        "view": view.name,
        "key": key,
        "version": sources.pop("version"),
        "cut": sources.pop("cut"),
        "cut_ms": sources.pop("cut_ms"),
        "batch": _part(view, batch, sketches),
        "realtime": _part(view, realtime, sketches),
        "merged": [
            {"bucket": iso_ms(b), "bucket_ms": b, **render_row(view, row, sketches=sketches)}
            for b, row in merged.items()
        ],
        **sources,
    }


def provenance(prov: Provenance) -> dict[str, Any]:
    """The provenance fields of every merged answer, JSON-ready.

    version, cut (ISO and ms), freshness (ISO and ms), speed offsets per partition, and
    whether (and which) parts were missing.
    """
    fresh = freshness(prov)
    return {
        "version": prov.version,
        "cut": iso_ms(prov.cut_ms),
        "cut_ms": prov.cut_ms,
        "freshness": iso_ms(fresh),
        "freshness_ms": fresh,
        "speed_offsets": {str(p): o for p, o in sorted((prov.speed_offsets or {}).items())},
        "partial": bool(prov.missing),
        "missing": list(prov.missing),
        "kappa": prov.kappa,
        "dimensions": prov.dimensions,
    }


def _part(view: ViewDef, rows: Rows, sketches: bool) -> dict[str, dict[str, Any]]:
    return {str(b): render_row(view, rows[b], sketches=sketches) for b in sorted(rows)}
