"""Luigi's central scheduler: the stack's luigid, and two batch loops coordinating through it.

Each test module starts its own luigid from the stack's service definition
(``infra.services.luigid``) on a spare loopback port with a state dir of its own, and stops
it after: the shared stack's luigid is never touched. Two ``run_cycle``s of one namespace
run side by side against it; every task runs once (one Spark build per view, counted
where the build is called, and one published version per view), and the published
version equals the oracle (tests/oracle.py, plain Python over the same events).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from batch import archiver, tasks
from batch.build import Plan
from batch.publish import VersionStore
from batch.reader import BatchReader
from batch.tasks import BatchContext, run_cycle, run_tasks
from infra import health, services
from infra.services import Layout
from ingest.producer import EventProducer
from lambdalab.boundary import cut_at
from lambdalab.paths import MasterFile
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.topics import end_offsets, ensure_topics
from lambdalab.wait import wait_until
from tests import oracle
from tests.events import EventFactory
from tests.twoparts import in_two_loops, short_windows
from views.definition import ViewDef
from views.registry import get_view

VIEWS = ("pageviews_by_url_hourly", "bytes_by_referrer_daily")
T0 = 1_772_359_200_000  # 2026-03-01T10:00:00Z: event times; ingest times are the broker's


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_scheduler(settings: Settings, url: str) -> Settings:
    return settings.model_copy(
        update={"luigi": settings.luigi.model_copy(update={"scheduler_url": url})}
    )


@contextmanager
def luigid_process(settings: Settings, state_dir: Path) -> Iterator[Settings]:
    """The stack's luigid service, started alone on a spare port; settings pointing at it."""
    url = f"http://127.0.0.1:{spare_port()}"
    paths = settings.paths.model_copy(update={"state_dir": state_dir})
    own = with_scheduler(settings, url).model_copy(update={"paths": paths})
    svc = services.luigid(own, Layout(own))
    with (state_dir / "luigid.log").open("wb") as log:
        proc = subprocess.Popen(
            svc.command, env={**os.environ, **svc.env}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until(
            lambda: health.check_luigid(own),
            timeout_s=30,
            interval_s=0.2,
            what=f"luigid on {url}",
            retry_on=(Exception,),
        )
        yield own
    finally:
        proc.send_signal(signal.SIGTERM)  # luigid pickles its state on SIGTERM
        proc.wait(timeout=20)


def task_list(settings: Settings, status: str) -> dict[str, dict[str, Any]]:
    """luigid's tasks in ``status``, through its HTTP API (what its UI shows)."""
    resp = httpx.get(
        f"{settings.luigi.scheduler_url}/api/task_list",
        params={"data": json.dumps({"status": status})},
        timeout=10,
    )
    resp.raise_for_status()
    return dict(resp.json()["response"])


@pytest.fixture(scope="module")
def scheduler(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with luigid_process(stack, tmp_path_factory.mktemp("luigid")) as own:
        yield own


@pytest.fixture(scope="module")
def spark(stack: Settings) -> Iterator[Any]:
    from batch.spark import spark_session

    session = spark_session(stack, app_name="test-luigid")
    yield session
    session.stop()


def test_the_stack_service_starts_alone_keeps_state_and_history(
    stack: Settings, tmp_path: Path
) -> None:
    with luigid_process(stack, tmp_path) as own:
        assert health.check_luigid(own).startswith("API ok, 0 task(s) running")
        for page in ("/static/visualiser/index.html", "/history"):  # the UI and its history
            assert httpx.get(f"{own.luigi.scheduler_url}{page}", timeout=10).status_code == 200
    data = tmp_path / "data" / "luigid"
    assert (data / "state.pickle").stat().st_size > 0
    assert (data / "task-history.db").stat().st_size > 0


def served(settings: Settings, view: ViewDef) -> dict[tuple[str, int], dict[str, Any]]:
    reader = BatchReader(settings)
    info = reader.current(view.name)
    assert info is not None
    table = reader.cells(view.name, info.version, -(2**62), 2**62)
    return {
        (key, bucket): {m.name: row[m.name] for m in view.measures}
        for key, buckets in table.items()
        for bucket, row in buckets.items()
    }


def landed(ns: Settings, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``events`` sent through the platform's producer and landed; returned for the oracle.

    A 1 s window boundary passes before landing, so a cut taken now covers every event.
    """
    ensure_topics(ns)
    producer = EventProducer(ns, PAGE_VIEWS)
    try:
        producer.send_many(events)
    finally:
        producer.close()
    time.sleep(1.2)
    archiver.land(ns, PAGE_VIEWS, until=end_offsets(ns, ns.topic_for(PAGE_VIEWS.name)))
    return events


def test_two_loops_run_each_task_once_through_luigid(
    scheduler: Settings, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[str] = []
    real_build = tasks.build

    def counted(settings: Settings, spark: Any, p: Plan, *args: Any, **kw: Any) -> Any:
        builds.append(p.view.name)
        return real_build(settings, spark, p, *args, **kw)

    monkeypatch.setattr(tasks, "build", counted)
    with short_windows(scheduler) as ns:
        make = EventFactory(seed=14, users=30, referrers=(None, "google", "news"))
        events = landed(ns, [make(at=T0 + i * 97_000) for i in range(300)])
        cut = cut_at(ns, int(time.time() * 1000))  # one cut for both loops: one fingerprint
        reports = in_two_loops(
            lambda: run_cycle(
                ns, cut_ms=cut, land=False, trino=False, views=list(VIEWS), spark=spark
            ),
            timeout_s=600,
        )
        assert set(reports) == {"a", "b"}, "a loop raised or hung"
        assert all(r["ok"] for r in reports.values()), [r["summary"] for r in reports.values()]
        assert sorted(builds) == sorted(VIEWS), "each view's version built exactly once"
        store = VersionStore(ns)
        done = task_list(ns, "DONE")
        for name in VIEWS:
            view = get_view(name)
            assert store.published(name) == [1], "published once, not once per loop"
            assert {r["views"][name]["version"] for r in reports.values()} == {1}
            fingerprint = reports["a"]["views"][name]["fingerprint"]
            build_tasks = [
                t
                for t in done.values()
                if t["name"] == "BuildVersion" and t["params"]["fingerprint"] == fingerprint
            ]
            assert len(build_tasks) == 1 and len(build_tasks[0]["workers"]) == 2, build_tasks
            assert served(ns, view) == oracle.measures(view, events)


def test_a_failed_task_is_listed_failed_by_luigid_and_fails_both_loops(
    scheduler: Settings, spark: Any, base_settings: Settings
) -> None:
    with short_windows(scheduler) as ns:
        view = get_view(VIEWS[0])
        store = VersionStore(ns)
        missing = MasterFile(T0, 0, 10**9, 10**9 + 1)  # a master file that does not exist
        gone = f"{store.paths.master(PAGE_VIEWS.name)}/{missing.date_dir}/{missing.name}"
        plan = Plan(view, T0 + 3_600_000, [(gone, missing)])
        results = in_two_loops(
            lambda: run_tasks(
                BatchContext(ns, store, {view.name: plan}, trino=False, spark_session=spark)
            ),
            timeout_s=300,
        )
        assert set(results) == {"a", "b"}, "a loop raised or hung"
        assert not any(r["ok"] for r in results.values()), "the failure is not hidden"
        failed = task_list(ns, "FAILED")
        ours = [
            t
            for t in failed.values()
            if t["name"] == "BuildVersion" and t["params"]["fingerprint"] == plan.fingerprint
        ]
        assert len(ours) == 1, failed
        assert store.published(view.name) == []


def test_a_build_keeps_the_staging_dir_of_another_loops_running_build(
    scheduler: Settings, spark: Any
) -> None:
    """Two loops at different cuts build two versions of one view side by side.

    The second loop's build cleans the view's stale staging dirs first; the first loop's
    dir, named by the fingerprint of a BuildVersion luigid shows RUNNING, must survive it,
    while a dir no running task names (a killed run's) goes.
    """
    from luigi.rpc import RemoteScheduler

    with short_windows(scheduler) as ns:
        name = VIEWS[0]
        make = EventFactory(seed=15, users=10, referrers=(None, "news"))
        events = landed(ns, [make(at=T0 + i * 61_000) for i in range(50)])
        store = VersionStore(ns)
        root = store.paths.staging(name)
        other, stale = f"{root}/{'a' * 16}-otherloop", f"{root}/{'b' * 16}-killedrun"
        for path in (other, stale):
            store.client.makedirs(f"{path}/data")
        remote: Any = RemoteScheduler(ns.luigi.scheduler_url)  # its RPCs are made at run time
        other_build = functools.partial(
            remote.add_task,
            worker="another-loop",
            task_id=f"BuildVersion_{ns.namespace}_other",
            family="BuildVersion",
            params={"view": name, "fingerprint": "a" * 16},
        )
        other_build(status="RUNNING", runnable=True)
        try:
            report = run_cycle(
                ns,
                cut_ms=cut_at(ns, int(time.time() * 1000)),
                land=False,
                trino=False,
                views=[name],
                spark=spark,
            )
        finally:
            other_build(status="DONE")
        assert report["ok"], report["summary"]
        assert store.published(name) == [1]
        left = set(store._list(root))
        assert other.rsplit("/", 1)[1] in left, "another loop's running build lost its dir"
        assert stale.rsplit("/", 1)[1] not in left, "a killed run's dir was not cleaned"
        assert served(ns, get_view(name)) == oracle.measures(get_view(name), events)
