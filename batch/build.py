"""Building one batch view version from the master dataset up to a cut.

The cut C is an ingest-time window boundary at or before (snapshot time - allowed clock
skew): once the archiver has landed everything up to the end offsets snapshotted at that
time, every record with ingest time < C is in the master dataset. A version reads exactly
the committed master files whose ingest window starts before C, so it covers exactly the
records ingested before C, and the speed layer covers the rest.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batch import lineage as lin
from batch.compile import CODE_VERSION, compile_view, read_master
from batch.dimensions import frames, pin
from batch.master import list_files, whole_windows
from batch.publish import VersionStore, pause_point
from lambdalab.paths import HdfsPaths, MasterFile
from lambdalab.schema import get_stream
from lambdalab.settings import Settings
from views.definition import ViewDef

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Observation, SparkSession


@dataclass(frozen=True)
class Plan:
    """What one version of a view will be computed from."""

    view: ViewDef
    cut_ms: int
    inputs: list[tuple[str, MasterFile]]
    manifests: list[str] = field(default_factory=list)
    whole_windows: bool = False  # every input holds one whole window below the cut

    @property
    def fingerprint(self) -> str:
        """Identity of the version: view definition, compiled code version and input files.

        Equal fingerprints mean equal output, so a cycle with nothing new publishes nothing.
        """
        paths = [path for path, _ in self.inputs]
        return lin.fingerprint(self.view.fingerprint, CODE_VERSION, paths)


def plan(settings: Settings, view: ViewDef, cut_ms: int, store: VersionStore) -> Plan:
    """The committed master files of ``view``'s stream in ingest windows before ``cut_ms``.

    A view that enriches from dimension tables is pinned to their newest versions here
    (:func:`batch.dimensions.pin`): they are part of the plan's fingerprint.
    """
    view = pin(settings, view)
    files = list_files(store.client, settings, view.stream)
    inputs = [(path, mf) for path, mf in files if mf.window_ms < cut_ms]
    manifests_dir = HdfsPaths(settings).manifests(view.stream)
    manifests = sorted(n for n in store._list(manifests_dir) if n.endswith(".json"))
    whole = whole_windows(store.client, settings, view.stream, cut_ms)
    return Plan(view, cut_ms, inputs, manifests, whole_windows=whole)


def new_run_id() -> str:
    """A short unique id of one batch run."""
    return uuid.uuid4().hex[:12]


def build(
    settings: Settings,
    spark: SparkSession,
    p: Plan,
    store: VersionStore,
    run_id: str,
    busy: Collection[str] = (),
) -> tuple[str, dict[str, Any]]:
    """Compute the version of ``p`` into a fresh staging dir; return (dir, lineage).

    Nothing is visible to readers until :meth:`VersionStore.publish` renames the dir.
    Stale staging dirs of the view are removed first, except those of the fingerprints in
    ``busy`` (builds other loops are running now).
    """
    started = time.time()
    staged = store.staging_dir(p.view.name, p.fingerprint, run_id)
    store.clean_staging(p.view.name, busy=busy)
    uris = [store.paths.uri(path) for path, _ in p.inputs]
    dims = frames(spark, settings, p.view)
    stream = get_stream(p.view.stream)
    records = read_master(spark, uris, p.cut_ms, stream, whole_windows=p.whole_windows)
    out, counted = _counted(compile_view(p.view, records, dims))
    data_uri = store.paths.uri(f"{staged}/data")
    out.coalesce(1).write.mode("errorifexists").parquet(data_uri)
    pause_point("build")
    rows = int(counted.get["rows"])
    finished = time.time()
    return staged, _lineage(p, run_id, rows, started, finished)


def _counted(out: DataFrame) -> tuple[DataFrame, Observation]:
    """``out`` with its rows counted while it is written (no second job reads it back)."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    counted = Observation("rows")
    return out.observe(counted, F.count(F.lit(1)).alias("rows")), counted


def _lineage(p: Plan, run_id: str, rows: int, started: float, finished: float) -> dict[str, Any]:
    files = [mf for _, mf in p.inputs]
    return {
        "view": p.view.name,
        "version": None,
        "cut_ms": p.cut_ms,
        "fingerprint": p.fingerprint,
        "view_fingerprint": p.view.fingerprint,
        "view_definition": p.view.to_dict(),
        **({"dimensions": p.view.dimension_versions()} if p.view.enrich else {}),
        "code_version": CODE_VERSION,
        "inputs": [path for path, _ in p.inputs],
        "manifests": p.manifests,
        "offsets": lin.offsets_of(files),
        "ranges": lin.ranges_of(files),
        "rows": rows,
        "run_id": run_id,
        "started_ms": int(started * 1000),
        "finished_ms": int(finished * 1000),
        "duration_s": round(finished - started, 3),
    }
