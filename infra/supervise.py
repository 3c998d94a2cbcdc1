"""Process supervision of the local stack with supervisord (from PyPI).

supervisord owns every process of the stack: one config file and one unix socket in the
state directory, one log per service, restarts on crash. ``up`` is idempotent (starts
supervisord if absent, starts any stopped program), ``down`` shuts down only this
supervisord and so only the stack's own processes; the data directories stay.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import xmlrpc.client
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from infra.services import Layout, Service
from lambdalab.errors import StackError, WaitTimeout
from lambdalab.wait import wait_until


class Supervisor:
    """The stack's supervisord: writes its config, starts it, and talks to it over XML-RPC."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.conf_path = layout.conf / "supervisord.conf"
        self.socket = layout.state / "supervisor.sock"

    def render(self, services: list[Service]) -> None:
        """Write supervisord.conf for the supervised services."""
        lines = [
            "[unix_http_server]",
            f"file={self.socket}",
            "",
            "[supervisord]",
            f"logfile={self.layout.logs / 'supervisord.log'}",
            f"pidfile={self.layout.state / 'supervisord.pid'}",
            "nodaemon=false",
            f"directory={self.layout.state}",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{self.socket}",
            "",
        ]
        for svc in services:
            if not svc.supervised:
                continue
            env = ",".join(f'{k}="{v}"' for k, v in svc.env.items())
            lines += [
                f"[program:{svc.name}]",
                f"command={shlex.join(svc.command)}",
                f"priority={svc.priority}",
                "autostart=false",
                "autorestart=unexpected",
                "startsecs=3",
                f"stopwaitsecs={svc.stopwait_s}",
                "stopasgroup=true",
                "killasgroup=true",
                "redirect_stderr=true",
                f"stdout_logfile={self.layout.logs / (svc.name + '.log')}",
                "stdout_logfile_maxbytes=50MB",
                "stdout_logfile_backups=2",
            ]
            if env:
                lines.append(f"environment={env}")
            if svc.directory:
                lines.append(f"directory={svc.directory}")
            lines.append("")
        self.conf_path.write_text("\n".join(lines))

    def proxy(self) -> Any:
        """An XML-RPC proxy to this stack's supervisord over its unix socket."""
        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def running(self) -> bool:
        """Whether this stack's supervisord answers on its socket."""
        if not self.socket.exists():
            return False
        try:
            return bool(self.proxy().supervisor.getState()["statename"] == "RUNNING")
        except (OSError, xmlrpc.client.Fault, xmlrpc.client.ProtocolError):
            return False

    def start_daemon(self) -> None:
        """Start supervisord (daemonised) or reload its config if it runs already."""
        if self.running():
            added, changed, _removed = self.proxy().supervisor.reloadConfig()[0]
            for name in added:
                self.proxy().supervisor.addProcessGroup(name)
            for name in changed:
                self._restart_group(name)
            return
        cmd = [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf_path)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            msg = f"supervisord did not start: {done.stderr.strip() or done.stdout.strip()}"
            raise StackError(msg)
        try:
            wait_until(self.running, timeout_s=10, interval_s=0.1, what="supervisord answering")
        except WaitTimeout:
            msg = (
                f"supervisord did not answer on {self.socket}; "
                f"see {self.layout.logs}/supervisord.log"
            )
            raise StackError(msg) from None

    def _restart_group(self, name: str) -> None:
        rpc = self.proxy().supervisor
        rpc.stopProcessGroup(name)
        rpc.removeProcessGroup(name)
        rpc.addProcessGroup(name)

    def start(self, name: str) -> None:
        """Start a program unless it runs already."""
        info = self.info(name)
        if info and info["statename"] in ("RUNNING", "STARTING"):
            return
        try:
            self.proxy().supervisor.startProcess(name, False)
        except xmlrpc.client.Fault as exc:
            if "ALREADY_STARTED" not in exc.faultString:
                msg = f"{name} did not start ({exc.faultString}); see {self.log_path(name)}"
                raise StackError(msg) from exc

    def stop(self, name: str) -> None:
        """Stop a program and wait for it; a program that is not running is not an error."""
        try:
            self.proxy().supervisor.stopProcess(name, True)
        except xmlrpc.client.Fault as exc:
            if "NOT_RUNNING" not in exc.faultString:
                raise

    def info(self, name: str) -> dict[str, Any] | None:
        """The supervisord view of one program (state, pid), or None if it is unknown."""
        if not self.running():
            return None
        try:
            return dict(self.proxy().supervisor.getProcessInfo(name))
        except xmlrpc.client.Fault:
            return None

    def shutdown(self) -> bool:
        """Stop every program and supervisord itself; False if it was not running."""
        if not self.running():
            return False
        pid_file = self.layout.state / "supervisord.pid"
        pid = int(pid_file.read_text()) if pid_file.exists() else None
        self.proxy().supervisor.shutdown()
        try:
            wait_until(
                lambda: pid is None or not Path(f"/proc/{pid}").exists(),
                timeout_s=60,
                interval_s=0.1,
                what=f"supervisord (pid {pid}) exited",
            )
        except WaitTimeout:
            msg = f"supervisord (pid {pid}) did not exit within 60 s"
            raise StackError(msg) from None
        return True

    def log_path(self, name: str) -> Path:
        """The log file of program ``name`` (stdout and stderr)."""
        return self.layout.logs / f"{name}.log"
