"""Drills of the serving side: the API killed while queries run, and a cut that goes back."""

from __future__ import annotations

import random
import time
from typing import Any

import httpx
import pytest

from batch.publish import VersionStore
from lambdalab.settings import Settings
from tests.drills.drill import in_process, over_http
from tests.drills.harness import FULL, SKEW_S, WINDOW_S, free_port, jitter, wait_for
from tests.drills.verify import pool_keys
from views.registry import all_views

pytestmark = [pytest.mark.drill, pytest.mark.integration]


@pytest.fixture
def read_key(stack: Settings) -> str:
    return stack.api.read_keys[0]


def test_api_restart_while_queries_run(open_drill: Any, spark: Any, read_key: str) -> None:
    """``lambdalab serve`` is SIGKILLed and started again while a client keeps querying.

    Queries may fail while it is down; every answer before and after must be exact for
    the records it claims to reflect. Recover: from the new process's start until the
    first answer.
    """
    restarts = 3 if FULL else 1
    drill = open_drill(f"API restart x{restarts}")
    rng = random.Random(5)
    drill.speed()
    time.sleep(WINDOW_S + SKEW_S + 1)  # a whole window below the first cut
    drill.cycle(spark)  # answers carry a batch part
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = drill.spawn("api", "serve", "--port", str(port))
    wait_for(lambda: httpx.get(f"{base}/health", timeout=2).is_success, 60, "the API up")
    sampler = drill.sample(over_http(base, read_key))
    recover, outages = [], []
    for _ in range(restarts):
        jitter(rng, 2.0, 4.0)
        down_at = drill.now()
        api.kill()
        jitter(rng, 0.5, 2.0)
        up_at = drill.now()
        api.start()
        recover.append(wait_for(lambda t=up_at: sampler.answered_since(t), 60, "answers again"))
        outages.append((down_at, drill.now()))
    jitter(rng, 2.0, 3.0)
    outside = [f for f in sampler.failures if not any(f[0] <= b and f[1] >= a for a, b in outages)]
    drill.expect(not outside, f"queries failed while the API was up: {outside[:5]}")
    notes = [f"{len(sampler.failures)} queries failed while it was down"]
    drill.finish(spark, recover_s=max(recover), notes=notes)


def batch_parts(settings: Settings) -> dict[tuple[str, str], Any]:
    """Per (view, key): the version, cut and batch part of its merged answer now."""
    query, out = in_process(settings), {}
    now = int(time.time() * 1000)
    for view in all_views().values():
        span = (view.bucket_of(now - 86_400_000), view.bucket_of(now) + 2 * view.bucket_s * 1000)
        for key in sorted(pool_keys(view)):
            answer = query(view, key, span)
            out[(view.name, key)] = (answer["version"], answer["cut_ms"], answer["batch"])
    return out


def test_an_older_cut_is_refused(open_drill: Any, spark: Any) -> None:
    """``batch run --cut-ms C`` with an aligned C below the served cut must fail with a
    clear error and change nothing served: versions, lineage, the batch part of every
    answer. Tried one window back (data below it) and a day back (no data below it).
    Recover: nothing to recover; the slower refusal's run time is reported."""
    drill = open_drill("older cut refused")
    drill.speed()
    time.sleep(3 * WINDOW_S)
    cut = drill.cycle(spark)["cut_ms"]
    store = VersionStore(drill.settings)
    published = {view: store.published(view) for view in all_views()}
    parts = batch_parts(drill.settings)
    took = []
    for older in (cut - WINDOW_S * 1000, cut - 86_400_000):
        started = time.monotonic()
        refused = drill.cli("batch", "run", "--no-trino", "--cut-ms", str(older))
        took.append(time.monotonic() - started)
        said = " ".join((refused.stdout + refused.stderr).split())[-600:]
        drill.expect(
            refused.returncode == 1 and "cuts never go back" in said,
            f"`batch run --cut-ms {older}` (served cut {cut}) exited {refused.returncode} "
            f"without refusing: {said}",
        )
    now = {view: store.published(view) for view in all_views()}
    drill.expect(now == published, f"a refused cut changed the versions: {published} -> {now}")
    drill.expect(batch_parts(drill.settings) == parts, "a refused cut changed what is served")
    notes = [f"each `batch run --cut-ms` answered within {max(took):.1f} s"]
    drill.finish(spark, recover_s=0.0, notes=notes)
