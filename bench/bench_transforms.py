"""Benchmark of transforms in the speed layer's hot loop: what a where/derive/enrich costs.

Same run, same events: ``views.compute.aggregate_timed`` of a plain view (key = url, count
and sum) against views that add a filter, derived fields and an enrichment, taking turns,
repeated REPEATS times. Reported per variant: the median time per event and its ratio to
the plain view's time in the same round (median and spread over the rounds). Pure Python,
no services.

Run: ``.venv/bin/python -m bench.bench_transforms [events]``.
"""

from __future__ import annotations

import statistics
import sys
import time

from rich.console import Console
from rich.table import Table

from lambdalab.schema import Field, parse_ts_ms
from tests.events import EventFactory
from views.compute import aggregate_timed
from views.definition import Derived, Enrich, Measure, ViewDef
from views.dimension import DIMENSIONS, Dimension, declare

REPEATS = 7
URLS = tuple(f"https://h{i % 20}.example/p/{i}?q={i}" for i in range(500))
MEASURES = (Measure("n", "count"), Measure("b", "sum", "bytes"))


def variants() -> dict[str, ViewDef]:
    """The plain view and the transformed ones, keyed by what they add."""

    def view(name: str, keys: tuple[str, ...], **transforms: object) -> ViewDef:
        return ViewDef(name, "pageviews", keys, 3600, MEASURES, **transforms)  # type: ignore[arg-type]

    return {
        "plain": view("plain", ("url",)),
        "where bytes > 100": view("w", ("url",), where="bytes > 100"),
        "derive lower(url_host(url))": view(
            "d", ("host",), derive=(Derived("host", "lower(url_host(url))"),)
        ),
        "enrich url -> campaign": view(
            "e", ("campaign",), enrich=(Enrich("bench_campaigns", "url", ("campaign",)),)
        ),
        "all three": view(
            "a",
            ("campaign", "host"),
            enrich=(Enrich("bench_campaigns", "url", ("campaign",)),),
            derive=(Derived("host", "lower(url_host(url))"), Derived("kb", "bytes // 1024")),
            where="referrer is not null and kb > 0",
        ),
    }


def main(count: int) -> None:
    """Time every variant over ``count`` events, REPEATS rounds, and print the table."""
    declare(Dimension("bench_campaigns", Field("url", "string"), (Field("campaign", "string"),)))
    tables = {"bench_campaigns": {u: (f"c{i % 9}",) for i, u in enumerate(URLS)}}
    make = EventFactory(seed=3, urls=URLS, referrers=(None, "g", "b"), sizes=(1, 9000))
    events = [make(at=1_795_590_000_000 + i * 10) for i in range(count)]
    timed = [(0, parse_ts_ms(str(e["event_time"])), e) for e in events]
    views = variants()
    seconds: dict[str, list[float]] = {name: [] for name in views}
    for _ in range(REPEATS):
        for name, view in views.items():
            started = time.perf_counter()
            aggregate_timed(view, timed, tables)
            seconds[name].append(time.perf_counter() - started)
    DIMENSIONS.pop("bench_campaigns", None)
    table = Table(title=f"transforms in the speed loop, {count} events, {REPEATS} rounds")
    for col in ("view", "ns/event (median)", "x plain (median)", "x plain (min-max)"):
        table.add_column(col)
    for name, runs in seconds.items():
        ratios = [a / b for a, b in zip(runs, seconds["plain"], strict=True)]
        table.add_row(
            name,
            f"{statistics.median(runs) / count * 1e9:.0f}",
            f"{statistics.median(ratios):.2f}",
            f"{min(ratios):.2f}-{max(ratios):.2f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
