"""Health checks of lambda-lab's own containers in the docker-compose cluster.

Compose runs ``python /opt/lambdalab/healthcheck.py ROLE`` inside the api, speed,
archiver, batch and luigid containers. A role is healthy when its ``lambdalab`` process
runs and the backends its layer of the Lambda architecture needs answer (the same checks
as the local stack, from ``infra.health``, on the compose host names from
``LAMBDALAB_*``); luigid when its scheduler API answers.
Exit 0 when healthy, 1 with the reason on stderr otherwise.
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from infra.health import check_luigid, check_namenode, check_redis, port_open
from lambdalab.settings import Settings, load_settings

# The command line each role's process runs (as in docker-compose.yml).
PROCESSES = {
    "api": ("serve",),
    "speed": ("speed", "run"),
    "archiver": ("land",),
    "batch": ("batch", "loop"),
}


def process_running(words: tuple[str, ...]) -> str:
    """Raise unless a live ``lambdalab`` process runs with these subcommand words."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().decode().split("\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        names = [Path(a).name for a in argv]
        if "lambdalab" in names and state != "Z" and _contains(argv, words):
            return f"pid {proc.name} runs lambdalab {' '.join(words)}"
    msg = f"no running `lambdalab {' '.join(words)}` process"
    raise RuntimeError(msg)


def _contains(argv: list[str], words: tuple[str, ...]) -> bool:
    n = len(words)
    return any(tuple(argv[i : i + n]) == words for i in range(len(argv) - n + 1))


def kafka_reachable(settings: Settings) -> str:
    """The first Kafka bootstrap server accepts TCP connections."""
    host, port = settings.kafka.bootstrap_servers.split(",")[0].rsplit(":", 1)
    if not port_open(host, int(port), timeout=2):
        msg = f"Kafka {host}:{port} not reachable"
        raise RuntimeError(msg)
    return "Kafka reachable"


def api_health(settings: Settings) -> str:
    """``GET /health`` of the API in this container answers 2xx."""
    url = f"http://127.0.0.1:{settings.api.port}/health"
    with urllib.request.urlopen(url, timeout=5) as resp:  # raises on 4xx/5xx
        return f"GET /health {resp.status}"


BACKENDS: dict[str, list[Callable[[Settings], str]]] = {
    "api": [api_health],
    "speed": [kafka_reachable, check_redis],
    "archiver": [kafka_reachable, check_namenode],
    "batch": [check_namenode],
}


# luigid runs no `lambdalab` process: its scheduler API answering is its health (on its
# own port in its container; the default settings point there).
SERVICES: dict[str, list[Callable[[Settings], str]]] = {"luigid": [check_luigid]}


def main(argv: list[str]) -> int:
    """Check one role; print what passed, or the first failure."""
    roles = [*PROCESSES, *SERVICES]
    if len(argv) != 2 or argv[1] not in roles:
        print(f"usage: healthcheck.py {{{'|'.join(roles)}}}", file=sys.stderr)
        return 2
    role = argv[1]
    settings = load_settings()
    try:
        if role in SERVICES:
            details = [check(settings) for check in SERVICES[role]]
        else:
            details = [process_running(PROCESSES[role])]
            details += [check(settings) for check in BACKENDS[role]]
    except Exception as exc:  # any client library may raise: unhealthy, with the reason
        print(f"{role} unhealthy: {exc}", file=sys.stderr)
        return 1
    print(f"{role} healthy: {'; '.join(details)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
