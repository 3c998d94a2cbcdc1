"""``lambdalab lab report``: the lab's tradeoff as numbers measured on this machine.

One run measures, on the same generated events and the real services:

- **lines of code to maintain** per approach (two codebases, one definition, Kappa): the
  per-view code a team writes, and the platform code it relies on, counted without blank
  lines, comments or docstrings (:func:`code_lines`);
- **recompute and replay time as the history grows**, at several history sizes, each in a
  namespace of its own: *replay* is the real speed consumer reading the log from offset 0
  (no batch version exists yet, so it starts there), *recompute* is one batch cycle over
  the master dataset (landing first, untimed, so both read the same records);
- **freshness** p50/p99/max: probe events produced to Kafka under background load, until
  the merged answer of the serving layer's query code shows them;
- **drift found** by the two-codebase check (``lab drift``) over the same master files;
- **time from a fix to a correct answer** (recompute vs replay) when
  :mod:`lab.baddeploy` has run its scenario.

The table and a plot of cost against history size are written to docs/lab/report.md and
docs/lab/report-cost.svg with the date and the machine.
"""

from __future__ import annotations

import ast
import io
import os
import platform
import threading
import time
import tokenize
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VIEW = "pageviews_by_url_hourly"

# What each approach makes a team write and keep in step, for the lab's one view
# (page views per URL per hour), and the platform code each approach runs on.
APPROACHES: dict[str, dict[str, tuple[str, ...]]] = {
    "two codebases": {
        "per view": ("lab/handwritten/pageviews_batch.py", "lab/handwritten/pageviews_speed.py"),
        "platform": ("batch/archiver.py", "batch/publish.py", "speed/store.py", "serving/merge.py"),
    },
    "one definition": {
        "per view": ("examples/pageviews/views/pageviews_by_url_hourly.py",),
        "platform": (
            "views/definition.py",
            "views/compute.py",
            "batch/compile.py",
            "batch/build.py",
            "batch/archiver.py",
            "batch/publish.py",
            "speed/store.py",
            "serving/merge.py",
        ),
    },
    "Kappa": {
        "per view": ("examples/pageviews/views/pageviews_by_url_hourly.py",),
        "platform": ("views/definition.py", "views/compute.py", "speed/store.py", "lab/kappa.py"),
    },
}


def code_lines(path: Path) -> int:
    """Lines of ``path`` holding code: no blank lines, comments or docstrings."""
    source = path.read_text()
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                end = body[0].end_lineno or body[0].lineno
                docstrings.update(range(body[0].lineno, end + 1))
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT):
            continue
        if tok.type in (tokenize.DEDENT, tokenize.ENDMARKER):
            continue
        for line in range(tok.start[0], tok.end[0] + 1):
            if line not in docstrings:
                lines.add(line)
    return len(lines)


def loc_table(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """Approach -> {"per view": lines, "platform": lines}."""
    return {
        name: {part: sum(code_lines(root / p) for p in paths) for part, paths in parts.items()}
        for name, parts in APPROACHES.items()
    }


@dataclass
class SizePoint:
    """Recompute and replay of one history size, in a namespace of its own."""

    events: int
    replay_s: float
    recompute_s: float
    land_s: float
    namespace: str


@dataclass
class Freshness:
    """Probe latencies (ms) from produce to a merged answer that shows the probe."""

    probes: int
    background_rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class Report:
    """Everything ``lab report`` measured in one run."""

    date: str
    machine: dict[str, Any]
    loc: dict[str, dict[str, int]]
    sizes: list[SizePoint] = field(default_factory=list)
    freshness: Freshness | None = None
    drift_cells: int | None = None
    drift_records: int | None = None
    fix: dict[str, float] | None = None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "node": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


def scratch(settings: Any, tag: str) -> Any:
    """A settings copy in a namespace of its own, with a short ingest window."""
    return in_namespace(settings, f"{settings.namespace}_{tag}{uuid.uuid4().hex[:6]}"[:40])


def in_namespace(settings: Any, namespace: str) -> Any:
    """``settings`` in ``namespace`` with 2-second ingest windows (cuts after seconds)."""
    batch = settings.batch.model_copy(update={"window_s": 2, "clock_skew_s": 0})
    return settings.model_copy(update={"namespace": namespace, "batch": batch})


def generated(count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` events of the demo generator (late ones included), times ending now."""
    from ingest.generator import GeneratorConfig, generate

    start = datetime.now(UTC) - timedelta(seconds=count / 100.0)
    return [p.event for p in generate(GeneratorConfig(seed=seed), start, count=count)]


def measure_size(settings: Any, events: int, spark: Any) -> SizePoint:
    """Produce ``events``, replay them through the speed layer, recompute them in batch."""
    from batch.archiver import land
    from batch.tasks import run_cycle
    from ingest.producer import EventProducer
    from lambdalab.boundary import seconds_until_cut_covers
    from lambdalab.schema import PAGE_VIEWS
    from lambdalab.topics import ensure_topics
    from speed.consumer import catch_up

    s = scratch(settings, "r")
    ensure_topics(s)
    producer = EventProducer(s, PAGE_VIEWS)
    first_ms = int(time.time() * 1000)
    try:
        producer.send_many(generated(events, seed=events))
    finally:
        producer.close()
    started = time.perf_counter()
    catch_up(s, PAGE_VIEWS)  # no batch version yet: the speed layer starts at offset 0
    replay_s = time.perf_counter() - started
    time.sleep(seconds_until_cut_covers(s, first_ms, int(time.time() * 1000)))
    started = time.perf_counter()
    land(s, PAGE_VIEWS)
    land_s = time.perf_counter() - started
    started = time.perf_counter()
    result = run_cycle(s, land=False, trino=False, spark=spark)
    recompute_s = time.perf_counter() - started
    if not result.get("ok"):
        msg = f"the batch cycle of {events} events failed: {result}"
        raise RuntimeError(msg)
    return SizePoint(events, replay_s, recompute_s, land_s, s.namespace)


def measure_freshness(
    settings: Any, probes: int = 200, background_rate: float = 2000.0
) -> Freshness:
    """Probe latency through Kafka, the speed consumer and the merged query code."""
    from batch.reader import BatchReader
    from ingest.producer import EventProducer
    from lambdalab.schema import PAGE_VIEWS, format_ts
    from lambdalab.topics import ensure_topics
    from serving.query import merged_query
    from speed.consumer import SpeedConsumer
    from speed.reader import SpeedReader
    from views.registry import get_view

    s = scratch(settings, "f")
    ensure_topics(s)
    consumer = SpeedConsumer(s, PAGE_VIEWS)
    consumer.setup()
    stop = threading.Event()
    runner = threading.Thread(target=consumer.run, kwargs={"stop": stop}, daemon=True)
    runner.start()
    background = threading.Thread(target=_background, args=(s, background_rate, stop), daemon=True)
    background.start()
    view, batch, speed = get_view(VIEW), BatchReader(s), SpeedReader(s)
    producer = EventProducer(s, PAGE_VIEWS)
    latencies: list[float] = []
    try:
        for i in range(probes):
            now = datetime.now(UTC)
            url = f"/probe/{uuid.uuid4().hex}"
            hour = int(now.timestamp()) // 3600 * 3_600_000
            sent = time.perf_counter()
            producer.send_many(
                [
                    {
                        "event_id": f"probe-{i}-{uuid.uuid4().hex}",
                        "url": url,
                        "user_id": "prober",
                        "referrer": None,
                        "bytes": 1,
                        "event_time": format_ts(now),
                    }
                ]
            )
            while True:
                got = merged_query(s, batch, speed, view, url, (hour, hour + 3_600_000))
                if got["merged"]:
                    break
                if time.perf_counter() - sent > 30:
                    msg = f"probe {url} not seen in 30 s"
                    raise RuntimeError(msg)
                time.sleep(0.002)
            latencies.append((time.perf_counter() - sent) * 1000)
            time.sleep(0.02)
    finally:
        stop.set()
        runner.join(timeout=30)
        background.join(timeout=30)
        producer.close()
        consumer.close()
    return Freshness(
        probes,
        background_rate,
        round(percentile(latencies, 0.5), 1),
        round(percentile(latencies, 0.99), 1),
        round(max(latencies), 1),
    )


def _background(settings: Any, rate: float, stop: threading.Event) -> None:
    from ingest.producer import EventProducer
    from lambdalab.schema import PAGE_VIEWS

    producer = EventProducer(settings, PAGE_VIEWS)
    events = generated(50_000, seed=7)
    per_tick, i = max(1, int(rate / 20)), 0
    try:
        while not stop.is_set():
            tick = time.monotonic()
            chunk = [events[(i + k) % len(events)] for k in range(per_tick)]
            producer.send_many(chunk)
            i += per_tick
            time.sleep(max(0.0, 0.05 - (time.monotonic() - tick)))
    finally:
        producer.close()


def measure_drift(settings: Any) -> tuple[int, int]:
    """(differing cells, records read) of the two hand-written copies over ``settings``."""
    from lab.drift import check

    drift = check(settings)
    return len(drift.differences), drift.records


def measure_fix(settings: Any, spark: Any) -> dict[str, float]:
    """Seconds from the fix of a bad deploy to correct answers: recompute vs replay.

    In ``settings``'s namespace (a history of its own, nothing arriving meanwhile): the
    answers before the bad deploy are the reference; each recovery ends when the served
    answers equal them again (checked). Deployed definitions go to a private folder, so
    the platform's own processes never see the bug.
    """
    import tempfile

    from batch.reader import BatchReader
    from batch.tasks import run_cycle
    from lab import baddeploy, kappa
    from lambdalab.schema import PAGE_VIEWS
    from lambdalab.settings import get_settings
    from serving.query import merged_cells
    from speed.consumer import catch_up
    from speed.reader import SpeedReader
    from views.registry import get_view

    def answers() -> Any:
        parts, _prov = merged_cells(
            settings,
            BatchReader(settings),
            SpeedReader(settings),
            get_view(VIEW),
            (0, 2**53),
            lambda _k: True,
        )
        return parts_total(parts)

    saved = os.environ.get("LAMBDALAB_PATHS__DEPLOYED_DIR")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["LAMBDALAB_PATHS__DEPLOYED_DIR"] = folder
        get_settings.cache_clear()
        try:
            reference = answers()
            baddeploy.deploy_buggy(VIEW)
            catch_up(settings, PAGE_VIEWS)
            run_cycle(settings, land=False, trino=False, spark=spark, views=[VIEW])
            if answers() == reference:
                msg = "the bad deploy changed no answer: nothing to recover"
                raise RuntimeError(msg)
            baddeploy.fix(VIEW)
            started = time.perf_counter()
            catch_up(settings, PAGE_VIEWS)  # the restarted speed layer rebuilds its windows
            run_cycle(settings, land=False, trino=False, spark=spark, views=[VIEW])
            recompute_s = time.perf_counter() - started
            _check(answers(), reference, "recompute")
            baddeploy.deploy_buggy(VIEW)
            kappa.replay_and_switch(settings, VIEW, grace_s=0.0)
            baddeploy.fix(VIEW)
            started = time.perf_counter()
            kappa.replay_and_switch(settings, VIEW, grace_s=0.0)
            replay_s = time.perf_counter() - started
            _check(answers(), reference, "replay")
            kappa.back_to_lambda(settings, VIEW, grace_s=0.0)
        finally:
            if saved is None:
                os.environ.pop("LAMBDALAB_PATHS__DEPLOYED_DIR", None)
            else:
                os.environ["LAMBDALAB_PATHS__DEPLOYED_DIR"] = saved
            get_settings.cache_clear()
    return {"recompute (Lambda)": recompute_s, "replay (Kappa)": replay_s}


def parts_total(parts: list[Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """The merged cells of a many-key read, (key, bucket) -> measures (no HLL in VIEW)."""
    from views.compute import combine
    from views.registry import get_view

    view = get_view(VIEW)
    rows: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for part in parts:
        for key, buckets in part.items():
            for bucket, row in buckets.items():
                rows.setdefault((key, bucket), []).append(row)
    return {cell: combine(view, found) for cell, found in rows.items()}


def _check(got: Any, want: Any, how: str) -> None:
    if got != want:
        msg = f"after the {how} recovery the answers still differ from before the bad deploy"
        raise RuntimeError(msg)


def run(
    settings: Any,
    sizes: Iterable[int] = (20_000, 40_000, 80_000),
    probes: int = 200,
    progress: Callable[[str], None] = print,
) -> Report:
    """Measure everything; the caller writes it with :func:`write`."""
    from batch.spark import spark_session

    report = Report(datetime.now(UTC).isoformat(timespec="seconds"), machine(), loc_table())
    spark = spark_session(settings, app_name="lambdalab-lab-report")
    progress("warm-up: one small history through both layers (not reported)")
    measure_size(settings, 1000, spark)  # the JVM's first jobs: class loading, JIT
    for n in sizes:
        progress(f"history of {n} events: replay through the speed layer, batch recompute")
        point = measure_size(settings, n, spark)
        report.sizes.append(point)
        progress(f"  replay {point.replay_s:.2f}s, recompute {point.recompute_s:.2f}s")
    if report.sizes:
        progress("drift between the two hand-written copies over the largest history")
        largest = report.sizes[-1]
        s = in_namespace(settings, largest.namespace)
        report.drift_cells, report.drift_records = measure_drift(s)
        progress("a bad deploy, fixed: time to correct answers by recompute and by replay")
        report.fix = measure_fix(s, spark)
    progress(f"freshness: {probes} probes under background load")
    report.freshness = measure_freshness(settings, probes)
    return report


def render(report: Report) -> str:
    """The report as Markdown: the table the lab refers to."""
    out = [
        "# The lab, measured",
        "",
        f"Generated by `lambdalab lab report` on {report.date}, machine "
        f"`{report.machine['node']}` ({report.machine['cpus']} CPUs, "
        f"{report.machine['system']}, Python {report.machine['python']}). Every figure below "
        "was measured in that one run on the real services; rerun the command to measure "
        "your own machine.",
        "",
        "## Lines of code to maintain",
        "",
        "Code lines (no blank lines, comments or docstrings) a team writes for the lab's view "
        "(page views per URL per hour), and the platform code each approach runs on.",
        "",
        "| approach | per view | platform |",
        "|---|---:|---:|",
    ]
    for name, parts in report.loc.items():
        out.append(f"| {name} | {parts['per view']} | {parts['platform']} |")
    out += [
        "",
        "## Recompute and replay as the history grows",
        "",
        "Replay: the speed consumer reading the log from offset 0 into Redis (Kappa's "
        "recomputation). Recompute: one batch cycle building every default view from the "
        "master dataset (Lambda's), in a Spark session started and warmed up (one small history "
        "through both layers) before the clock runs; landing is timed apart.",
        "",
        "| events | replay (s) | recompute (s) | landing (s) | replay events/s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for p in report.sizes:
        rate = p.events / p.replay_s if p.replay_s else 0.0
        out.append(
            f"| {p.events:,} | {p.replay_s:.2f} | {p.recompute_s:.2f} | {p.land_s:.2f} "
            f"| {rate:,.0f} |"
        )
    out += ["", "![cost against history size](report-cost.svg)", ""]
    if report.freshness is not None:
        f = report.freshness
        out += [
            "## Freshness",
            "",
            f"{f.probes} probe events produced to Kafka one at a time under "
            f"{f.background_rate:,.0f} events/s of background load; the latency is until the "
            "serving layer's merged query shows the probe.",
            "",
            "| p50 (ms) | p99 (ms) | max (ms) |",
            "|---:|---:|---:|",
            f"| {f.p50_ms} | {f.p99_ms} | {f.max_ms} |",
            "",
        ]
    if report.drift_cells is not None:
        out += [
            "## Drift found",
            "",
            f"The two hand-written copies over {report.drift_records:,} master-dataset records "
            f"of the largest history: {report.drift_cells} differing cells.",
            "",
        ]
    if report.fix is not None:
        out += [
            "## From a fix to a correct answer",
            "",
            "The lab's bad deploy (`lambdalab lab deploy VIEW --buggy`: a min computed as max) "
            "over the largest history, then the fix. Recompute: the restarted speed layer "
            "rebuilds its windows and one batch cycle rebuilds the view from the master "
            "dataset. Replay: `lab replay` from offset 0 and the switch. Each ends when the "
            "served answers equal those before the bad deploy (checked).",
            "",
            "| recovery | seconds |",
            "|---|---:|",
            *(f"| {k} | {v:.2f} |" for k, v in report.fix.items()),
            "",
        ]
    return "\n".join(out)


def svg(report: Report, width: int = 560, height: int = 300) -> str:
    """A line plot of replay and recompute seconds against the number of events."""
    pad = 50
    xs = [p.events for p in report.sizes] or [1]
    top = max([p.replay_s for p in report.sizes] + [p.recompute_s for p in report.sizes] + [1.0])
    x_max = max(xs)

    def point(events: int, seconds: float) -> str:
        x = pad + (width - 2 * pad) * events / x_max
        y = height - pad - (height - 2 * pad) * seconds / top
        return f"{x:.1f},{y:.1f}"

    lines = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="black"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
        f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">events in history '
        f"(max {x_max:,})</text>",
        f'<text x="12" y="{pad - 12}">seconds (max {top:.1f})</text>',
    ]
    for name, colour, attr in (
        ("replay (Kappa)", "#d62728", "replay_s"),
        ("recompute (Lambda)", "#1f77b4", "recompute_s"),
    ):
        pts = " ".join(point(p.events, getattr(p, attr)) for p in report.sizes)
        lines.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for p in report.sizes:
            x, y = point(p.events, getattr(p, attr)).split(",")
            lines.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>')
        offset = 20 if attr == "replay_s" else 36
        lines.append(f'<text x="{pad + 10}" y="{pad + offset}" fill="{colour}">{name}</text>')
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


def write(report: Report, out_dir: Path) -> Path:
    """Write report.md, report-cost.svg and report.json into ``out_dir``; the .md path."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report-cost.svg").write_text(svg(report))
    (out_dir / "report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    path = out_dir / "report.md"
    path.write_text(render(report) + "\n")
    return path
