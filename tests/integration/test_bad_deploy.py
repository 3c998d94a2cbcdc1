"""Human fault tolerance on the real stack: a buggy view deployed, served, fixed, recovered.

The buggy version (``lab.baddeploy.buggy``: a ``min`` computed as ``max``) goes into
production through the view registry; the merged answers then equal an oracle run with
the *buggy* definition and differ from the oracle of the coded one. After the fix, the
Lambda recovery (a restarted speed consumer rebuilds its windows, the next batch cycle
recomputes from the master dataset) ends equal to the oracle of the coded definition,
and the raw data (every master file, every partition's log start) never changed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch.reader import BatchReader
from batch.tasks import run_cycle
from ingest.producer import EventProducer
from lab import baddeploy, kappa
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings, get_settings
from serving.query import merged_query
from speed.consumer import catch_up
from speed.reader import SpeedReader
from tests import oracle
from tests.answers import served
from tests.events import EventFactory
from views.registry import coded_views, get_view

VIEW = "pageviews_by_url_hourly"


@pytest.fixture
def deployed_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Deployed definitions in a folder of this test's own (never the stack's)."""
    folder = tmp_path / "deployed"
    monkeypatch.setenv("LAMBDALAB_PATHS__DEPLOYED_DIR", str(folder))
    get_settings.cache_clear()
    try:
        yield folder
    finally:
        get_settings.cache_clear()


def test_bad_deploy_then_lambda_recovery(
    stack: Settings, settings: Settings, make_event: EventFactory, deployed_dir: Path
) -> None:
    settings = settings.model_copy(
        update={"batch": settings.batch.model_copy(update={"window_s": 2, "clock_skew_s": 0})}
    )
    make = make_event.configured(
        urls=tuple(f"/bd{i}" for i in range(5)), sizes=(1, 999), late_fraction=0.2
    )
    producer = EventProducer(settings, PAGE_VIEWS)
    events = make.many(300)
    producer.send_many(events)
    time.sleep(2.5)
    catch_up(settings, PAGE_VIEWS)
    assert run_cycle(settings, trino=False)["ok"]
    before = baddeploy.raw_fingerprint(settings, PAGE_VIEWS.name)
    coded = coded_views()[VIEW]
    keys = sorted({coded.key_of(e) for e in events})

    bad = baddeploy.deploy_buggy(VIEW)
    assert get_view(VIEW) == bad and bad.fingerprint != coded.fingerprint
    more = make.many(200)
    producer.send_many(more)
    time.sleep(2.5)
    catch_up(settings, PAGE_VIEWS)  # a consumer started after the deploy: rebuilt with the bug
    cycle = run_cycle(settings, trino=False)
    assert cycle["views"][VIEW]["status"] == "published"
    tail = make.many(150)  # after the buggy version's cut: only the speed layer has them
    producer.send_many(tail)
    catch_up(settings, PAGE_VIEWS)
    everything = events + more + tail
    wrong = served(settings, bad, keys)
    assert wrong == oracle.measures(bad, everything)  # what is served is the buggy code
    assert wrong != oracle.measures(coded, everything)  # ... and it is visibly wrong

    assert baddeploy.fix(VIEW)
    assert get_view(VIEW) == coded
    time.sleep(2.5)  # the tail's ingest window closes: the recompute's cut covers it
    catch_up(settings, PAGE_VIEWS)  # the fixed consumer rebuilds its windows
    cycle = run_cycle(settings, trino=False)  # recompute from the master dataset
    assert cycle["views"][VIEW]["status"] == "published"
    last = make.many(100)
    producer.send_many(last)
    producer.close()
    catch_up(settings, PAGE_VIEWS)
    everything += last
    assert served(settings, coded, keys) == oracle.measures(coded, everything)
    assert baddeploy.untouched(before, baddeploy.raw_fingerprint(settings, PAGE_VIEWS.name)) == []

    # the same bug, recovered the Kappa way: replays of the log through the streaming code
    baddeploy.deploy_buggy(VIEW)
    first = kappa.replay_and_switch(settings, VIEW, grace_s=0.2)
    assert served(settings, bad, keys) == oracle.measures(bad, everything)
    assert baddeploy.fix(VIEW)
    second = kappa.replay_and_switch(settings, VIEW, grace_s=0.2)
    assert (second.previous, second.output) == (first.output, f"{VIEW}__k2")
    fixed = served(settings, coded, keys)
    assert fixed == oracle.measures(coded, everything)
    answer = merged_query(
        settings, BatchReader(settings), SpeedReader(settings), coded, keys[0], (0, 2**53)
    )
    assert answer["kappa"]["output"] == second.output and answer["version"] is None
    assert baddeploy.untouched(before, baddeploy.raw_fingerprint(settings, PAGE_VIEWS.name)) == []


def test_a_definition_changed_back_is_published_again(
    stack: Settings, settings: Settings, make_event: EventFactory, deployed_dir: Path
) -> None:
    """The fix restores an earlier fingerprint: the next cycle must still make it current.

    Found by ``lab report``: with no new events between the bad deploy's version and the
    fix, the cycle found the first version's marker, published nothing, and the buggy
    version stayed current.
    """
    settings = settings.model_copy(
        update={"batch": settings.batch.model_copy(update={"window_s": 2, "clock_skew_s": 0})}
    )
    make = make_event.configured(urls=tuple(f"/cb{i}" for i in range(3)), sizes=(1, 999))
    events = make.many(200)
    producer = EventProducer(settings, PAGE_VIEWS)
    producer.send_many(events)
    producer.close()
    time.sleep(2.5)
    coded = coded_views()[VIEW]
    first = run_cycle(settings, views=[VIEW])["views"][VIEW]  # with Trino: its own task
    bad = baddeploy.deploy_buggy(VIEW)
    second = run_cycle(settings, views=[VIEW])["views"][VIEW]
    assert second["status"] == "published" and second["version"] == first["version"] + 1
    assert baddeploy.fix(VIEW)
    third = run_cycle(settings, views=[VIEW])["views"][VIEW]
    assert third["status"] == "published" and third["fingerprint"] == first["fingerprint"]
    catch_up(settings, PAGE_VIEWS)
    keys = sorted({coded.key_of(e) for e in events})
    assert served(settings, coded, keys) == oracle.measures(coded, events)
    assert served(settings, coded, keys) != oracle.measures(bad, events)
    assert run_cycle(settings, views=[VIEW])["views"][VIEW]["status"] == "unchanged"
