"""Drills that SIGKILL the platform's own processes: speed consumer, batch run, archivers.

Each kill lands at a moment the process does not choose: a random moment of the speed
consumer's loop, a deterministic kill point inside a batch run (``LAMBDALAB_BATCH_PAUSE_AT``
in ``batch/publish.py``), a random moment of one of two racing archivers.
"""

from __future__ import annotations

import random
import statistics
import time
from functools import partial
from typing import Any

import pytest

from batch.publish import PAUSE_ENV, VersionStore
from lambdalab.hdfs import webhdfs
from lambdalab.paths import HdfsPaths
from lambdalab.settings import Settings
from tests.drills.drill import in_process
from tests.drills.harness import FULL, WINDOW_S, consumed, jitter, landed, log_end, wait_for
from views.registry import all_views

pytestmark = pytest.mark.drill


def served(settings: Settings) -> dict[str, Any]:
    """Per view: the published versions and the newest one's lineage (what is served)."""
    store = VersionStore(settings)
    out = {}
    for view in all_views():
        numbers = store.published(view)
        out[view] = (numbers, store.lineage(view, numbers[0]) if numbers else None)
    return out


def staging_left(settings: Settings) -> dict[str, list[str]]:
    """Staging directories still on HDFS, per view (a clean cycle removes a killed run's)."""
    client, paths = webhdfs(settings), HdfsPaths(settings)
    left = {}
    for view in all_views():
        if client.status(paths.staging(view), strict=False) is not None:
            left[view] = client.list(paths.staging(view))
    return {view: names for view, names in left.items() if names}


def caught_up(settings: Settings, held: int, target: int) -> bool:
    """The restarted consumer committed (its offsets moved past ``held``) and reached ``target``."""
    done = consumed(settings)
    return done > held and done >= target


@pytest.mark.integration
def test_speed_layer_sigkill(open_drill: Any, spark: Any) -> None:
    """Recover: from the restart until the new consumer has committed and its offsets reach
    the log's end offsets as they were at the kill (the worst of all kills)."""
    kills = 10 if FULL else 2
    drill = open_drill(f"speed SIGKILL x{kills}")
    rng = random.Random(10)
    speed = drill.speed()
    recover = []
    for _ in range(kills):
        before = consumed(drill.settings)
        wait_for(lambda b=before: consumed(drill.settings) > b, 60, "speed layer committing")
        jitter(rng, 0.0, 2.5)
        speed.kill()
        target, held = log_end(drill.settings), consumed(drill.settings)
        speed.start()
        done = partial(caught_up, drill.settings, held, target)
        recover.append(wait_for(done, 120, "the restarted consumer caught up"))
    notes = [f"mean {statistics.mean(recover):.1f} s over {kills} restarts"]
    drill.finish(spark, recover_s=max(recover), notes=notes)


def test_batch_sigkill_during_build_and_publish(open_drill: Any, spark: Any) -> None:
    """Recover: from the SIGKILL until the next clean ``batch run`` has published a new
    version of every view (a Spark start included). Four Spark runs: not in ``make test``."""
    drill = open_drill("batch SIGKILL build+publish")
    drill.speed()
    time.sleep(2 * WINDOW_S)
    drill.cycle(spark)  # a served version the killed runs must leave alone
    sampler = drill.sample(in_process(drill.settings))
    recover = []
    for n, point in enumerate(("build", "before-swap")):
        before = served(drill.settings)
        pause = {PAUSE_ENV: point}
        run = drill.spawn(
            f"batch-{n}-{point}", "batch", "run", "--no-trino", supervised=False, **pause
        )
        run.wait_for_output(f"PAUSED {point}", timeout_s=300)
        run.kill()
        killed_at = time.monotonic()
        drill.expect(served(drill.settings) == before, f"a run killed at {point} changed it")
        clean = drill.cli("batch", "run", "--no-trino")
        recover.append(time.monotonic() - killed_at)
        said = (clean.stdout + clean.stderr)[-2000:]
        drill.expect(clean.returncode == 0, f"the clean cycle after {point} failed: {said}")
        after = served(drill.settings)
        drill.expect(
            all(after[v][0][0] > before[v][0][0] for v in after),
            f"the clean cycle after a kill at {point} published no new version",
        )
        left = staging_left(drill.settings)
        drill.expect(not left, f"staging dirs left after the clean cycle: {left}")
    notes = [f"{len(sampler.failures)} of the answers asked meanwhile failed"]
    drill.finish(spark, recover_s=max(recover), notes=notes)


@pytest.mark.integration
def test_two_archivers_and_sigkill(open_drill: Any, spark: Any) -> None:
    """Two ``land --follow`` on two state directories (no shared lock) race on every
    partition; one of them is SIGKILLed at random moments and restarted. Recover: from the
    kill until the master dataset covers the log's end offsets as they were at the kill."""
    kills = 4 if FULL else 1
    drill = open_drill(f"two archivers + SIGKILL x{kills}")
    rng = random.Random(3)
    archivers = [
        drill.archiver(f"archiver-{side}", LAMBDALAB_PATHS__STATE_DIR=str(drill.workdir / side))
        for side in ("a", "b")
    ]
    wait_for(lambda: landed(drill.settings) > 0, 60, "archivers landing")
    recover = []
    for n in range(kills):
        jitter(rng, 0.5, 4.0)
        victim = archivers[n % 2]
        victim.kill()
        target = log_end(drill.settings)
        recover.append(wait_for(lambda t=target: landed(drill.settings) >= t, 120, "landed"))
        victim.start()
    jitter(rng, 2.0, 4.0)  # both race again before the end

    def claims_lost() -> list[str]:
        lost = sum(a.output().count("another archiver committed") for a in archivers)
        return [f"{lost} claims lost to the other archiver"]

    drill.finish(spark, recover_s=max(recover), notes_after=claims_lost)
