"""Pure logic of the batch layer: the cut, fingerprints, lineage text, CLI periods."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from batch.build import Plan
from batch.cli import parse_every
from batch.compile import output_columns
from batch.lineage import describe, fingerprint, offsets_of, ranges_of, utc
from lambdalab.boundary import cut_at
from lambdalab.errors import ConfigError
from lambdalab.paths import MasterFile
from lambdalab.settings import Settings
from tests.unit.conftest import Loopback
from views.definition import Measure
from views.registry import get_view


def _files(seed: int) -> list[tuple[str, MasterFile]]:
    rng = random.Random(seed)
    out, nxt = [], {0: 0, 1: 0}
    for window in range(5):
        for p in (0, 1):
            n = rng.randrange(1, 50)
            mf = MasterFile(1_700_000_000_000 + window * 60_000, p, nxt[p], nxt[p] + n - 1)
            nxt[p] += n
            out.append((f"/x/master/pageviews/{mf.date_dir}/{mf.name}", mf))
    return out


def test_cut_is_a_window_boundary_at_or_before_snapshot_minus_skew() -> None:
    s = Settings()
    rng = random.Random(3)
    for _ in range(1000):
        t = rng.randrange(1_600_000_000_000, 1_900_000_000_000)
        cut = cut_at(s, t)
        assert cut % (s.batch.window_s * 1000) == 0
        edge = t - s.batch.clock_skew_s * 1000
        assert edge - s.batch.window_s * 1000 < cut <= edge


def test_fingerprint_depends_on_the_set_of_inputs_not_their_order() -> None:
    paths = [p for p, _ in _files(1)]
    shuffled = paths[:]
    random.Random(2).shuffle(shuffled)
    assert fingerprint("v", "c", paths) == fingerprint("v", "c", shuffled)
    assert fingerprint("v", "c", paths) != fingerprint("v", "c", paths[:-1])
    assert fingerprint("v", "c", paths) != fingerprint("v2", "c", paths)
    assert fingerprint("v", "c", paths) != fingerprint("v", "c2", paths)


def test_plan_fingerprint_changes_with_the_view_definition_only_when_it_changes() -> None:
    view = get_view("pageviews_by_url_hourly")
    files = _files(4)
    same = Plan(view, 10, files).fingerprint
    assert Plan(view, 99, files).fingerprint == same, "the cut alone is not an input"
    changed = replace(view, measures=(*view.measures, Measure("b", "sum", "bytes")))
    assert Plan(changed, 10, files).fingerprint != same


def test_offsets_and_ranges_cover_each_partition_exactly() -> None:
    files = [mf for _, mf in _files(5)]
    offsets, ranges = offsets_of(files), ranges_of(files)
    for p in (0, 1):
        mine = [mf for mf in files if mf.partition == p]
        assert offsets[str(p)] == sum(mf.last_offset - mf.first_offset + 1 for mf in mine)
        assert ranges[str(p)] == [0, offsets[str(p)] - 1]


def test_lineage_reads_as_utc_text() -> None:
    lin = {
        "view": "v",
        "version": 3,
        "cut_ms": 1_700_000_040_000,
        "inputs": ["a", "b"],
        "offsets": {"0": 10},
        "ranges": {"0": [0, 9]},
        "rows": 5,
        "duration_s": 1.25,
        "started_ms": 1_700_000_100_000,
        "finished_ms": 1_700_000_101_250,
    }
    text = dict(describe(lin))
    assert text["cut (ingest time)"].startswith("2023-11-14 22:14:00.000 UTC")
    assert text["inputs"] == "2 master files"
    assert text["offsets covered"] == "p0: 0..9"
    assert utc(None) == "-"


def test_every_period_parses_and_rejects_garbage() -> None:
    assert parse_every("5m") == 300 and parse_every("90s") == 90 and parse_every("1h") == 3600
    assert parse_every("45") == 45
    with pytest.raises(ConfigError):
        parse_every("five minutes")


def test_output_columns_follow_the_version_dir_contract() -> None:
    cols = dict(output_columns(get_view("visitors_by_url_hourly")))
    assert cols == {
        "url": "varchar",
        "key": "varchar",
        "bucket_ms": "bigint",
        "unique_visitors": "varbinary",
        "unique_visitors_estimate": "double",
    }


def test_the_reader_says_hdfs_is_down_instead_of_crashing(loopback: Loopback) -> None:
    from batch.reader import BatchReader
    from lambdalab.errors import ServiceUnavailable

    port = loopback.refusing()  # this test's own port, where nothing listens
    down = Settings(hdfs={"webhdfs_url": f"http://127.0.0.1:{port}"})
    with pytest.raises(ServiceUnavailable, match=rf"127\.0\.0\.1:{port}"):
        BatchReader(down).current("pageviews_by_url_hourly")


def test_phases_add_up_by_name_and_prefix() -> None:
    from batch.phases import Phases

    phases = Phases()
    for name in ("build:a", "build:b", "build:a", "trino"):
        with phases.phase(name):
            pass
    assert list(phases.seconds) == ["build:a", "build:b", "trino"]
    assert phases.total("build:") == phases.seconds["build:a"] + phases.seconds["build:b"]
    failure = "a failed phase is still timed"
    with pytest.raises(RuntimeError), phases.phase("land"):
        raise RuntimeError(failure)
    assert "land" in phases.rounded()


def test_registered_versions_are_read_from_table_names_only() -> None:
    from batch.trino_tables import TrinoTables

    tables = TrinoTables(Settings())
    names = ["v__v1", "v__v12", "v", "master_pageviews", "a__vx", "a_b__v3", "__v4"]
    tables.query = lambda sql: (["Table"], [(n,) for n in names])  # type: ignore[method-assign]
    assert tables.registered() == {"v": {1, 12}, "a_b": {3}}


class MasterListing:
    """A master dataset as WebHDFS lists it: {day folder: [file names]}, listings counted."""

    def __init__(self, days: dict[str, list[MasterFile]]) -> None:
        self.days = {f"ingest_date={d}": [f.name for f in files] for d, files in days.items()}
        self.listed: list[str] = []

    def status(self, path: str, strict: bool = True) -> dict[str, str] | None:
        return {"type": "DIRECTORY"} if self.days else None

    def list(self, path: str) -> list[str]:
        self.listed.append(path.rsplit("/", 1)[-1])
        if path.rsplit("/", 1)[-1] in self.days:
            return [*self.days[path.rsplit("/", 1)[-1]], "_claim-x"]
        return [*self.days, "_manifests"]


def test_landed_offsets_read_the_newest_folders_back_until_every_partition_is_seen(
    settings: Settings,
) -> None:
    from batch.master import landed_offsets

    def f(window: int, partition: int, first: int, last: int) -> MasterFile:
        return MasterFile(window, partition, first, last)

    listing = MasterListing(
        {
            "2026-01-01": [f(1, 0, 0, 9), f(1, 1, 0, 4), f(1, 2, 0, 2)],
            "2026-01-02": [f(2, 0, 10, 19), f(2, 1, 5, 7)],
            "2026-01-03": [f(3, 0, 20, 29), f(3, 0, 30, 31)],
        }
    )
    landed = landed_offsets(listing, settings, "pageviews", [0, 1, 2, 3])  # type: ignore[arg-type]
    assert landed == {0: 32, 1: 8, 2: 3, 3: 0}  # partition 3: nothing landed yet
    listing.listed.clear()
    assert landed_offsets(listing, settings, "pageviews", [0, 1]) == {0: 32, 1: 8}  # type: ignore[arg-type]
    assert listing.listed == ["pageviews", "ingest_date=2026-01-03", "ingest_date=2026-01-02"]
    assert landed_offsets(MasterListing({}), settings, "pageviews", [0]) == {0: 0}  # type: ignore[arg-type]
