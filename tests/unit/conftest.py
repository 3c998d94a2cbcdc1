"""Unit tests do no network and start no process; a guard fails the test that tries.

For every test under tests/unit, connecting a socket, looking up a host name and starting
a process (``subprocess``, ``os.fork``/``system``/``posix_spawn``) raise
:class:`UnitIsolationError` naming what was tried. It is an ``OSError``, so a client
library fails fast down its "unreachable" path instead of hanging in a retry loop; and
every attempt is recorded, so a test still fails -- naming the attempt -- when the code
under test swallowed the error (a health check answering "down", a probe answering
None). A unit test that hangs anyway is stopped by a short timeout. A test of port
handling takes the ``loopback`` fixture: sockets it binds itself on 127.0.0.1, the only
addresses a unit test may connect to.
"""

from __future__ import annotations

import _posixsubprocess
import ipaddress
import os
import socket
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import pytest

HINT = "a unit test does no network and starts no process: fake it or move it to tests/integration"
TIMEOUT_S = 20  # the slowest unit test takes well under a second


class UnitIsolationError(OSError):
    """A unit test reached for the network or started a process."""


@dataclass
class Guard:
    """What one unit test may reach (its own loopback ports) and what it tried."""

    allowed: set[int] = field(default_factory=set)
    attempts: list[str] = field(default_factory=list)
    reported: int = 0

    def refuse(self, what: str) -> NoReturn:
        self.attempts.append(what)
        msg = f"{what}: {HINT}"
        raise UnitIsolationError(msg)

    def may_connect(self, sock: socket.socket, address: Any) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return False
        host, port = address[0], address[1]
        return host in ("127.0.0.1", "::1", "localhost") and port in self.allowed


GUARD = pytest.StashKey[Guard]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A unit test that hangs fails after TIMEOUT_S instead of the suite's 900 s."""
    for item in items:
        if "/tests/unit/" in str(item.fspath) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TIMEOUT_S))


@pytest.fixture(autouse=True)
def _no_network_no_processes(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Guard:
    guard = request.node.stash[GUARD] = Guard()
    _guard_sockets(guard, monkeypatch)
    _guard_processes(guard, monkeypatch)
    return guard


def _guard_sockets(guard: Guard, monkeypatch: pytest.MonkeyPatch) -> None:
    connect, connect_ex, getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def checked(real: Callable[..., Any]) -> Callable[..., Any]:
        def attempt(sock: socket.socket, address: Any) -> Any:
            if not guard.may_connect(sock, address):
                guard.refuse(f"socket.connect to {address!r}")
            return real(sock, address)

        return attempt

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_local_name(host):
            guard.refuse(f"socket.getaddrinfo({host!r}) (a name lookup)")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", checked(connect))
    monkeypatch.setattr(socket.socket, "connect_ex", checked(connect_ex))
    monkeypatch.setattr(socket, "getaddrinfo", lookup)


def _is_local_name(host: Any) -> bool:
    if host is None or host in ("localhost", b"localhost"):
        return True
    try:
        ipaddress.ip_address(host.decode() if isinstance(host, bytes) else host)
    except ValueError:
        return False
    return True  # a numeric address needs no lookup; connecting to it is checked above


def _guard_processes(guard: Guard, monkeypatch: pytest.MonkeyPatch) -> None:
    def start(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> NoReturn:
        guard.refuse(f"subprocess started {args!r}")

    def refuse(name: str) -> Callable[..., NoReturn]:
        return lambda *args, **kwargs: guard.refuse(f"os.{name}{args!r}")

    monkeypatch.setattr(subprocess.Popen, "_execute_child", start)
    monkeypatch.setattr(_posixsubprocess, "fork_exec", refuse("fork_exec"))
    for name in ("fork", "forkpty", "system", "posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, refuse(name))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Every refused attempt fails its test and is named in the report, once."""
    report = yield
    guard = item.stash.get(GUARD, None)
    if guard is None or len(guard.attempts) == guard.reported:
        return report
    counts = Counter(guard.attempts[guard.reported :])
    tried = "\n".join(what if n == 1 else f"{what} ({n} times)" for what, n in counts.items())
    guard.reported = len(guard.attempts)
    if report.passed:
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} tried (and the code swallowed the error):\n{tried}"
    report.sections.append(("unit test isolation", f"{HINT}; refused:\n{tried}"))
    return report


@dataclass
class Loopback:
    """Sockets a test binds on 127.0.0.1; the guard lets the test connect to exactly these."""

    guard: Guard
    sockets: list[socket.socket] = field(default_factory=list)

    def _bind(self) -> socket.socket:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.sockets.append(sock)
        self.guard.allowed.add(sock.getsockname()[1])
        return sock

    def listening(self) -> int:
        """A port something listens on (a taken port)."""
        sock = self._bind()
        sock.listen()
        return int(sock.getsockname()[1])

    def refusing(self) -> int:
        """A port bound but not listening: a connect to it is refused (a service down)."""
        return int(self._bind().getsockname()[1])


@pytest.fixture
def loopback(_no_network_no_processes: Guard) -> Iterator[Loopback]:
    """Loopback ports the test owns, the only ones it may connect to."""
    ports = Loopback(_no_network_no_processes)
    yield ports
    for sock in ports.sockets:
        sock.close()
