"""What the cluster drills kill and watch: nodes under supervisord, builds, executors, blocks.

A node is killed as a machine dies: SIGKILL to its whole process group (supervisord starts
every program in a group of its own, so a Spark worker's executor JVMs go with it), then
supervisord restarts it (``autorestart=unexpected``) as it would any crashed node. The
probes say when a batch build is under way (a view's staging folder holds a run), which
worker hosts an executor of an application (the workers' JSON status), and how many HDFS
blocks lack a replica (the NameNode's JMX).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from infra.cluster import SPARK_WORKERS, spark_ui_port, spark_worker_ports
from infra.stack import Stack
from lambdalab.hdfs import published_cuts, webhdfs
from lambdalab.paths import HdfsPaths
from lambdalab.settings import Settings
from lambdalab.wait import wait_until
from views.registry import all_views


@dataclass
class Kill:
    """One node SIGKILLed: its program name, old pid and the monotonic time of the kill."""

    node: str
    pid: int
    at: float


def kill_node(stack: Stack, node: str) -> Kill:
    """SIGKILL ``node``'s process group (the node and its children); supervisord restarts it."""
    info = stack.supervisor.info(node)
    if not info or info["statename"] != "RUNNING":
        msg = f"{node} is not running: {info}"
        raise AssertionError(msg)
    os.killpg(int(info["pid"]), signal.SIGKILL)
    return Kill(node, int(info["pid"]), time.monotonic())


def wait_rejoined(stack: Stack, kill: Kill, check: Callable[[], Any], timeout_s: float) -> float:
    """Seconds from the kill until supervisord runs ``kill.node`` again (a new pid) and
    ``check`` passes (the node is back in its cluster)."""

    def back() -> bool:
        info = stack.supervisor.info(kill.node) or {}
        if info.get("statename") != "RUNNING" or info.get("pid") == kill.pid:
            return False
        check()
        return True

    what = f"{kill.node} restarted and back in its cluster"
    wait_until(back, timeout_s=timeout_s, interval_s=0.5, what=what, retry_on=(Exception,))
    return time.monotonic() - kill.at


def building(settings: Settings) -> list[str]:
    """Views with a build under way: their staging folder holds a run (removed on publish)."""
    client, paths = webhdfs(settings), HdfsPaths(settings)
    busy = []
    for view in all_views():
        if client.status(paths.staging(view), strict=False) and client.list(paths.staging(view)):
            busy.append(view)
    return busy


def app_id(settings: Settings, name: str) -> str | None:
    """The id of the running application called ``name`` on the standalone master."""
    status = _json(spark_ui_port(settings))
    return next((a["id"] for a in status.get("activeapps", []) if a["name"] == name), None)


def workers_hosting(settings: Settings, app: str) -> list[int]:
    """The workers (1, 2, ...) running an executor of application ``app`` now."""
    hosting = []
    for n in range(1, SPARK_WORKERS + 1):
        status = _json(spark_worker_ports(settings, n)[1])
        if any(e.get("appid") == app for e in status.get("executors", [])):
            hosting.append(n)
    return hosting


def under_replicated(settings: Settings) -> int:
    """Blocks the NameNode counts as short of their replication (0 once every copy is back)."""
    resp = httpx.get(
        f"{settings.hdfs.webhdfs_url}/jmx",
        params={"qry": "Hadoop:service=NameNode,name=FSNamesystem"},
        timeout=5,
    )
    resp.raise_for_status()
    (bean,) = resp.json()["beans"]
    return int(bean["UnderReplicatedBlocks"])


def newest_cuts(settings: Settings) -> dict[str, int]:
    """Per view, the cut of its newest published version (-1 before the first)."""
    return {view: (published_cuts(settings, view) or [-1])[0] for view in all_views()}


def _json(port: int) -> dict[str, Any]:
    resp = httpx.get(f"http://127.0.0.1:{port}/json/", timeout=5)
    resp.raise_for_status()
    return dict(resp.json())
