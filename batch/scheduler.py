"""Which Luigi scheduler runs the batch tasks: the central one (``luigid``), or in-process.

With ``luigi.scheduler_url`` (the default) every batch loop -- the supervised one, one on
another host, a ``lambdalab batch run`` -- asks luigid before it runs a task, so a task
that several loops want runs once: the others wait while it runs, then find it done and
go on with what is left. luigid also shows the task graph, its history and its failures
in its UI. ``luigi.local_scheduler = true`` runs Luigi's in-process scheduler instead:
one loop only, nothing shown. A configured luigid that does not answer fails the cycle
with its URL and what to start; the batch layer never falls back silently.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import httpx
import luigi
import luigi.rpc
import luigi.scheduler
import luigi.worker
from luigi.execution_summary import LuigiRunResult, LuigiStatusCode

from lambdalab.errors import BatchError
from lambdalab.settings import Settings

PROBE_TIMEOUT_S = 5.0
# With luigid on loopback these cover a restart of it; a luigid down for good fails the
# cycle within seconds instead of Luigi's defaults (3 attempts, 30 s apart).
RPC_RETRY_ATTEMPTS = 3
RPC_RETRY_WAIT_S = 2


# Luigi statuses that say no task failed in this worker (NOT_RUN: others ran some).
QUIET = (LuigiStatusCode.SUCCESS, LuigiStatusCode.SUCCESS_WITH_RETRY, LuigiStatusCode.NOT_RUN)


def down_message(settings: Settings, why: object) -> str:
    """What to do when the configured luigid does not answer."""
    url = settings.luigi.scheduler_url
    return (
        f"Luigi's central scheduler at {url} does not answer ({why}): start the stack with "
        "`make up` (it runs luigid), point LAMBDALAB_LUIGI__SCHEDULER_URL at a running one, "
        "or set LAMBDALAB_LUIGI__LOCAL_SCHEDULER=true to run a single loop in-process"
    )


def running_tasks(settings: Settings) -> list[str]:
    """The ids of the tasks luigid shows RUNNING (its ``task_list`` API).

    Raises:
        BatchError: luigid does not answer (the message says what to start).
    """
    return list(_running(settings))


def running_params(settings: Settings, family: str) -> list[dict[str, Any]]:
    """The parameters of the ``family`` tasks luigid shows RUNNING (in any loop).

    Raises:
        BatchError: luigid does not answer (the message says what to start).
    """
    return [
        dict(task.get("params") or {})
        for task in _running(settings).values()
        if task.get("name") == family
    ]


def _running(settings: Settings) -> dict[str, dict[str, Any]]:
    url = f"{settings.luigi.scheduler_url}/api/task_list"
    try:
        resp = httpx.get(
            url, params={"data": json.dumps({"status": "RUNNING"})}, timeout=PROBE_TIMEOUT_S
        )
        resp.raise_for_status()
        return dict(resp.json()["response"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise BatchError(down_message(settings, exc)) from exc


class LoopWorker(luigi.worker.Worker):
    """A worker that waits while another loop runs a task it needs, and no longer.

    Without keep-alive a loop whose task another loop runs gives up at once; Luigi's
    keep-alive waits for any pending task, also one stuck behind a failure until the
    scheduler's retry delay (minutes). This worker stays while one of its tasks is RUNNING
    somewhere; then luigid hands it what is left, or nothing when upstream failed.
    """

    def _keep_alive(self, get_work_response: Any) -> bool:
        return bool(get_work_response.running_tasks)


class SchedulerFactory:
    """What ``luigi.build`` creates its scheduler and worker with (the batch layer's choice)."""

    def create_local_scheduler(self) -> luigi.scheduler.Scheduler:
        """Luigi's in-process scheduler (``luigi.local_scheduler``)."""
        return luigi.scheduler.Scheduler(prune_on_get_work=True, record_task_history=False)

    def create_remote_scheduler(self, url: str) -> luigi.rpc.RemoteScheduler:
        """A client of luigid that retries briefly (see ``RPC_RETRY_*``)."""
        remote = luigi.rpc.RemoteScheduler(url, connect_timeout=PROBE_TIMEOUT_S)
        remote._rpc_retry_attempts = RPC_RETRY_ATTEMPTS  # only read from luigi.cfg otherwise
        remote._rpc_retry_wait = RPC_RETRY_WAIT_S
        return remote

    def create_worker(
        self, scheduler: Any, worker_processes: int, assistant: bool = False
    ) -> LoopWorker:
        """A :class:`LoopWorker`; no SIGUSR1 handler, so a cycle may run in any thread."""
        return LoopWorker(
            scheduler=scheduler,
            worker_processes=worker_processes,
            assistant=assistant,
            wait_interval=0.5,
            wait_jitter=0.5,
            no_install_shutdown_handler=True,
        )


def build(tasks: list[luigi.Task], settings: Settings) -> LuigiRunResult:
    """Run ``tasks`` with the configured scheduler and one worker; the detailed result.

    Raises:
        BatchError: luigid is configured and does not answer, before or during the run.
    """
    where: dict[str, Any] = {"local_scheduler": True}
    if not settings.luigi.local_scheduler:
        running_tasks(settings)  # a clear error now rather than Luigi's retries and traceback
        where = {"local_scheduler": False, "scheduler_url": settings.luigi.scheduler_url}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return luigi.build(
                tasks,
                worker_scheduler_factory=SchedulerFactory(),
                workers=1,
                detailed_summary=True,
                log_level="WARNING",
                **where,
            )
        except luigi.rpc.RPCError as exc:
            raise BatchError(down_message(settings, exc)) from exc


def run(tasks: list[luigi.Task], settings: Settings) -> dict[str, Any]:
    """Run ``tasks`` (:func:`build`); ``{"ok", "summary"}`` of the run (:func:`outcome`).

    A task this loop waited for that failed elsewhere -- in another loop, or its worker
    died (luigid marks it FAILED ``worker_disconnect_delay`` after its last ping) -- is
    asked for again once: luigid hands it to this loop, which runs it.
    """
    result = build(tasks, settings)
    found = outcome(result, tasks, settings)
    if not found["ok"] and not settings.luigi.local_scheduler and result.status in QUIET:
        found = outcome(build(tasks, settings), tasks, settings)
    return found


def outcome(result: LuigiRunResult, tasks: list[luigi.Task], settings: Settings) -> dict[str, Any]:
    """``{"ok", "summary"}`` of a run: ok when nothing failed here and every root is done.

    Luigi's own status is not enough with a central scheduler: a task run by another loop
    counts as "not run" here, and one that failed there is no failure of this worker.
    The roots' outputs say whether the cycle's work exists, whoever made it.
    """
    ok = result.status in QUIET and all(task.complete() for task in tasks)
    summary = result.summary_text
    if not settings.luigi.local_scheduler and result.status is not LuigiStatusCode.SUCCESS:
        seen = "done by another loop" if ok else "failed or left pending"
        summary += f"\nsome tasks were {seen}: see the Luigi UI at {settings.luigi.ui}"
    return {"ok": ok, "summary": summary}
