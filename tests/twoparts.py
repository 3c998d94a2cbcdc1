"""The shared setup of the many-key query tests: a two-field view, batch part + speed part.

``tests/integration/test_queries.py`` (``/rows``, ``/keys``) and ``test_sql_merged.py``
(``POST /sql/merged``) check different query forms over the same shape of data: events A
built into batch version 1 (cut after A), events B after the cut, so only the speed layer
has them. Each module registers its own view (:func:`view_def`) in a namespace with
1-second ingest windows (:func:`short_windows`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from batch.tasks import run_cycle
from ingest.producer import EventProducer
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.topics import ensure_topics
from speed.consumer import catch_up
from tests.events import EventFactory
from tests.namespaces import namespace
from views import registry
from views.definition import Measure, ViewDef

HOUR = 3_600_000
T0 = 1_772_359_200_000  # 2026-03-01T10:00:00Z


def view_def(name: str) -> ViewDef:
    """A view keyed by (url, referrer) with every measure kind."""
    return ViewDef(
        name=name,
        stream="pageviews",
        keys=("url", "referrer"),
        bucket_s=3600,
        measures=(
            Measure("views", "count"),
            Measure("total", "sum", "bytes"),
            Measure("low", "min", "bytes"),
            Measure("high", "max", "bytes"),
            Measure("visitors", "hll", "user_id"),
        ),
    )


def events(seed: int, n: int, prefix: str) -> list[dict[str, Any]]:
    """``n`` events over three hours from T0: hostile urls and referrers, sums beyond int64."""
    make = EventFactory(
        seed=seed,
        urls=("/p/1", "/p/10", "/p/2", "/q", "(none)"),
        users=15,
        referrers=(None, "google", "(none)"),
        sizes=(0, 2**62),  # sums beyond int64
        id_prefix=prefix,
    )
    return [make(at=T0 + (i * 7_919_000) % (3 * HOUR)) for i in range(n)]


@contextmanager
def short_windows(stack: Settings) -> Iterator[Settings]:
    """A fresh namespace with 1-second ingest windows and no clock skew."""
    batch = stack.batch.model_copy(update={"window_s": 1, "clock_skew_s": 0})
    with namespace(stack, batch=batch) as fresh:
        yield fresh


@contextmanager
def registered(view: ViewDef) -> Iterator[ViewDef]:
    """``view`` registered beside the coded views while the block runs."""
    import pytest

    known = registry.all_views()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "all_views", lambda: {**known, view.name: view})
        yield view


def load(
    ns: Settings, view: ViewDef, spark: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(events A, events B, the cut): A in batch version 1, B only in the speed layer."""
    ensure_topics(ns)
    before, after = events(1, 90, "a"), events(2, 60, "b")
    producer = EventProducer(ns, PAGE_VIEWS)
    try:
        producer.send_many(before)
        time.sleep(1.2)  # the next 1 s window boundary passes: the cut covers `before`
        report = run_cycle(ns, trino=False, views=[view], spark=spark)
        assert report["ok"], report
        producer.send_many(after)  # after the cycle's snapshot: ingest time >= its cut
    finally:
        producer.close()
    catch_up(ns, PAGE_VIEWS, views={view.name: view})
    return before, after, int(report["cut_ms"])


def in_two_loops(run: Callable[[], dict[str, Any]], timeout_s: float) -> dict[str, dict[str, Any]]:
    """``run()`` in two threads at once, as two batch loops "a" and "b"; results by loop.

    A loop that raised or did not finish within ``timeout_s`` has no result.
    """
    results: dict[str, dict[str, Any]] = {}

    def loop(name: str) -> None:
        results[name] = run()

    threads = [threading.Thread(target=loop, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout_s)
    return results
