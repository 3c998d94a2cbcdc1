"""The local stack as one object: fetch, up, down, status, logs.

Ties the service specs (``infra.services``), supervisord (``infra.supervise``) and the
health checks (``infra.health``) together for the CLI. Start-up waits on real health
checks, and every failure names the service, its log and what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from infra import health
from infra.artifacts import Dist, fetch
from infra.services import Layout, Service, all_services
from infra.supervise import Supervisor
from lambdalab.errors import StackError, WaitTimeout
from lambdalab.settings import Settings
from lambdalab.wait import wait_until

WAIT_S = {
    "kafka": 90,
    "namenode": 90,
    "datanode": 90,
    "redis": 30,
    "trino": 240,
    "luigid": 30,
    "spark": 180,
    "api": 60,
}


@dataclass
class ServiceStatus:
    """One row of ``stack status``."""

    name: str
    ports: list[int]
    process: str
    healthy: bool
    detail: str


class Stack:
    """The local stack of one state directory."""

    def __init__(self, settings: Settings, *, cluster: bool = False) -> None:
        self.settings = settings
        self.cluster = cluster  # the multi-node stack (infra.cluster) of the cluster profile
        self.layout = Layout(settings)
        self.supervisor = Supervisor(self.layout)

    def fetch(self) -> list[str]:
        """Fetch every artifact (a no-op once cached)."""
        return fetch(Dist(self.settings.paths.cache_dir))

    def services(self, *, with_platform: bool | None = None) -> list[Service]:
        """The stack's services; lambda-lab's own ones too if asked or already supervised."""
        if with_platform is None:
            with_platform = self.supervisor.info("api-1" if self.cluster else "api") is not None
        if self.cluster:
            from infra.cluster import cluster_services

            return cluster_services(self.settings, with_platform=with_platform)
        return all_services(self.settings, with_platform=with_platform)

    def up(self, *, with_platform: bool = False) -> list[ServiceStatus]:
        """Fetch, prepare and start every service, waiting for each to be healthy.

        Idempotent: services already running are left alone. ``with_platform`` also starts
        lambda-lab's own services (archiver, speed consumer, API, batch loop).
        """
        self.fetch()
        services = self.services(with_platform=with_platform)
        self._check_ports(services)
        self.supervisor.render(services)
        self.supervisor.start_daemon()
        for svc in services:
            if svc.prepare is not None:
                svc.prepare()
            if svc.supervised:
                self.supervisor.start(svc.name)
            self._wait_healthy(svc)
        return self.status()

    def down(self) -> bool:
        """Stop the stack's own processes (data stays); False if it was not running."""
        return self.supervisor.shutdown()

    def status(self) -> list[ServiceStatus]:
        """Each service's process state and a live health check, checked in parallel."""
        services = self.services()
        with ThreadPoolExecutor(max_workers=len(services)) as pool:
            return list(pool.map(self._status_of, services))

    def _status_of(self, svc: Service) -> ServiceStatus:
        process = "in-process"
        if svc.supervised:
            info = self.supervisor.info(svc.name)
            process = f"{info['statename']} pid {info['pid']}" if info else "not running"
            if not info or info["statename"] != "RUNNING":
                return ServiceStatus(svc.name, svc.ports, process, False, "not running")
        try:
            detail = _check(svc)(self.settings)
            return ServiceStatus(svc.name, svc.ports, process, True, detail)
        except Exception as exc:  # a health check may fail in any client library
            return ServiceStatus(svc.name, svc.ports, process, False, _short(exc))

    def _check_ports(self, services: list[Service]) -> None:
        for svc in services:
            info = self.supervisor.info(svc.name) if svc.supervised else None
            if info and info["statename"] in ("RUNNING", "STARTING"):
                continue
            for port in svc.ports:
                if health.port_open("127.0.0.1", port):
                    msg = (
                        f"port {port} ({svc.name}) is taken by a process this stack does not "
                        f"own: stop it (e.g. `ss -ltnp 'sport = :{port}'` shows it) or move "
                        f"{svc.name} to another port in the settings"
                    )
                    raise StackError(msg)

    def _wait_healthy(self, svc: Service) -> None:
        """Poll ``svc``'s health check every second for up to ``WAIT_S`` (default 60 s).

        Raises:
            StackError: the process exited (with its log's tail), or the check still
                failed at the deadline (with the last failure).
        """
        timeout_s = WAIT_S.get(svc.name.split("-", 1)[0], 60)  # kafka-2: as kafka
        check = svc.start_check or _check(svc)

        def healthy() -> str:
            self._raise_if_exited(svc)
            return check(self.settings)

        try:
            wait_until(
                healthy,
                timeout_s=timeout_s,
                interval_s=1.0,
                what=f"{svc.name} healthy",
                retry_on=(Exception,),  # a health check may fail in any client library
                abort_on=(StackError,),
            )
        except WaitTimeout as exc:
            msg = (
                f"{svc.name} not healthy after {timeout_s} s ({exc.last_check}); "
                f"see {self.supervisor.log_path(svc.name)}"
            )
            raise StackError(msg) from exc.last

    def _raise_if_exited(self, svc: Service) -> None:
        """Raise StackError, with the log's tail, if supervisord gave up on ``svc``."""
        if not svc.supervised:
            return
        info = self.supervisor.info(svc.name)
        if info and info["statename"] in ("FATAL", "EXITED", "BACKOFF"):
            msg = (
                f"{svc.name} exited ({info['statename']}): see "
                f"{self.supervisor.log_path(svc.name)}\n{self.tail(svc.name, 15)}"
            )
            raise StackError(msg)

    def tail(self, name: str, lines: int = 50) -> str:
        """The last ``lines`` lines of a service's log (``stack logs`` and error messages)."""
        path = self.supervisor.log_path(name)
        if not path.exists():
            return f"(no log yet at {path})"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _check(svc: Service) -> Callable[[Settings], str]:
    return svc.check or health.check_for(svc.name)


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0][:200]
