"""The batch cycle as Luigi tasks: build a version, publish it, expose it to Trino.

Targets are named by the version's fingerprint (view definition, code version, input
files), so Luigi's "done means the output exists" becomes: the same inputs are never
recomputed, while new data below the cut or a changed definition is a new target and
gives a new version. Luigi's central scheduler (luigid, :mod:`batch.scheduler`) runs each
task once however many loops ask for it, so any loop may run any task of a cycle: a
task's output is found from its identity (view, fingerprint), never from the run that
made it. A failed task logs and mails its error (:mod:`batch.notify`) and leaves what is
served unchanged.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

import luigi
from luigi.parameter import ParameterVisibility

from batch.build import Plan, build, new_run_id
from batch.notify import notify_failure
from batch.phases import Phases
from batch.publish import VersionStore
from batch.scheduler import run as run_luigi
from batch.scheduler import running_params, running_tasks
from lambdalab.boundary import cut_at
from lambdalab.errors import BatchError
from lambdalab.hdfs import LINEAGE
from lambdalab.settings import Settings
from views.definition import ViewDef

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)
SPARK_APP = "lambdalab-batch"


@dataclass(eq=False)
class BatchContext:
    """What the tasks of one batch cycle share: settings, stores, plans, a lazy Spark."""

    settings: Settings
    store: VersionStore
    plans: dict[str, Plan]
    run_id: str = field(default_factory=new_run_id)
    trino: bool = True
    spark_session: SparkSession | None = None
    phases: Phases = field(default_factory=Phases)
    spark_starting: Future[SparkSession] | None = None

    def __repr__(self) -> str:
        return f"BatchContext({self.settings.namespace}, run {self.run_id})"

    @property
    def spark(self) -> SparkSession:
        """The Spark session, started only when a version must actually be built."""
        if self.spark_session is None:
            from batch.spark import spark_session

            with self.phases.phase("spark_start"):
                if self.spark_starting is not None:  # started beside the landing
                    self.spark_session = self.spark_starting.result()
                else:
                    self.spark_session = spark_session(self.settings, app_name=SPARK_APP)
        return self.spark_session


class ContextParameter(luigi.Parameter):
    """A cycle's shared context: passed in-process, never serialised nor part of task ids."""

    def _warn_on_wrong_param_type(self, param_name: str, param_value: Any) -> None:
        return None


class HdfsTarget(luigi.Target):
    """A file on HDFS: the task is done when it exists."""

    def __init__(self, store: VersionStore, path: str) -> None:
        self.store = store
        self.path = path

    def exists(self) -> bool:
        """Whether the file exists: Luigi's test of whether the task is done."""
        return self.store.exists(self.path)


class PublishedTarget(HdfsTarget):
    """The view's newest published version has this fingerprint (its marker is a record).

    Only the *newest* version counts: a definition changed and changed back (a bad deploy
    and its fix) must publish again, although a version with this fingerprint was
    published before it, or the buggy version would stay current.
    """

    def __init__(self, store: VersionStore, view: str, fingerprint: str) -> None:
        super().__init__(store, store.marker(view, fingerprint))
        self.view, self.fingerprint = view, fingerprint

    def exists(self) -> bool:
        """The newest version has this fingerprint (its marker is written if missing).

        A missing marker is a publisher killed after the swap and before the marker: it is
        written now (repair), so the version is not built and published twice.
        """
        numbers = self.store.published(self.view)
        if not numbers:
            return False
        if self.store.lineage(self.view, numbers[0]).get("fingerprint") != self.fingerprint:
            return False
        if not super().exists():
            self.store.touch(self.path, str(numbers[0]))  # killed after the swap: repair
        return True


class StagedTarget(HdfsTarget):
    """A complete staged build of (view, fingerprint), by this cycle or by another loop.

    This cycle's own staging folder first, else any ``{fingerprint}-{run}`` folder holding
    its lineage file (written last, so only a complete build has one): with a central
    scheduler the loop that publishes need not be the one that built. Builds with one
    fingerprint have the same inputs, definition and code, so any of them will do.
    """

    def __init__(self, store: VersionStore, view: str, fingerprint: str, run_id: str) -> None:
        super().__init__(store, f"{store.staging_dir(view, fingerprint, run_id)}/{LINEAGE}")
        self.view, self.fingerprint = view, fingerprint

    def exists(self) -> bool:
        """Whether a complete build exists; ``path`` is then its lineage file."""
        if super().exists():
            return True
        root = self.store.paths.staging(self.view)
        for name in sorted(self.store._list(root)):
            lineage = f"{root}/{name}/{LINEAGE}"
            if name.startswith(f"{self.fingerprint}-") and self.store.exists(lineage):
                self.path = lineage
                return True
        return False


T = TypeVar("T", bound="_ViewTask")


def make_task(cls: type[T], view: str, fingerprint: str, ctx: BatchContext) -> T:
    """An instance of a view task (Luigi parameters are passed by name)."""
    params: dict[str, Any] = {"view": view, "fingerprint": fingerprint, "context": ctx}
    return cls(**params)


class _CycleTask(luigi.Task):
    context: Any = ContextParameter(significant=False, visibility=ParameterVisibility.PRIVATE)

    @property
    def ctx(self) -> BatchContext:
        """The shared context of this batch cycle (not part of the task's identity)."""
        return cast(BatchContext, self.context)

    def subject(self) -> str:
        """What failed, for the failure mail's subject."""
        return str(self.task_family)

    def on_failure(self, exception: BaseException) -> str:
        """Luigi's failure hook: mail the failure and its traceback (nothing served changed)."""
        trace = "".join(traceback.format_exception(exception))
        body = f"run {self.ctx.run_id}: {exception}\n\nnothing served has changed\n\n{trace}"
        notify_failure(self.ctx.settings, f"{self.subject()} failed", body)
        return str(super().on_failure(exception))


class _ViewTask(_CycleTask):
    view = luigi.Parameter()
    fingerprint = luigi.Parameter()

    def subject(self) -> str:
        """The task and its view, e.g. ``BuildVersion pageviews_by_url_hourly``."""
        return f"{self.task_family} {self.view}"

    def _sibling(self, cls: type[T]) -> T:
        return make_task(cls, str(self.view), str(self.fingerprint), self.ctx)

    @property
    def plan(self) -> Plan:
        """What this view's version is computed from (planned once per cycle)."""
        return self.ctx.plans[self.view]


class BuildVersion(_ViewTask):
    """Compute the version into a staging dir (data + unpublished lineage)."""

    def output(self) -> StagedTarget:
        """The staged lineage file: written last, so it exists only for a complete build."""
        return StagedTarget(self.ctx.store, self.view, self.fingerprint, self.ctx.run_id)

    def run(self) -> None:
        """Compute the version with Spark into this run's staging folder."""
        import json

        if self.output().exists():  # another loop built it since this one scheduled it
            return
        spark = self.ctx.spark
        with self.ctx.phases.phase(f"build:{self.view}"):
            staged, lineage = build(
                self.ctx.settings,
                spark,
                self.plan,
                self.ctx.store,
                self.ctx.run_id,
                busy=self.building_elsewhere(),
            )
            self.ctx.store.touch(f"{staged}/{LINEAGE}", json.dumps(lineage))

    def building_elsewhere(self) -> set[str]:
        """Fingerprints of this view's versions other loops are building now (via luigid).

        luigid runs one task id at a time, so a RUNNING BuildVersion of this view with
        another fingerprint is another loop's build (at another cut), whose staging dir
        must survive this build's cleaning. The in-process scheduler serves one loop only.
        """
        settings = self.ctx.settings
        if settings.luigi.local_scheduler:
            return set()
        return {
            str(params.get("fingerprint"))
            for params in running_params(settings, self.task_family)
            if params.get("view") == self.view and params.get("fingerprint") != self.fingerprint
        }


class PublishVersion(_ViewTask):
    """Publish the staged version by one rename, mark its fingerprint, prune old versions."""

    def requires(self) -> BuildVersion:
        """The build of the same view and fingerprint."""
        return self._sibling(BuildVersion)

    def output(self) -> PublishedTarget:
        """A version with this fingerprint is published (marker, or repaired after a kill)."""
        return PublishedTarget(self.ctx.store, self.view, self.fingerprint)

    def run(self) -> None:
        """Publish the staged version, mark its fingerprint, keep ``batch.keep_versions``."""
        import json

        if self.output().exists():  # another loop published it since this one scheduled it
            return
        store = self.ctx.store
        built = self.input()
        built.exists()  # finds the complete build, this loop's or another's
        staged = built.path.rsplit("/", 1)[0]
        with self.ctx.phases.phase(f"publish:{self.view}"):
            with store.client.read(f"{staged}/{LINEAGE}") as reader:
                lineage = json.loads(reader.read())
            n = store.publish(self.view, staged, lineage)
            store.touch(self.output().path, str(n))
            store.prune(self.view, self.ctx.settings.batch.keep_versions)


class ExposeInTrino(_CycleTask):
    """Register the cycle's versions in Trino at once, after every view is published.

    One task for all views rather than one per view: the statements of the views run
    side by side (:func:`batch.trino_tables.expose`), so a cycle pays about one Trino
    round trip per step instead of one per view and step.
    """

    pairs = luigi.TupleParameter()  # ((view, fingerprint), ...) of this cycle

    def requires(self) -> list[PublishVersion]:
        """The publication of every view of the cycle."""
        return [make_task(PublishVersion, v, f, self.ctx) for v, f in self.pairs]

    def output(self) -> list[HdfsTarget]:
        """A ``.trino`` marker beside each publication marker, written after registering."""
        store = self.ctx.store
        return [HdfsTarget(store, f"{store.marker(v, f)}.trino") for v, f in self.pairs]

    def complete(self) -> bool:
        """The markers exist AND every view's newest version has the planned fingerprint.

        The markers alone would say "done" for a fingerprint registered once before: a
        definition changed and changed back (a bad deploy, then its fix) would leave the
        other version current, and Luigi would never look at the publications.
        """
        return super().complete() and all(task.complete() for task in self.requires())

    def run(self) -> None:
        """Register the master and version tables, point the stable names, drop pruned ones."""
        from batch.trino_tables import TrinoTables, expose

        if self.complete():  # another loop registered them since this one scheduled it
            return
        markers = {v: target.path for (v, _), target in zip(self.pairs, self.output(), strict=True)}
        views = [self.ctx.plans[v].view for v in markers]
        with self.ctx.phases.phase("trino"):
            expose(TrinoTables(self.ctx.settings), self.ctx.store, views, markers)


def run_tasks(ctx: BatchContext) -> dict[str, Any]:
    """Run the tasks of every planned view with the configured Luigi scheduler, one worker."""
    tasks: list[luigi.Task]
    if ctx.trino:
        pairs = tuple((v, p.fingerprint) for v, p in ctx.plans.items())
        params: dict[str, Any] = {"pairs": pairs, "context": ctx}
        tasks = [ExposeInTrino(**params)]
    else:
        tasks = [make_task(PublishVersion, v, p.fingerprint, ctx) for v, p in ctx.plans.items()]
    return run_luigi(tasks, ctx.settings)


def run_cycle(
    settings: Settings,
    *,
    cut_ms: int | None = None,
    land: bool = True,
    views: Sequence[str | ViewDef] | None = None,
    trino: bool = True,
    spark: SparkSession | None = None,
    allow_future_cut: bool = False,
) -> dict[str, Any]:
    """One batch cycle: snapshot time T, land up to the end offsets, cut, build, publish.

    Args:
        settings: the namespace and batch settings of the cycle.
        cut_ms: override the cut (tests); by default floor((T - skew) / W) * W.
        land: run the archiver up to the end offsets snapshotted after T.
        views: the views to build, by name or definition (default: every registered view).
        trino: also register the tables in Trino and point the stable names.
        spark: an existing session to use (else one is started only if needed).
        allow_future_cut: accept a ``cut_ms`` after the last complete window (tests that
            send nothing more); otherwise it is refused, since events of the windows below
            it can still arrive after the landing and would be in neither layer.

    Returns:
        {"cut_ms", "landed": {stream: manifest} | None,
        "views": {view: {"fingerprint", "status", "version"}}, "ok"}.

    Raises:
        BatchError: the cut is refused, or the configured luigid does not answer (checked
            first: nothing is landed then).
    """
    from batch.build import plan
    from views.registry import all_views, get_view

    if not settings.luigi.local_scheduler:
        running_tasks(settings)  # luigid down: fail now, before landing anything
    snapshot_ms = int(time.time() * 1000)
    complete = cut_at(settings, snapshot_ms)
    cut = cut_ms if cut_ms is not None else complete
    if cut % (settings.batch.window_s * 1000):
        msg = (
            f"cut {cut} is not an ingest-window boundary (batch.window_s={settings.batch.window_s})"
        )
        raise BatchError(msg)
    if cut > complete and not allow_future_cut:
        msg = (
            f"cut {cut} is after the last complete ingest window ({complete}, batch.window_s="
            f"{settings.batch.window_s}, clock_skew_s={settings.batch.clock_skew_s}): events "
            "below it may still arrive; choose a cut at or before it, or omit the cut"
        )
        raise BatchError(msg)
    store = VersionStore(settings)
    defs = [get_view(v) if isinstance(v, str) else v for v in views or all_views().values()]
    # Every requested view is checked, also those with no input below the cut: a cut far
    # back (no master file below it) is refused like any other older cut.
    before = {v.name: store.published(v.name) for v in defs}
    _refuse_older_cut(store, cut, before)
    phases = Phases()
    starting = None
    if spark is None and land:  # the JVM starts while the log lands (seconds saved)
        from batch.spark import start_in_background

        starting = start_in_background(settings, SPARK_APP)
    try:
        with phases.phase("land"):
            landed = _land(settings) if land else None
    except Exception as exc:  # landing is outside Luigi: report it the same way
        notify_failure(settings, "landing failed", f"{type(exc).__name__}: {exc}")
        raise
    with phases.phase("plan"):
        plans = {v.name: plan(settings, v, cut, store) for v in defs}
    plans = {name: p for name, p in plans.items() if p.inputs}
    ctx = BatchContext(settings, store, plans, trino=trino, spark_session=spark, phases=phases)
    ctx.spark_starting = starting
    with phases.phase("tasks"):
        result = run_tasks(ctx) if plans else {"ok": True, "summary": "no input"}
    with phases.phase("report"):
        report = {name: _outcome(store, name, p, before[name]) for name, p in plans.items()}
    timings = {**phases.rounded(), "total": round(time.time() - snapshot_ms / 1000, 3)}
    return {"cut_ms": cut, "landed": landed, "views": report, "phases": timings, **result}


def _refuse_older_cut(store: VersionStore, cut: int, published: dict[str, list[int]]) -> None:
    """Refuse a cycle whose cut is below a view's current cut (cuts never go back)."""
    for view, numbers in published.items():
        held = int(store.lineage(view, numbers[0])["cut_ms"]) if numbers else None
        if held is not None and cut < held:
            msg = (
                f"view {view}: cut {cut} is below the current version v{numbers[0]:06d}'s cut "
                f"{held}; cuts never go back (choose a cut at or after it)"
            )
            raise BatchError(msg)


def _outcome(store: VersionStore, view: str, p: Plan, before: list[int]) -> dict[str, Any]:
    after = store.published(view)
    new = bool(after) and (not before or after[0] > before[0])
    status = "published" if new else "unchanged"
    return {"fingerprint": p.fingerprint, "status": status, "version": after[0] if after else None}


def _land(settings: Settings) -> dict[str, Any]:
    """Land every declared stream up to the end offsets seen now; manifests by stream name.

    Waits for a continuous archiver's turn (``FOLLOW_LOCK_WAIT_S``) rather than racing it;
    with ``batch.landing = "wait"`` it lands nothing and waits for that archiver instead.
    """
    from batch import archiver
    from lambdalab.schema import STREAMS
    from lambdalab.topics import end_offsets

    manifests = {}
    for stream in STREAMS.values():
        until = end_offsets(settings, settings.topic_for(stream.name))
        if settings.batch.landing == "wait":
            timeout_s = settings.batch.landing_wait_s
            manifests[stream.name] = archiver.wait_landed(settings, stream, until, timeout_s)
            continue
        manifests[stream.name] = dict(
            archiver.land(settings, stream, until=until, lock_wait_s=archiver.FOLLOW_LOCK_WAIT_S)
        )
    return manifests
