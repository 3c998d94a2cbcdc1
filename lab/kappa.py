"""The Kappa exercise: recompute by replaying the log through the streaming code.

Kappa drops the batch layer: the log is kept forever and a recomputation is a replay.
Here the replay feeds every record from offset 0 up to the speed layer's committed offsets
through the speed layer's own aggregation (``views.compute``), with bad records split off
and reported like every layer does (:mod:`lambdalab.deadletters`), and compares the result,
cell by cell, with the Lambda answer the serving layer gives (batch @ cut ⊕ realtime).
Both must be equal; the report also says what each way cost.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
from views.definition import ViewDef


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


def _with_dimensions(settings: Settings, view: ViewDef) -> tuple[ViewDef, dict[str, Any] | None]:
    """``view`` pinned to its dimensions' newest versions, and their rows (None: no enrich).

    The replay enriches as the speed layer does: from the versions the speed layer holds.
    """
    if not view.enrich:
        return view, None
    from speed.dimensions import DimensionTables
    from speed.store import connect

    pinned, tables = DimensionTables(settings, connect(settings)).pin({view.name: view})
    return pinned[view.name], tables


def compare(settings: Settings, view: ViewDef, served: ViewDef | None = None) -> KappaReport:
    """Replay the log for ``view`` and compare with the serving layer's merged answers.

    ``served`` is the definition the serving layer answers with (default ``view``): the
    lab's ``verify`` replays with the coded definition while a deployed one serves.
    """
    speed = SpeedReader(settings)
    until = speed.offsets(view.name)
    if not until:
        msg = "the speed layer has committed no offsets yet: run `lambdalab speed run --once`"
        raise LambdaLabError(msg)
    started = time.perf_counter()
    events = replay(settings, until, view.stream)
    view, tables = _with_dimensions(settings, view)
    cells: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for (_w, key, bucket), row in aggregate(view, events, settings.batch.window_s, tables).items():
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
            settings, batch, speed, served or view, key, (min(buckets), max(buckets) + width)
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

    Each kind decides what agreeing means (``Kind.close``): exact for count/sum/min/max;
    HLL estimates of a union may use another estimator than the replay's, so they must
    agree within two relative standard errors.
    """
    kinds = {kind.name: kind for kind in view.kinds}
    expected = {n: kind.render(want[n]) for n, kind in kinds.items()}
    actual = None if got is None else {n: got.get(n) for n in kinds}
    if actual is None or any(not k.close(actual[n], expected[n]) for n, k in kinds.items()):
        report.mismatches.append(
            {"key": key, "bucket_ms": bucket, "kappa": expected, "lambda": actual}
        )


# --- Kreps' recipe: a second instance from offset 0, then one atomic switch -------------

SWITCH_SCRIPT = """
-- KEYS: the switch, then per partition (n = ARGV[3]) the offsets hash of what serves now,
-- then per partition the replay's offsets hash
-- ARGV: the switch as read before (or ''), the new switch, n
local now = redis.call('GET', KEYS[1]) or ''
if now ~= ARGV[1] then return -1 end
local n = tonumber(ARGV[3])
for i = 1, n do
  local served = redis.call('HGET', KEYS[1 + i], 'next')
  local mine = redis.call('HGET', KEYS[1 + n + i], 'next')
  if served and (not mine or tonumber(mine) < tonumber(served)) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


@dataclass
class SwitchReport:
    """One replay of a view and its switch."""

    view: str
    output: str
    generation: int
    records: int
    caught_up_s: float
    switched_ms: int
    previous: str | None
    dropped: list[str] = field(default_factory=list)


def served_source(settings: Settings, view: ViewDef, previous: Any) -> str:
    """The source of what serves ``view`` now: the previous replay, or the speed layer."""
    if previous is not None:
        return str(previous.source)
    return settings.topic_for(view.stream)


def replay_and_switch(
    settings: Settings,
    view_name: str,
    *,
    grace_s: float = 5.0,
    follow: threading.Event | None = None,
    on_switch: Callable[[SwitchReport], None] | None = None,
    max_wait_s: float = 600.0,
) -> SwitchReport:
    """Replay ``view_name`` from offset 0 into a new output, switch serving to it atomically.

    1. A second instance of the speed consumer (:class:`speed.consumer.SpeedConsumer` with
       an ``output`` of its own) computes the view, under the name ``{view}__k{n}``, from
       the first offset of the log: no batch version has that name, so nothing is skipped
       or expired.
    2. Once its committed offsets reach those of what serves the view now (the previous
       replay, or the speed layer's for batch ⊕ realtime) on every partition, one Lua
       script checks that and sets the switch (``kappa:{view}``): no query sees an answer
       that reflects fewer records than the one before it. The script reads every
       partition's offsets, which lie in different hash slots: it runs on a single Redis,
       not on a Redis Cluster (CROSSSLOT) -- the replay is a lab exercise of one node.
    3. The previous replay's output stays ``grace_s`` seconds for queries that read the
       switch just before, and is then dropped (its consumer, if one still runs, is
       fenced out: its offsets are gone).
    4. With ``follow`` the new instance keeps consuming until that event is set, as the
       live job of the view; without it, it stops at the switch.
    """
    from lambdalab.paths import RedisKeys
    from speed.consumer import SpeedConsumer
    from speed.reader import KappaTarget
    from speed.store import connect
    from views.registry import get_view

    view = get_view(view_name)
    stream = get_stream(view.stream)
    client, keys = connect(settings), RedisKeys(settings)
    generation = int(client.incr(keys.kappa_generation(view_name)))
    output = f"{view_name}__k{generation}"
    out_view = replace(view, name=output)
    consumer = SpeedConsumer(settings, stream, views={output: out_view}, output=output)
    started = time.perf_counter()
    consumer.setup()  # no offsets of its own: a rebuild from the start of the log
    try:
        previous_raw = client.get(keys.kappa(view_name))
        previous = None if previous_raw is None else KappaTarget.parse(previous_raw)
        served = served_source(settings, view, previous)
        count = len(consumer.parts)
        served_keys = [keys.partition(served, p).offsets for p in range(count)]
        mine_keys = [consumer.store.part(p).offsets for p in range(count)]
        consumer.run(once=True)  # up to the end offsets seen at its start
        switched_ms = 0
        deadline = time.monotonic() + max_wait_s
        while True:
            switched_ms = int(time.time() * 1000)
            target = KappaTarget(output, generation, consumer.store.source, out_view, switched_ms)
            done = client.eval(
                SWITCH_SCRIPT,
                1 + 2 * count,
                keys.kappa(view_name),
                *served_keys,
                *mine_keys,
                previous_raw or b"",
                target.dump(),
                count,
            )
            if int(done) == 1:
                break
            if int(done) == -1:
                msg = f"view {view_name}: another replay switched it meanwhile; run again"
                raise LambdaLabError(msg)
            if time.monotonic() > deadline:
                msg = f"replay of {view_name} did not catch up within {max_wait_s:.0f}s"
                raise LambdaLabError(msg)
            consumer.step()
        report = SwitchReport(
            view_name,
            output,
            generation,
            consumer.applied,
            time.perf_counter() - started,
            switched_ms,
            previous.output if previous is not None else None,
        )
        if on_switch is not None:
            on_switch(report)
        if previous is not None:
            time.sleep(grace_s)
            drop_output(settings, previous.output, previous.source)
            report.dropped = [previous.output]
        if follow is not None:
            consumer.run(stop=follow)
        return report
    finally:
        consumer.close()


def back_to_lambda(settings: Settings, view_name: str, grace_s: float = 5.0) -> str | None:
    """Serve ``view_name`` from batch ⊕ realtime again; drop the replay after ``grace_s``."""
    from lambdalab.paths import RedisKeys
    from speed.reader import KappaTarget
    from speed.store import connect

    client, keys = connect(settings), RedisKeys(settings)
    raw = client.getdel(keys.kappa(view_name))
    if raw is None:
        return None
    target = KappaTarget.parse(raw)
    time.sleep(grace_s)
    drop_output(settings, target.output, target.source)
    return target.output


def drop_output(settings: Settings, output: str, source: str) -> int:
    """Delete a replay output's realtime keys, meta and offsets; how many keys went."""
    from lambdalab.paths import RedisKeys
    from speed.store import connect, drop_partition

    client, keys = connect(settings), RedisKeys(settings)
    count = int(client.get(keys.partitions(source)) or 0)
    dropped = sum(drop_partition(client, keys.partition(source, p), [output]) for p in range(count))
    client.delete(keys.partitions(source))
    return dropped + 1
