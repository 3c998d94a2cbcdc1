"""The end of every drill: the log, the master dataset and every merged cell against an oracle.

Three independent checks, none of which calls the code under test to compute an answer:

- **the log** (read back with a plain consumer) must hold every event Kafka acknowledged at
  its (partition, offset); events whose send failed (*in doubt*) are looked up by id;
- **the master dataset** must hold each accepted (partition, offset) exactly once, with the
  accepted event's id, and nothing else (no poison record, no stranger);
- **every merged cell** (``serving.query.merged_query``: batch@cut ⊕ realtime) of every
  registered view equals the plain-Python oracle of ``tests/oracle.py`` over the accepted
  events: count, sum, min and max exactly, HLL within two relative standard errors.

Answers sampled *during* a drill are checked against the records they claim to reflect
(ingest time below their cut, or offset below their speed offsets), as the e2e test does.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from batch.master import read_master
from batch.reader import BatchReader
from lambdalab.hdfs import webhdfs
from lambdalab.settings import Settings
from lambdalab.topics import read_topic
from serving.query import merged_query
from speed.reader import SpeedReader
from tests import oracle
from tests.drills.harness import STREAM
from tests.drills.ingest import POISON, REFERRERS, URLS, Accepted, Coord, Ledger
from views.definition import ViewDef, hll_rse
from views.registry import all_views

HLL_ERRORS = 2  # relative standard errors an HLL estimate may be off by


@dataclass
class Truth:
    """What the log says was accepted: the oracle's input."""

    events: dict[Coord, Accepted]
    lost_in_log: int = 0  # acknowledged but not in the log at its coordinates
    doubled_in_log: int = 0  # an in-doubt event written twice, or a stranger record
    doubt_landed: int = 0  # in-doubt events the log holds (they count: the log has them)


@dataclass
class Verdict:
    """The outcome of one drill: the table row and every discrepancy found."""

    drill: str
    accepted: int = 0
    lost: int = 0
    doubled: int = 0
    recover_s: float = 0.0
    cells: int = 0
    answers: int = 0
    took_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fault: dict[str, str] = field(default_factory=dict)  # "killed", "when" (cluster drills)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.doubled and not self.problems

    def row(self) -> dict[str, Any]:
        return {
            "drill": self.drill,
            "accepted": self.accepted,
            "lost": self.lost,
            "doubled": self.doubled,
            "recover_s": round(self.recover_s, 1),
            "cells": self.cells,
            "answers": self.answers,
            "took_s": round(self.took_s),
            "result": "pass" if self.ok else "FAIL",
            "notes": "; ".join(self.notes),
            "problems": self.problems[:20],
            **self.fault,
        }


def resolve(settings: Settings, ledger: Ledger) -> Truth:
    """Read the log back and decide what was accepted (acknowledged, or in doubt but there)."""
    records = read_topic(settings, settings.topic_for(STREAM))
    by_coord = {(r.partition, r.offset): r for r in records}
    truth = Truth(events={})
    for coord, acc in ledger.accepted.items():
        rec = by_coord.get(coord)
        if rec is None or _event_id(rec.value) != acc.event["event_id"]:
            truth.lost_in_log += 1
            continue
        truth.events[coord] = Accepted(*coord, rec.timestamp, acc.event)
    doubtful = {e["event_id"]: e for e in ledger.doubtful}
    seen: Counter[str] = Counter()
    for coord, rec in by_coord.items():
        if coord in ledger.accepted or coord in ledger.poison or rec.value == POISON:
            continue
        event_id = _event_id(rec.value)
        seen[str(event_id)] += 1
        if event_id in doubtful and seen[event_id] == 1:
            truth.events[coord] = Accepted(*coord, rec.timestamp, doubtful[event_id])
            truth.doubt_landed += 1
        else:
            truth.doubled_in_log += 1
    return truth


def _event_id(raw: bytes | None) -> str | None:
    try:
        return str(json.loads(raw or b"")["event_id"])
    except (ValueError, KeyError, TypeError):
        return None


def check_master(settings: Settings, truth: Truth, ledger: Ledger) -> tuple[int, int, list[str]]:
    """(lost, doubled, problems) of the master dataset against the accepted events."""
    table = read_master(webhdfs(settings), settings, STREAM)
    columns = [table.column(c).to_pylist() for c in ("partition", "offset", "event_id")]
    rows = list(zip(*columns, strict=True)) if table.num_rows else []
    held = Counter((p, o) for p, o, _ in rows)
    ids = {(p, o): e for p, o, e in rows}
    lost = [c for c, acc in truth.events.items() if ids.get(c) != acc.event["event_id"]]
    doubled = sum(n - 1 for n in held.values())
    strangers = sorted(set(held) - set(truth.events))
    problems = [f"master: {len(lost)} accepted offsets missing, e.g. {lost[:5]}"] if lost else []
    if strangers:
        poison = len(set(strangers) & ledger.poison)
        problems.append(f"master: {len(strangers)} rows never accepted ({poison} poison)")
    return len(lost), doubled + len(strangers), problems


def pool_keys(view: ViewDef) -> set[str]:
    """Every key the feed's pools can produce for ``view`` (so phantom keys are caught)."""
    return {view.key_of({"url": u, "referrer": r}) for u in URLS for r in REFERRERS}


def check_cells(settings: Settings, truth: Truth) -> tuple[int, int, int, list[str]]:
    """(cells checked, lost, doubled, problems): every merged cell against the oracle.

    Lost and doubled come from the count measures (oracle count - merged count, per cell);
    a view's worst is reported. Other measures must match too, or the cell is a problem.
    """
    events = [acc.event for acc in truth.events.values()]
    batch, speed = BatchReader(settings), SpeedReader(settings)
    checked, lost, doubled, problems = 0, 0, 0, []
    for view in all_views().values():
        want = oracle.measures(view, events)
        width = view.bucket_s * 1000
        starts = [b for _k, b in want] or [0]
        span = (min(starts) - width, max(starts) + 2 * width)
        view_lost = view_doubled = 0
        for key in sorted({k for k, _b in want} | pool_keys(view)):
            answer = merged_query(settings, batch, speed, view, key, span)
            got = {row["bucket_ms"]: row for row in answer["merged"]}
            diff = compare(view, key, got, oracle.by_bucket(want, key))
            checked += len(got.keys() | oracle.by_bucket(want, key).keys())
            view_lost, view_doubled = view_lost + diff.lost, view_doubled + diff.doubled
            problems += diff.problems
        lost, doubled = max(lost, view_lost), max(doubled, view_doubled)
    return checked, lost, doubled, problems


@dataclass
class Diff:
    """How one key's merged rows differ from the oracle's."""

    lost: int = 0
    doubled: int = 0
    problems: list[str] = field(default_factory=list)


def compare(view: ViewDef, key: str, got: dict[int, Any], want: dict[int, Any]) -> Diff:
    """Compare merged rows (bucket -> rendered row) with oracle rows (bucket -> exact)."""
    diff = Diff()
    for bucket in sorted(got.keys() | want.keys()):
        exact = want.get(bucket) or oracle.empty_row(view)
        row = got.get(bucket, {})
        for m in view.measures:
            value, expected = row.get(m.name), exact[m.name]
            if m.kind == "count":
                missing = expected - (value or 0)
                diff.lost += max(missing, 0)
                diff.doubled += max(-missing, 0)
                ok = missing == 0
            elif m.kind == "hll":
                ok = (
                    abs((value or 0) - len(expected))
                    <= HLL_ERRORS * hll_rse() * len(expected) + 0.5
                )
                expected = len(expected)
            else:
                ok = value == expected
            if not ok:
                diff.problems.append(
                    f"{view.name} key={key!r} bucket={bucket} {m.name}: "
                    f"merged {value!r}, oracle {expected!r}"
                )
    return diff


def expected_rows(
    view: ViewDef, key: str, truth: Truth, answer: dict[str, Any], span: tuple[int, int]
) -> dict[int, Any]:
    """The oracle's rows over exactly the records a sampled answer claims to reflect."""
    cut = answer["cut_ms"]
    offsets = {int(p): o for p, o in answer["speed_offsets"].items()}
    covered = [
        acc.event
        for acc in truth.events.values()
        if (cut is not None and acc.ingest_ms < cut) or acc.offset < offsets.get(acc.partition, 0)
    ]
    rows = oracle.by_bucket(oracle.measures(view, covered), key)
    return {b: row for b, row in rows.items() if span[0] <= b < span[1]}


def check_samples(samples: list[Any], truth: Truth) -> list[str]:
    """Problems of answers sampled during the drill, each against its own provenance."""
    problems = []
    for sample in samples:
        got = {row["bucket_ms"]: row for row in sample.answer["merged"]}
        want = expected_rows(sample.view, sample.key, truth, sample.answer, sample.span)
        diff = compare(sample.view, sample.key, got, want)
        where = f"answer at +{sample.at:.1f}s (v{sample.answer['version']})"
        problems += [f"{where}: {p}" for p in diff.problems]
    return problems
