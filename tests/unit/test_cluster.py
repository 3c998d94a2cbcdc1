"""The cluster topology (`lambdalab stack up --cluster`) and its compose twin, statically.

Nothing is started: the cluster profile's settings, the node specs of ``infra.cluster`` and
``docker-compose.cluster.yml`` are read and checked against each other and against the
local stack, so the two cluster descriptions stay in step with infra/conf/cluster. The
nodes themselves run in tests/cluster (``make up-cluster``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import cluster, services
from infra.cluster import (
    CLUSTER_CONF,
    DATANODES,
    REDIS_MASTERS,
    REDIS_NODES,
    SPARK_WORKERS,
    WORKER_MEMORY,
    cluster_services,
    kafka_nodes,
    redis_cluster_ports,
)
from infra.services import Service, all_services
from lambdalab.errors import ConfigError
from lambdalab.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.cluster.yml"
PROFILE = ROOT / "lambdalab" / "profiles" / "cluster.env"
HEAP_BUDGET_MB = 6 * 1024  # every JVM's cap, Spark's driver and executors included


@pytest.fixture
def fake_jdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for module in (services, cluster):
        monkeypatch.setattr(module, "find_java17", lambda: tmp_path / "jdk17")
    monkeypatch.setattr(services, "find_java_for_trino", lambda: tmp_path / "jdk24")
    return tmp_path


def _own_state(settings: Settings, state: Path) -> Settings:
    return settings.model_copy(
        update={"paths": settings.paths.model_copy(update={"state_dir": state})}
    )


@pytest.fixture
def nodes(fake_jdk: Path) -> list[Service]:
    return cluster_services(_own_state(load_settings(profile="cluster"), fake_jdk / "c"))


@pytest.fixture(scope="module")
def compose() -> dict[str, dict[str, Any]]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def _props(path: Path) -> dict[str, str]:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return dict(ln.split("=", 1) for ln in lines)


def test_the_profile_is_settings_only(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(profile="cluster")
    assert len(s.kafka.bootstrap_servers.split(",")) == 3
    assert (s.kafka.replication_factor, s.kafka.min_insync_replicas) == (3, 2)
    assert s.hdfs.replication == DATANODES
    assert s.spark.master.startswith("spark://")
    assert s.spark.conf["spark.dynamicAllocation.enabled"] == "true"  # loops share workers
    monkeypatch.setenv("LAMBDALAB_PROFILE", "cluster")
    assert load_settings() == s
    monkeypatch.setenv("LAMBDALAB_KAFKA__REPLICATION_FACTOR", "2")  # the environment wins
    assert load_settings().kafka.replication_factor == 2
    monkeypatch.setenv("LAMBDALAB_PROFILE", "nope")
    with pytest.raises(ConfigError, match=r"unknown profile 'nope' \(known: cluster\)"):
        load_settings()


def test_every_node_is_supervised_with_a_check_of_its_own(nodes: list[Service]) -> None:
    names = {n.name for n in nodes}
    for expected in (
        *(f"kafka-{i}" for i in (1, 2, 3)),
        *(f"datanode-{i}" for i in range(1, DATANODES + 1)),
        *(f"spark-worker-{i}" for i in range(1, SPARK_WORKERS + 1)),
        *(f"redis-{i}" for i in range(1, REDIS_NODES + 1)),
        *("namenode", "spark-master", "trino", "luigid"),
    ):
        assert expected in names
        node = next(n for n in nodes if n.name == expected)
        assert node.supervised and node.ports, expected
        if "-" in expected:
            assert node.check is not None, f"{expected} has no check of its own"


def test_the_platform_runs_two_apis_and_two_batch_loops_on_settings_only(
    fake_jdk: Path,
) -> None:
    s = _own_state(load_settings(profile="cluster"), fake_jdk / "c")
    apps = {n.name: n for n in cluster_services(s, with_platform=True) if n.directory}
    assert {"api-1", "api-2", "batch-1", "batch-2", "archiver"} <= set(apps)
    assert all(a.env["LAMBDALAB_PROFILE"] == "cluster" for a in apps.values())
    assert [apps[f"api-{n}"].ports for n in (1, 2)] == [[s.api.port], [s.api.port + 1]]
    assert apps["api-2"].command[-2:] == ["--port", str(s.api.port + 1)]
    assert apps["batch-1"].command == apps["batch-2"].command  # same code, luigid decides
    speeds = sorted(name for name in apps if name.startswith("speed-"))
    assert speeds and len(speeds) % 2 == 0  # two workers per stream, named apart
    for name in speeds:
        command = apps[name].command
        assert command[command.index("--worker") + 1] == name.removeprefix("speed-")
    assert "redis" not in {n.name for n in cluster_services(s)}  # the Redis Cluster only
    assert s.redis.cluster and s.redis.port == redis_cluster_ports(s)[0]


def test_cluster_ports_are_unique_and_beside_the_local_stacks(fake_jdk: Path) -> None:
    s = _own_state(load_settings(profile="cluster"), fake_jdk / "c")
    ports = [p for n in cluster_services(s, with_platform=True) for p in n.ports]
    assert len(ports) == len(set(ports)), sorted(ports)
    local = all_services(_own_state(load_settings(), fake_jdk / "l"), with_platform=True)
    assert not set(ports) & {p for n in local for p in n.ports}


def test_every_jvm_heap_is_capped_and_the_sum_fits(nodes: list[Service]) -> None:
    def mb(value: str) -> int:
        number, unit = int(value[:-1]), value[-1].lower()
        return number * 1024 if unit == "g" else number

    caps = {}
    for node in nodes:
        if node.command and node.command[0].endswith("/java"):
            (xmx,) = [a for a in node.command if a.startswith("-Xmx")]
            caps[node.name] = mb(xmx[4:])
    s = load_settings(profile="cluster")
    caps["trino"] = mb(s.trino.heap)
    caps["spark-driver"] = mb(s.spark.driver_memory)
    caps["spark-executors"] = SPARK_WORKERS * mb(s.spark.executor_memory)
    assert mb(s.spark.executor_memory) <= mb(WORKER_MEMORY), "an executor fits on a worker"
    assert len(caps) == 3 + 1 + DATANODES + 1 + SPARK_WORKERS + 3
    assert sum(caps.values()) <= HEAP_BUDGET_MB, caps


def test_kafka_nodes_form_one_quorum_with_the_cluster_properties(tmp_path: Path) -> None:
    s = load_settings(profile="cluster")
    nodes = kafka_nodes(s)
    assert [n.node_id for n in nodes] == [1, 2, 3]
    text = cluster.kafka_node_properties(s, nodes[1], tmp_path)
    props: dict[str, str] = {}
    for line in text.splitlines():  # the last value of a key wins, as in java.util.Properties
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            props[key] = value
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == ",".join(
        f"{n.node_id}@127.0.0.1:{n.port + 1}" for n in nodes
    )
    assert props["process.roles"] == "broker,controller"
    for key, value in _props(CLUSTER_CONF / "kafka.properties").items():
        assert props[key] == value, key
    assert props["default.replication.factor"] == str(s.kafka.replication_factor)
    assert props["min.insync.replicas"] == str(s.kafka.min_insync_replicas)


def test_compose_kafka_has_the_cluster_properties(compose: dict[str, dict[str, Any]]) -> None:
    brokers = sorted(n for n in compose if re.fullmatch(r"kafka-\d", n))
    assert len(brokers) == len(kafka_nodes(load_settings(profile="cluster")))
    wanted = {
        "KAFKA_" + k.upper().replace(".", "_"): v
        for k, v in _props(CLUSTER_CONF / "kafka.properties").items()
    }
    for i, name in enumerate(brokers, start=1):
        env = compose[name]["environment"]
        assert {k: env.get(k) for k in wanted} == wanted, name
        assert env["KAFKA_NODE_ID"] == str(i)
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == ",".join(
            f"{j}@{b}:9093" for j, b in enumerate(brokers, start=1)
        )


def test_compose_hdfs_mounts_the_cluster_xml_with_every_property(
    compose: dict[str, dict[str, Any]], nodes: list[Service]
) -> None:
    needed: set[str] = set()
    for xml in (CLUSTER_CONF / "hadoop").glob("*-site.xml"):
        needed |= set(re.findall(r"\$\{(lambdalab\.[a-z.]+)\}", xml.read_text()))
    replication = re.search(
        r"<name>dfs.replication</name><value>(\d+)</value>",
        (CLUSTER_CONF / "hadoop" / "hdfs-site.xml").read_text(),
    )
    assert replication and int(replication[1]) == DATANODES
    datanodes = sorted(n for n in compose if n.startswith("datanode-"))
    assert len(datanodes) == DATANODES
    for name in ["namenode", *datanodes]:
        given = dict(
            re.findall(r"-D(lambdalab\.[a-z.]+)=(\S+)", compose[name]["environment"]["HADOOP_OPTS"])
        )
        assert set(given) == needed, name
        mounts = [v.split(":")[0] for v in compose[name]["volumes"]]
        assert "./infra/conf/cluster/hadoop/hdfs-site.xml" in mounts
        assert "./infra/conf/cluster/hadoop/core-site.xml" in mounts
    for name in datanodes:
        assert f"-Dlambdalab.datanode.host={name}" in compose[name]["environment"]["HADOOP_OPTS"]
    for node in nodes:  # the local cluster passes the same properties
        if node.name == "namenode" or node.name.startswith("datanode-"):
            local = {a[2:].split("=")[0] for a in node.command if a.startswith("-Dlambdalab.")}
            assert local == needed, node.name


def test_compose_spark_redis_and_apps_match_the_local_cluster(
    compose: dict[str, dict[str, Any]],
) -> None:
    workers = sorted(n for n in compose if n.startswith("spark-worker-"))
    assert len(workers) == SPARK_WORKERS
    for name in workers:
        command = " ".join(compose[name]["command"])
        assert f"--cores 1 --memory {WORKER_MEMORY} spark://spark-master:7077" in command
    redis_nodes = [n for n in compose if re.fullmatch(r"redis-\d", n)]
    assert len(redis_nodes) == REDIS_NODES
    create = compose["redis-cluster-create"]["command"]
    assert f"--cluster-replicas {REDIS_NODES // REDIS_MASTERS - 1}" in create
    assert all(f"redis-{i}:6379" in create for i in range(1, REDIS_NODES + 1))
    assert sorted(n for n in compose if n.startswith(("api-", "batch-"))) == [
        "api-1",
        "api-2",
        "batch-1",
        "batch-2",
    ]


def test_compose_apps_get_the_cluster_profile(compose: dict[str, dict[str, Any]]) -> None:
    profile = _props(PROFILE)
    env = compose["batch-1"]["environment"]
    host_specific = {  # ports and paths of the loopback cluster; compose uses host names
        "LAMBDALAB_KAFKA__CONTROLLER_PORT",
        "LAMBDALAB_HDFS__DATANODE_PORT",
        "LAMBDALAB_HDFS__DATANODE_HTTP_PORT",
        "LAMBDALAB_HDFS__DATANODE_IPC_PORT",
    }
    assert set(profile) - host_specific <= set(env), sorted(set(profile) - set(env))
    same = [k for k in profile if "REPLICA" in k or "MEMORY" in k or "HEAP" in k or "CONF" in k]
    assert {k: env[k] for k in same} == {k: profile[k] for k in same}
    assert len(env["LAMBDALAB_KAFKA__BOOTSTRAP_SERVERS"].split(",")) == 3
    assert env["LAMBDALAB_SPARK__MASTER"] == "spark://spark-master:7077"
    for name in ("archiver", "batch-1", "batch-2", "api-1", "api-2"):
        assert compose[name]["environment"] == env, name
