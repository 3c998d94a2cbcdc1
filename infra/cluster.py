"""The multi-node stack on loopback: ``lambdalab stack up --cluster``.

Three Kafka brokers (KRaft, each a broker and a controller of one 3-voter quorum), a
NameNode with two DataNodes (every block on both), a Spark standalone master with two
workers, a Redis Cluster of three masters and three replicas (the speed layer's store, its
keys sharded by Kafka partition: ``lambdalab.paths``), Trino and luigid. Every node is a process
supervised like the local stack's services (:mod:`infra.supervise`), with a health check of
its own that ``stack status --cluster`` shows as one row.

The topology comes from the settings of the ``cluster`` profile
(``lambdalab/profiles/cluster.env``) and a few fixed offsets, so the platform, the nodes
and the compose ``cluster`` profile read one source:

- Kafka node ``n``: the ``n``-th bootstrap server; its controller listens on port + 1.
- DataNode ``n``: the ``hdfs.datanode_*`` ports + 100 * (n - 1).
- Spark: the master's port from ``spark.master``, its UI on port + 1; worker ``n`` on
  master port + 100 * n, its UI on that + 1.
- Redis Cluster node ``n`` (1-6): the port of ``redis.url`` (the seed node) + n - 1 (bus
  port + 10000).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from infra import health
from infra.artifacts import CONF, find_java17, find_redis_server
from infra.services import (
    JDK17_OPENS,
    Layout,
    Service,
    _run_once,
    luigid,
    platform,
    trino,
)
from lambdalab.errors import StackError
from lambdalab.settings import Settings

CLUSTER_CONF = CONF / "cluster"
DATANODES = 2
SPARK_WORKERS = 2
REDIS_MASTERS = 3
REDIS_NODES = 6  # three masters, each with one replica
API_PROCESSES = 2  # on api.port, api.port + 1
BATCH_LOOPS = 2  # coordinating through luigid: a task runs once however many loops ask
SPEED_WORKERS = 2  # per stream, sharing its partitions through a Kafka consumer group

# Heap of each JVM, so the whole cluster stays near 5 GB (Trino's own: trino.heap;
# the Spark driver's and executors': spark.driver_memory, spark.executor_memory).
HEAP = {"kafka": "320m", "namenode": "384m", "datanode": "256m", "spark": "256m"}
WORKER_MEMORY = "768m"  # what a Spark worker offers its executors (one executor each)


@dataclass(frozen=True)
class KafkaNode:
    """One broker+controller of the cluster's KRaft quorum."""

    node_id: int
    host: str
    port: int

    @property
    def controller_port(self) -> int:
        """The controller listener: broker port + 1."""
        return self.port + 1

    @property
    def name(self) -> str:
        """The supervised program's name (``kafka-1``...)."""
        return f"kafka-{self.node_id}"


def kafka_nodes(settings: Settings) -> list[KafkaNode]:
    """One node per bootstrap server, node ids 1, 2, 3 in the order the setting lists them."""
    out = []
    for i, server in enumerate(settings.kafka.bootstrap_servers.split(","), start=1):
        host, port = server.strip().rsplit(":", 1)
        out.append(KafkaNode(i, host, int(port)))
    return out


def voters(settings: Settings) -> str:
    """``controller.quorum.voters`` of the cluster: every node, ``id@host:controller_port``."""
    return ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in kafka_nodes(settings))


def kafka_node_properties(settings: Settings, node: KafkaNode, log_dir: Path) -> str:
    """A node's server.properties: the shared file, the cluster's, then the node's own keys."""
    own = {
        "node.id": str(node.node_id),
        "log.dirs": str(log_dir),
        "listeners": (
            f"PLAINTEXT://{node.host}:{node.port},CONTROLLER://{node.host}:{node.controller_port}"
        ),
        "advertised.listeners": f"PLAINTEXT://{node.host}:{node.port}",
        "controller.quorum.voters": voters(settings),
        "num.partitions": str(settings.kafka.partitions),
    }
    return "\n".join(
        [
            (CONF / "kafka" / "server.properties").read_text(),
            (CLUSTER_CONF / "kafka.properties").read_text(),
            f"# node {node.node_id} (infra/cluster.py)",
            *(f"{k}={v}" for k, v in own.items()),
            "",
        ]
    )


def datanode_ports(settings: Settings, n: int) -> tuple[int, int, int]:
    """DataNode ``n``'s (data transfer, HTTP, IPC) ports."""
    h, shift = settings.hdfs, 100 * (n - 1)
    return h.datanode_port + shift, h.datanode_http_port + shift, h.datanode_ipc_port + shift


def spark_master_port(settings: Settings) -> int:
    """The port of ``spark.master`` (``spark://host:port``)."""
    master = settings.spark.master
    if not master.startswith("spark://"):
        msg = f"spark.master must be spark://host:port for the cluster, got {master!r}"
        raise StackError(msg)
    return int(master.rsplit(":", 1)[1])


def spark_ui_port(settings: Settings) -> int:
    """The master's web UI (and its JSON status at ``/json/``)."""
    return spark_master_port(settings) + 1


def spark_worker_ports(settings: Settings, n: int) -> tuple[int, int]:
    """Worker ``n``'s (RPC, web UI) ports."""
    port = spark_master_port(settings) + 100 * n
    return port, port + 1


# Each node's cluster bus port is its port + this. Redis' default, + 10000, put the bus at
# 39380-39385, inside Linux's ephemeral range (32768-60999): a node failed to start in CI
# when a client's outgoing connection held its bus port. + 100 keeps it below the range.
REDIS_BUS_OFFSET = 100


def redis_cluster_ports(settings: Settings) -> list[int]:
    """The Redis Cluster nodes' ports: the seed node's (``redis.url``) + 0..5."""
    return [settings.redis.port + n for n in range(REDIS_NODES)]


def _kafka_node(settings: Settings, lay: Layout, node: KafkaNode) -> Service:
    props = lay.conf / f"{node.name}.properties"
    props.write_text(kafka_node_properties(settings, node, lay.data(node.name)))
    java = str(find_java17() / "bin" / "java")
    cp = f"{lay.dist.kafka_libs}/*"
    jvm = [
        f"-Xmx{HEAP['kafka']}",
        "-XX:+UseG1GC",
        f"-Dlog4j.configuration=file:{CONF}/kafka/log4j.properties",
    ]

    def prepare() -> None:  # every node formatted with the one cluster id
        if (lay.data(node.name) / "meta.properties").exists():
            return
        cluster_file = lay.state / "kafka-cluster-id"
        if not cluster_file.exists():
            cluster_file.write_text(uuid.uuid4().hex[:22])
        cluster_id = cluster_file.read_text().strip()
        cmd = [java, *jvm, "-cp", cp, "kafka.tools.StorageTool", "format"]
        _run_once(f"{node.name} storage format", [*cmd, "-t", cluster_id, "-c", str(props)])

    return Service(
        name=node.name,
        ports=[node.port, node.controller_port],
        priority=10,
        prepare=prepare,
        command=[java, *jvm, "-cp", cp, "kafka.Kafka", str(props)],
        # Alone a node has no quorum (its broker port opens once it has one): while starting,
        # its controller port is enough; its full check
        # (registered, in the ISR) runs once all three are up (the `kafka` row).
        start_check=functools.partial(health.check_port, node.host, node.controller_port),
        check=functools.partial(health.check_kafka_node, node_id=node.node_id, port=node.port),
    )


def hadoop_cmd(
    settings: Settings, lay: Layout, name: str, main: str, *args: str, dn: int = 0
) -> list[str]:
    """A HDFS daemon of the cluster: its own state dir and ports, the cluster's config."""
    java = str(find_java17() / "bin" / "java")
    h = settings.hdfs
    host = h.namenode.split("://", 1)[1].rsplit(":", 1)[0]
    port, http, ipc = datanode_ports(settings, max(dn, 1))
    props = {
        "hdfs.host": host,
        "bind.host": host,
        "datanode.host": h.datanode_host,
        "state.dir": lay.data(name),
        "nn.rpc.port": h.rpc_port,
        "nn.http.port": h.http_port,
        "dn.port": port,
        "dn.http.port": http,
        "dn.ipc.port": ipc,
    }
    heap = HEAP["datanode" if dn else "namenode"]
    return [
        java,
        f"-Xmx{heap}",
        *JDK17_OPENS,
        *(f"-Dlambdalab.{k}={v}" for k, v in props.items()),
        f"-Dhadoop.log.dir={lay.logs}",
        f"-Dlog4j.configuration=file:{CONF}/hadoop/log4j.properties",
        "-cp",
        # the cluster's *-site.xml first; webapps/ (the NameNode UI) from the shared folder
        f"{CLUSTER_CONF}/hadoop:{CONF}/hadoop:{lay.dist.hadoop_libs}/*",
        main,
        *args,
    ]


def _namenode(settings: Settings, lay: Layout) -> Service:
    main = "org.apache.hadoop.hdfs.server.namenode.NameNode"

    def prepare() -> None:
        if (lay.data("namenode") / "name" / "current" / "VERSION").exists():
            return
        fmt = hadoop_cmd(settings, lay, "namenode", main, "-format", "-nonInteractive", "-force")
        _run_once("HDFS namenode format", fmt)

    return Service(
        name="namenode",
        ports=[settings.hdfs.rpc_port, settings.hdfs.http_port],
        priority=20,
        prepare=prepare,
        command=hadoop_cmd(settings, lay, "namenode", main),
        check=health.check_namenode_cluster,
        start_check=health.check_namenode,
    )


def _datanode(settings: Settings, lay: Layout, n: int) -> Service:
    main = "org.apache.hadoop.hdfs.server.datanode.DataNode"
    name = f"datanode-{n}"
    ports = datanode_ports(settings, n)
    return Service(
        name=name,
        ports=list(ports),
        priority=30,
        command=hadoop_cmd(settings, lay, name, main, dn=n),
        check=functools.partial(health.check_datanode, port=ports[0]),
    )


def _spark_env() -> dict[str, str]:
    import pyspark

    return {
        "SPARK_HOME": str(Path(pyspark.__file__).parent),  # the worker finds jars/ there
        "SPARK_SCALA_VERSION": "2.13",  # else the executor launcher looks for a source build
        "JAVA_HOME": str(find_java17()),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }


def _spark_java(main: str, *args: str) -> list[str]:
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    java = str(find_java17() / "bin" / "java")
    return [java, f"-Xmx{HEAP['spark']}", *JDK17_OPENS, "-cp", f"{jars}/*", main, *args]


def _spark_master(settings: Settings, lay: Layout) -> Service:
    port, ui = spark_master_port(settings), spark_ui_port(settings)
    return Service(
        name="spark-master",
        ports=[port, ui],
        priority=35,
        env=_spark_env(),
        command=_spark_java(
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)),
        ),
        check=functools.partial(health.check_spark_master, ui_port=ui),
    )


def _spark_worker(settings: Settings, lay: Layout, n: int) -> Service:
    port, ui = spark_worker_ports(settings, n)
    name = f"spark-worker-{n}"
    return Service(
        name=name,
        ports=[port, ui],
        priority=36,
        env=_spark_env(),
        command=_spark_java(
            "org.apache.spark.deploy.worker.Worker",
            *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)),
            *("--cores", "1", "--memory", WORKER_MEMORY, "--work-dir", str(lay.data(name))),
            settings.spark.master,
        ),
        check=functools.partial(
            health.check_spark_worker, ui_port=spark_ui_port(settings), worker_port=port
        ),
    )


def _redis_node(settings: Settings, lay: Layout, port: int, n: int) -> Service:
    name = f"redis-{n}"
    bus = port + REDIS_BUS_OFFSET
    return Service(
        name=name,
        ports=[port, bus],
        priority=10,
        command=[
            str(find_redis_server()),
            str(CONF / "redis" / "redis.conf"),
            *("--dir", str(lay.data(name)), "--port", str(port), "--daemonize", "no"),
            *("--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-port", str(bus)),
            *("--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"),
        ],
        start_check=functools.partial(health.check_port, "127.0.0.1", port),
        check=functools.partial(health.check_redis_node, port=port),
    )


def _redis_cluster(settings: Settings, lay: Layout) -> Service:
    ports = redis_cluster_ports(settings)

    def prepare() -> None:  # once: three masters, one replica each, every slot assigned
        if health.redis_cluster_info("127.0.0.1", ports[0]).get("cluster_slots_assigned") != (
            "16384"
        ):
            cli = str(find_redis_server().with_name("redis-cli"))
            nodes = [f"127.0.0.1:{p}" for p in ports]
            replicas = str(REDIS_NODES // REDIS_MASTERS - 1)
            create = [cli, "--cluster", "create", *nodes, "--cluster-replicas", replicas]
            _run_once("redis cluster create", [*create, "--cluster-yes"])

    return Service(
        name="redis-cluster",
        ports=[],
        priority=12,
        prepare=prepare,
        check=functools.partial(health.check_redis_cluster, ports=ports),
    )


def cluster_platform(settings: Settings) -> list[Service]:
    """lambda-lab's own services on the cluster: the local stack's, more of some of them.

    Two APIs, two batch loops, two speed workers per stream (one consumer group each).

    The same commands as on the local stack (:func:`infra.services.platform`); only their
    settings differ: ``LAMBDALAB_PROFILE=cluster`` and, for the second API, its port.
    """
    out = []
    for svc in platform(settings):
        env = {**svc.env, "LAMBDALAB_PROFILE": "cluster"}
        if svc.name == "api":
            for n in range(1, API_PROCESSES + 1):
                port = settings.api.port + n - 1
                out.append(
                    replace(
                        svc,
                        name=f"api-{n}",
                        ports=[port],
                        env=env,
                        command=[*svc.command[:-1], str(port)],  # ... --port <port>
                        check=functools.partial(health.check_api_at, port=port),
                    )
                )
        elif svc.name == "batch":
            out += [replace(svc, name=f"batch-{n}", env=env) for n in range(1, BATCH_LOOPS + 1)]
        elif svc.name.startswith("speed-"):  # N workers per stream share its partitions
            at = svc.command.index("--worker") + 1  # the stream's worker names: {stream}-{n}
            stream = svc.name.removeprefix("speed-")
            out += [
                replace(
                    svc,
                    name=f"{svc.name}-{n}",
                    env=env,
                    command=[*svc.command[:at], f"{stream}-{n}", *svc.command[at + 1 :]],
                )
                for n in range(1, SPEED_WORKERS + 1)
            ]
        else:
            out.append(replace(svc, env=env))
    return out


def cluster_services(settings: Settings, *, with_platform: bool = False) -> list[Service]:
    """Every node of the cluster, in start order; check-only rows (``ports=[]``) beside them.

    ``with_platform`` adds lambda-lab's own services (:func:`cluster_platform`).
    """
    lay = Layout(settings)
    found = [
        *(_kafka_node(settings, lay, node) for node in kafka_nodes(settings)),
        Service(name="kafka", ports=[], priority=11, check=health.check_kafka),
        *(
            _redis_node(settings, lay, port, n)
            for n, port in enumerate(redis_cluster_ports(settings), start=1)
        ),
        _redis_cluster(settings, lay),
        luigid(settings, lay),
        _namenode(settings, lay),
        *(_datanode(settings, lay, n) for n in range(1, DATANODES + 1)),
        Service(name="hdfs", ports=[], priority=31, check=health.check_hdfs),
        _spark_master(settings, lay),
        *(_spark_worker(settings, lay, n) for n in range(1, SPARK_WORKERS + 1)),
        Service(name="spark", ports=[], priority=37, check=health.check_spark),
        trino(settings, lay),
    ]
    if with_platform:
        found += cluster_platform(settings)
    return sorted(found, key=lambda s: s.priority)
