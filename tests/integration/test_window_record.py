"""The recorded ingest-window width of the master dataset, and what builds make of it.

A build leaves out the row-level cut filter only when every master file is known to hold
one whole ingest window below the cut: one width recorded at the first landing, equal to
the width the cut is a multiple of. Oracle: the widths this test lands with.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from batch.archiver import land
from batch.build import plan
from batch.master import (
    check_window,
    list_files,
    recorded_window,
    window_record_path,
)
from batch.publish import VersionStore
from ingest.generator import GeneratorConfig, generate
from ingest.producer import EventProducer
from lambdalab.hdfs import webhdfs
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from views.registry import get_view

VIEW = get_view("pageviews_by_url_hourly")


def _send(settings: Settings, n: int, seed: int) -> None:
    producer = EventProducer(settings, PAGE_VIEWS)
    try:
        producer.send_many(
            [p.event for p in generate(GeneratorConfig(seed=seed), datetime.now(UTC), n)]
        )
    finally:
        producer.close()


def _with_width(settings: Settings, width: int) -> Settings:
    return settings.model_copy(
        update={"batch": settings.batch.model_copy(update={"window_s": width})}
    )


def _aligned_cut(width: int) -> int:
    step = width * 1000
    return (int(time.time() * 1000) // step + 1) * step


def test_first_landing_records_its_width_and_builds_skip_the_filter(
    stack: Settings, settings: Settings
) -> None:
    _send(settings, 50, seed=1)
    land(settings, PAGE_VIEWS)
    width = settings.batch.window_s
    assert recorded_window(webhdfs(settings), settings, PAGE_VIEWS.name) == width
    store = VersionStore(settings)
    assert plan(settings, VIEW, _aligned_cut(width), store).whole_windows
    # a cut that is no multiple of the width could fall inside a file's window
    assert not plan(settings, VIEW, _aligned_cut(width) + 1000, store).whole_windows
    # a planner configured with another width cannot trust the files' windows
    other = _with_width(settings, width * 2)
    assert not plan(other, VIEW, _aligned_cut(width * 2), VersionStore(other)).whole_windows


def test_a_landing_with_another_width_marks_the_record_mixed_for_good(
    stack: Settings, settings: Settings
) -> None:
    width = settings.batch.window_s
    _send(settings, 30, seed=2)
    land(settings, PAGE_VIEWS)
    narrower = _with_width(settings, max(1, width // 2))
    _send(settings, 30, seed=3)
    land(narrower, PAGE_VIEWS)
    client = webhdfs(settings)
    assert recorded_window(client, settings, PAGE_VIEWS.name) is None
    assert not plan(settings, VIEW, _aligned_cut(width), VersionStore(settings)).whole_windows
    # landing again with the first width does not make the mixed files whole again
    land(settings, PAGE_VIEWS)
    assert check_window(client, settings, PAGE_VIEWS.name) is None


def test_files_landed_before_widths_were_recorded_leave_the_width_unknown(
    stack: Settings, settings: Settings
) -> None:
    _send(settings, 30, seed=4)
    land(settings, PAGE_VIEWS)
    client = webhdfs(settings)
    path = window_record_path(settings, PAGE_VIEWS.name)
    client.delete(path)  # as a dataset landed before this record existed
    assert list_files(client, settings, PAGE_VIEWS.name)
    assert check_window(client, settings, PAGE_VIEWS.name) is None
    assert client.status(path, strict=False) is None, "no width may be claimed for old files"
    cut = _aligned_cut(settings.batch.window_s)
    assert not plan(settings, VIEW, cut, VersionStore(settings)).whole_windows
