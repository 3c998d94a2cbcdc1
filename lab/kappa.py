"""The Kappa exercise: recompute by replaying the log through the streaming code.

Kappa drops the batch layer: the log is kept forever and a recomputation is a replay.
Here the replay feeds every record from offset 0 up to the speed layer's committed offsets
through the speed layer's own aggregation (``views.compute``), with bad records split off
and reported like every layer does (:mod:`lambdalab.deadletters`), and compares the result,
cell by cell, with the Lambda answer the serving layer gives (batch @ cut ⊕ realtime).
Both must be equal; the report also says what each way cost.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from batch.reader import BatchReader
from lambdalab.deadletters import DeadLetters, split
from lambdalab.errors import LambdaLabError
from lambdalab.schema import get_stream
from lambdalab.settings import Settings
from lambdalab.topics import read_topic
from serving.query import merged_query
from speed.reader import SpeedReader
from views.compute import aggregate, combine
from views.definition import ViewDef, hll_estimate, hll_rse


@dataclass
class KappaReport:
    """A replay compared with the Lambda answers of one view."""

    view: str
    records: int
    replay_s: float
    lambda_s: float
    cells: int
    mismatches: list[dict[str, Any]] = field(default_factory=list)


def replay(
    settings: Settings, until: dict[int, int], stream: str
) -> list[tuple[int, dict[str, Any]]]:
    """Every valid (ingest_ms, event) of ``stream``'s log below the ``until`` offsets.

    Records that do not decode are reported to the dead-letter topic (layer ``kappa``).
    """
    records = read_topic(settings, settings.topic_for(stream), until)
    good, dead = split(get_stream(stream), records)
    if dead:
        letters = DeadLetters(settings, layer="kappa")
        try:
            letters.report(dead)
        finally:
            letters.close()
    return [(d.ingest_ms, d.event) for d in good]


def compare(settings: Settings, view: ViewDef) -> KappaReport:
    """Replay the log for ``view`` and compare with the serving layer's merged answers."""
    speed = SpeedReader(settings)
    until = speed.offsets(view.name)
    if not until:
        msg = "the speed layer has committed no offsets yet: run `lambdalab speed run --once`"
        raise LambdaLabError(msg)
    started = time.perf_counter()
    events = replay(settings, until, view.stream)
    cells: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for (_w, key, bucket), row in aggregate(view, events, settings.batch.window_s).items():
        cells[(key, bucket)].append(row)
    kappa = {cell: combine(view, rows) for cell, rows in cells.items()}
    replay_s = time.perf_counter() - started
    report = KappaReport(view.name, len(events), replay_s, 0.0, len(kappa))
    started = time.perf_counter()
    width = view.bucket_s * 1000
    batch = BatchReader(settings)
    for key in sorted({k for k, _b in kappa}):
        buckets = [b for k, b in kappa if k == key]
        answer = merged_query(
            settings, batch, speed, view, key, (min(buckets), max(buckets) + width)
        )
        if {int(p): o for p, o in (answer.get("speed_offsets") or {}).items()} != until:
            msg = "the speed layer moved during the comparison: re-run when ingest is quiet"
            raise LambdaLabError(msg)
        got = {int(row["bucket_ms"]): row for row in answer["merged"]}
        for bucket in buckets:
            _compare_cell(view, key, bucket, kappa[(key, bucket)], got.get(bucket), report)
    report.lambda_s = time.perf_counter() - started
    return report


def _compare_cell(
    view: ViewDef,
    key: str,
    bucket: int,
    want: dict[str, Any],
    got: dict[str, Any] | None,
    report: KappaReport,
) -> None:
    """Record in ``report`` where a served cell differs from the replay's.

    Exact for count/sum/min/max; HLL estimates of a union may use another estimator than
    the replay's, so they must agree within two relative standard errors.
    """
    kinds = {m.name: m.kind for m in view.measures}
    expected = {n: hll_estimate(want[n]) if k == "hll" else want[n] for n, k in kinds.items()}
    actual = None if got is None else {n: got.get(n) for n in kinds}

    def off(name: str, have: dict[str, Any]) -> bool:
        a, e = float(have[name] or 0), float(expected[name] or 0)
        slack = 2 * hll_rse() * max(1.0, e) if kinds[name] == "hll" else 0.0
        return abs(a - e) > slack

    if actual is None or any(off(n, actual) for n in kinds):
        report.mismatches.append(
            {"key": key, "bucket_ms": bucket, "kappa": expected, "lambda": actual}
        )
