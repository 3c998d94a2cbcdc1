"""The services of the local stack: how each one is prepared, started and named.

Each :class:`Service` is a process that supervisord runs: its command line (built from
the shared config files under ``infra/conf`` plus local overrides), the ports it owns,
and a one-time preparation (formatting Kafka's and HDFS's storage). Spark has no daemon
in local mode; it appears here as a check-only entry so ``stack status`` covers it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from infra.artifacts import (
    CONF,
    Dist,
    find_java17,
    find_java_for_trino,
    find_redis_server,
)
from lambdalab.errors import StackError
from lambdalab.settings import Settings

JDK17_OPENS = [
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
]


# Only the plugins the lab uses: a faster start, and no failure from unrelated plugins.
TRINO_PLUGINS = ("hive", "tpch", "memory")


@dataclass
class Service:
    """One supervised process of the stack."""

    name: str
    ports: list[int]
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[], None] | None = None
    priority: int = 100
    stopwait_s: int = 30
    directory: str | None = None
    check: Callable[[Settings], str] | None = None  # default: health.check_for(name)
    start_check: Callable[[Settings], str] | None = None  # while starting (default: check)

    @property
    def supervised(self) -> bool:
        """Whether supervisord runs it (Spark has no command: it runs in-process)."""
        return bool(self.command)


class Layout:
    """Directories of the stack's state: data per service and one log per service."""

    def __init__(self, settings: Settings) -> None:
        self.state = settings.paths.state_dir
        self.dist = Dist(settings.paths.cache_dir)

    def data(self, name: str) -> Path:
        """The data folder of one service (created); ``stack down`` keeps it."""
        path = self.state / "data" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def logs(self) -> Path:
        """The folder of the per-service logs (created)."""
        path = self.state / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def conf(self) -> Path:
        """The folder of the rendered configs (supervisord, Kafka, Trino), created."""
        path = self.state / "conf"
        path.mkdir(parents=True, exist_ok=True)
        return path


def kafka(settings: Settings, lay: Layout) -> Service:
    """Kafka in KRaft mode; storage formatted once with a cluster id kept in the state dir."""
    host, port = settings.kafka.bootstrap_servers.split(",")[0].rsplit(":", 1)
    cport = settings.kafka.controller_port
    props = lay.conf / "kafka-server.properties"
    overrides = {
        "log.dirs": str(lay.data("kafka")),
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.quorum.voters": f"1@{host}:{cport}",
        "num.partitions": str(settings.kafka.partitions),
    }
    shared = (CONF / "kafka" / "server.properties").read_text()
    local = "\n".join(f"{k}={v}" for k, v in overrides.items())
    props.write_text(f"{shared}\n# local stack overrides (infra/services.py)\n{local}\n")
    java = str(find_java17() / "bin" / "java")
    cp = f"{lay.dist.kafka_libs}/*"
    jvm = [
        "-Xms256m",
        "-Xmx1g",
        "-XX:+UseG1GC",
        f"-Dlog4j.configuration=file:{CONF}/kafka/log4j.properties",
    ]

    def prepare() -> None:
        if (lay.data("kafka") / "meta.properties").exists():
            return
        cluster_file = lay.state / "kafka-cluster-id"
        if not cluster_file.exists():
            cluster_file.write_text(uuid.uuid4().hex[:22])
        cmd = [
            java,
            *jvm,
            "-cp",
            cp,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_file.read_text().strip(),
            "-c",
            str(props),
            "--ignore-formatted",
        ]
        _run_once("kafka storage format", cmd)

    return Service(
        name="kafka",
        ports=[int(port), cport],
        priority=10,
        prepare=prepare,
        command=[java, *jvm, "-cp", cp, "kafka.Kafka", str(props)],
    )


def _hadoop_cmd(settings: Settings, lay: Layout, main: str, *args: str, heap: str) -> list[str]:
    java = str(find_java17() / "bin" / "java")
    host = settings.hdfs.namenode.split("://", 1)[1].rsplit(":", 1)[0]
    return [
        java,
        f"-Xmx{heap}",
        *JDK17_OPENS,
        f"-Dlambdalab.hdfs.host={host}",
        f"-Dlambdalab.bind.host={host}",
        f"-Dlambdalab.datanode.host={settings.hdfs.datanode_host}",
        f"-Dlambdalab.state.dir={lay.data('hdfs').parent}",
        f"-Dhadoop.log.dir={lay.logs}",
        f"-Dlog4j.configuration=file:{CONF}/hadoop/log4j.properties",
        "-cp",
        f"{CONF}/hadoop:{lay.dist.hadoop_libs}/*",
        main,
        *args,
    ]


def namenode(settings: Settings, lay: Layout) -> Service:
    """The HDFS NameNode with WebHDFS; formatted once."""
    main = "org.apache.hadoop.hdfs.server.namenode.NameNode"

    def prepare() -> None:
        if (lay.data("hdfs") / "name" / "current" / "VERSION").exists():
            return
        cmd = _hadoop_cmd(settings, lay, main, "-format", "-nonInteractive", "-force", heap="512m")
        _run_once("HDFS namenode format", cmd)

    return Service(
        name="namenode",
        ports=[settings.hdfs.rpc_port, settings.hdfs.http_port],
        priority=20,
        prepare=prepare,
        command=_hadoop_cmd(settings, lay, main, heap="1g"),
    )


def datanode(settings: Settings, lay: Layout) -> Service:
    """The HDFS DataNode, advertised under ``hdfs.datanode_host`` (127.0.0.1 locally)."""
    main = "org.apache.hadoop.hdfs.server.datanode.DataNode"
    h = settings.hdfs
    return Service(
        name="datanode",
        ports=[h.datanode_port, h.datanode_http_port, h.datanode_ipc_port],
        priority=30,
        command=_hadoop_cmd(settings, lay, main, heap="512m"),
    )


def redis(settings: Settings, lay: Layout) -> Service:
    """Debian's redis-server with AOF on (config shared with compose)."""
    return Service(
        name="redis",
        ports=[settings.redis.port],
        priority=10,
        command=[
            str(find_redis_server()),
            str(CONF / "redis" / "redis.conf"),
            "--dir",
            str(lay.data("redis")),
            "--port",
            str(settings.redis.port),
            "--daemonize",
            "no",
        ],
    )


def trino(settings: Settings, lay: Layout) -> Service:
    """Trino 476 on a JDK 25 with the Hive catalog (file metastore) over HDFS."""
    home = lay.dist.trino_home
    java_home = find_java_for_trino()
    t = settings.trino
    etc = lay.conf / "trino"
    _copy_tree(CONF / "trino", etc)
    (etc / "jvm.config").write_text(
        (CONF / "trino" / "jvm.config").read_text().replace("-Xmx2G", f"-Xmx{t.heap}")
    )
    (etc / "access-control.properties").write_text(
        (CONF / "trino" / "access-control.properties")
        .read_text()
        .replace("/etc/trino/rules.json", str(etc / "rules.json"))
    )
    plugins = lay.data("trino-plugins")
    for name in TRINO_PLUGINS:
        # Trino lists a plugin folder without following a symlinked folder: link each jar.
        folder = plugins / name
        if folder.is_symlink():
            folder.unlink()
        folder.mkdir(exist_ok=True)
        for jar in (home / "plugin" / name).iterdir():
            if not (folder / jar.name).exists():
                (folder / jar.name).symlink_to(jar)
    env = {
        "LAMBDALAB_TRINO_PLUGIN_DIR": str(plugins),
        "JAVA_HOME": str(java_home),
        "PATH": f"{java_home}/bin:{os.environ.get('PATH', '')}",
        "LAMBDALAB_TRINO_PORT": str(t.port),
        "LAMBDALAB_TRINO_DISCOVERY_URI": f"http://{t.host}:{t.port}",
        "LAMBDALAB_TRINO_WAREHOUSE": f"{settings.hdfs.namenode}/lambdalab/warehouse",
        "LAMBDALAB_TRINO_ETC": str(etc),
        "HADOOP_USER_NAME": settings.hdfs.user,
    }
    return Service(
        name="trino",
        ports=[t.port],
        priority=40,
        env=env,
        stopwait_s=20,
        command=[
            str(home / "bin" / "launcher"),
            "run",
            f"--etc-dir={etc}",
            f"--data-dir={lay.data('trino')}",
            f"--jvm-dir={java_home}",
        ],
    )


def luigid(settings: Settings, lay: Layout) -> Service:
    """Luigi's central scheduler and its UI: every batch loop asks it before running a task."""
    main = "import sys; from luigi.cmdline import luigid; luigid(sys.argv[1:])"
    return Service(
        name="luigid",
        ports=[settings.luigi.port],
        priority=15,
        env={  # the config shared with compose: state and task history in the data folder
            "LUIGI_CONFIG_PATH": str(CONF / "luigid" / "luigid.cfg"),
            "LAMBDALAB_LUIGID_DATA": str(lay.data("luigid")),
        },
        stopwait_s=10,
        command=[
            sys.executable,
            "-c",
            main,
            "--address",
            settings.luigi.host,
            "--port",
            str(settings.luigi.port),
        ],
    )


def spark(settings: Settings, lay: Layout) -> Service:
    """Spark runs in-process (``spark.master``); nothing to supervise, only to check."""
    return Service(name="spark", ports=[])


BUILDERS = (kafka, namenode, datanode, redis, trino, luigid, spark)


def platform(settings: Settings) -> list[Service]:
    """lambda-lab's own long-running services, supervised beside the backends.

    They run ``lambdalab`` subcommands from the project directory (so ``.env`` applies) with
    the namespace of the settings that started them.
    """
    cli = [sys.executable, "-m", "lambdalab.cli"]
    env = {
        "LAMBDALAB_NAMESPACE": settings.namespace,
        "LAMBDALAB_DEMO": str(settings.demo).lower(),
        "PYTHONUNBUFFERED": "1",
    }
    api = settings.api
    from lambdalab.schema import STREAMS
    from views.registry import views_of

    speeds: list[tuple[str, list[str], list[int]]] = [  # one consumer per stream with views
        (
            f"speed-{name}",
            # a stable worker name: restarted after a kill, it takes its partitions back at
            # once (Kafka static membership) instead of waiting out the session timeout
            [*cli, "speed", "run", "--quiet", "--stream", name, "--worker", f"{name}-1"],
            [],
        )
        for name in STREAMS
        if views_of(name)
    ]
    specs = [
        ("archiver", [*cli, "land", "--follow"], []),
        *speeds,
        ("api", [*cli, "serve", "--host", api.host, "--port", str(api.port)], [api.port]),
        ("batch", [*cli, "batch", "loop", "--every", f"{settings.batch.loop_every_s}s"], []),
    ]
    return [
        Service(
            name=name,
            ports=ports,
            command=cmd,
            env=env,
            priority=60 + i,
            stopwait_s=20,
            directory=str(Path.cwd()),
        )
        for i, (name, cmd, ports) in enumerate(specs)
    ]


def all_services(settings: Settings, *, with_platform: bool = False) -> list[Service]:
    """Every service of the stack, in start order (optionally lambda-lab's own too)."""
    lay = Layout(settings)
    found = [b(settings, lay) for b in BUILDERS]
    if with_platform:
        found += platform(settings)
    return sorted(found, key=lambda s: s.priority)


def _copy_tree(src: Path, dst: Path) -> None:
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())


def _run_once(what: str, cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
        msg = f"{what} failed (exit {done.returncode}):\n{tail}"
        raise StackError(msg)
