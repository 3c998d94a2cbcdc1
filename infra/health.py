"""Real health checks of the stack's services, each doing the thing the platform needs.

Kafka: produce a record and consume it back. HDFS: write and read a file over WebHDFS
(through the DataNode). Redis: PING. Trino: ``SELECT 1``. luigid: its scheduler API
answers. Spark: a job on the configured master. The cluster's nodes (``infra.cluster``)
each have one too: a broker registered and in the ISR, a DataNode live in the NameNode's
report, a Spark worker registered with the master, a Redis Cluster node with every slot
covered. Each check returns a short detail on success and raises on failure.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Callable

from lambdalab.errors import WaitTimeout
from lambdalab.settings import Settings
from lambdalab.wait import wait_until

HEALTH_TOPIC = "_lambdalab_health"


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_kafka(settings: Settings) -> str:
    """Produce a record to ``_lambdalab_health`` and consume it back within 10 s."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    servers = settings.kafka.bootstrap_servers
    topic = HEALTH_TOPIC
    k = settings.kafka
    configs = (
        {} if k.min_insync_replicas is None else {"min.insync.replicas": str(k.min_insync_replicas)}
    )
    admin = KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=5000)
    try:
        if topic not in admin.list_topics():
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(
                    [NewTopic(topic, 1, k.replication_factor, topic_configs=configs)]
                )
    finally:
        admin.close()
    token = uuid.uuid4().hex.encode()
    producer = KafkaProducer(bootstrap_servers=servers, acks="all", request_timeout_ms=5000)
    meta = producer.send(topic, token).get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, meta.partition)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)

        def consumed_back() -> bool:
            polled = consumer.poll(timeout_ms=500).values()
            return any(r.value == token for records in polled for r in records)

        wait_until(consumed_back, timeout_s=10, interval_s=0, what="health record consumed back")
    except WaitTimeout:
        msg = "record produced but not consumed back within 10 s"
        raise RuntimeError(msg) from None
    finally:
        consumer.close()
    return f"produce+consume ok (offset {meta.offset})"


def check_namenode(settings: Settings) -> str:
    """The NameNode answers WebHDFS (metadata only: no DataNode needed)."""
    from hdfs import InsecureClient

    client = InsecureClient(settings.hdfs.webhdfs_url, user=settings.hdfs.user, timeout=10)
    client.status("/")
    return "WebHDFS GETFILESTATUS / ok"


def check_hdfs(settings: Settings) -> str:
    """Write a file over WebHDFS and read it back (through the DataNode), then delete it."""
    from hdfs import InsecureClient

    client = InsecureClient(settings.hdfs.webhdfs_url, user=settings.hdfs.user, timeout=10)
    path = f"/tmp/lambdalab-health/{uuid.uuid4().hex}"
    token = uuid.uuid4().hex
    client.write(path, data=token, overwrite=True)
    with client.read(path, encoding="utf-8") as reader:
        got = reader.read()
    client.delete(path)
    if got != token:
        msg = f"WebHDFS read back {got!r}, wrote {token!r}"
        raise RuntimeError(msg)
    return "WebHDFS write+read ok"


def check_redis(settings: Settings) -> str:
    """PING Redis; the detail shows whether the append-only file is on."""
    import redis

    client = redis.Redis.from_url(settings.redis.url, socket_timeout=2)
    if not client.ping():
        msg = "PING did not answer PONG"
        raise RuntimeError(msg)
    aof = client.config_get("appendonly").get("appendonly")
    return f"PING ok, appendonly={aof}"


def check_trino(settings: Settings) -> str:
    """``SELECT 1`` on Trino, and the configured catalog exists."""
    import trino

    conn = trino.dbapi.connect(
        host=settings.trino.host,
        port=settings.trino.port,
        user=settings.trino.user,
        request_timeout=10,
    )
    cur = conn.cursor()
    cur.execute("SELECT 1")
    rows = cur.fetchall()
    if rows != [[1]]:
        msg = f"SELECT 1 returned {rows!r}"
        raise RuntimeError(msg)
    cur.execute("SHOW CATALOGS")
    catalogs = sorted(r[0] for r in cur.fetchall())
    if settings.trino.catalog not in catalogs:
        msg = f"catalog {settings.trino.catalog!r} missing (have {catalogs})"
        raise RuntimeError(msg)
    return "SELECT 1 ok, catalog hive"


def check_spark(settings: Settings) -> str:
    """Start the batch layer's Spark session and run a small local job."""
    from batch.spark import spark_session

    spark = spark_session(settings, app_name="lambdalab-health")
    total = spark.range(1000).selectExpr("sum(id) AS s").collect()[0]["s"]
    version = spark.version
    spark.stop()
    if total != 499500:
        msg = f"sum(0..999) gave {total}"
        raise RuntimeError(msg)
    return f"Spark {version} job ok on {settings.spark.master}"


def check_luigid(settings: Settings) -> str:
    """Luigi's scheduler API answers ``task_list`` (what the batch workers and the UI use)."""
    from batch.scheduler import running_tasks

    running = running_tasks(settings)
    return f"API ok, {len(running)} task(s) running; UI {settings.luigi.ui}"


def check_api(settings: Settings) -> str:
    """``GET /health`` of lambda-lab's API answers 2xx."""
    return check_api_at(settings, port=settings.api.port)


def check_api_at(settings: Settings, *, port: int) -> str:
    """``GET /health`` of the API process on ``port`` answers 2xx (the cluster runs two)."""
    import httpx

    url = f"http://{settings.api.host}:{port}/health"
    resp = httpx.get(url, timeout=5)
    resp.raise_for_status()
    return f"GET /health {resp.status_code}"


def check_port(host: str, port: int, settings: Settings) -> str:
    """Something accepts connections on host:port (a cluster node while its peers start)."""
    if not port_open(host, port):
        msg = f"nothing listens on {host}:{port}"
        raise RuntimeError(msg)
    return f"{host}:{port} open"


def check_kafka_node(settings: Settings, *, node_id: int, port: int) -> str:
    """Broker ``node_id`` answers on its own port, is registered, and is in the ISR.

    The ISR is the health topic's (one replica on every broker of the cluster).
    """
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=5000)
    try:
        cluster = admin.describe_cluster()
        brokers = sorted(b["broker_id"] for b in cluster["brokers"])
        if node_id not in brokers:
            msg = f"broker {node_id} not registered (brokers {brokers})"
            raise RuntimeError(msg)
        topics = admin.describe_topics([HEALTH_TOPIC])
    finally:
        admin.close()
    partitions = [p for t in topics for p in t["partitions"]]
    if not partitions:
        msg = f"topic {HEALTH_TOPIC} missing (the `kafka` check creates it)"
        raise RuntimeError(msg)
    out = [p["partition_index"] for p in partitions if node_id not in p["isr_nodes"]]
    if out:
        msg = f"broker {node_id} not in the ISR of {HEALTH_TOPIC} partition(s) {out}"
        raise RuntimeError(msg)
    leader = " (leader)" if any(p["leader_id"] == node_id for p in partitions) else ""
    return f"broker {node_id} of {brokers}, in ISR{leader}"


def _datanodes_live(settings: Settings) -> dict[str, dict[str, object]]:
    import json

    import httpx

    url = f"{settings.hdfs.webhdfs_url}/jmx"
    resp = httpx.get(url, params={"qry": "Hadoop:service=NameNode,name=NameNodeInfo"}, timeout=5)
    resp.raise_for_status()
    return dict(json.loads(resp.json()["beans"][0]["LiveNodes"]))


def check_namenode_cluster(settings: Settings) -> str:
    """The NameNode answers WebHDFS and reports its live DataNodes."""
    check_namenode(settings)
    live = _datanodes_live(settings)
    return f"WebHDFS ok, {len(live)} live DataNode(s)"


def check_datanode(settings: Settings, *, port: int) -> str:
    """The DataNode on ``port`` is live in the NameNode's report (heartbeat within 15 s)."""
    live = _datanodes_live(settings)
    for name, node in live.items():
        if str(node.get("xferaddr", "")).endswith(f":{port}"):
            return f"live in the NameNode ({name}, last contact {node.get('lastContact')} s)"
    msg = f"no live DataNode on port {port} (live: {sorted(live)})"
    raise RuntimeError(msg)


def _spark_status(ui_port: int) -> dict[str, object]:
    import httpx

    resp = httpx.get(f"http://127.0.0.1:{ui_port}/json/", timeout=5)
    resp.raise_for_status()
    return dict(resp.json())


def check_spark_master(settings: Settings, *, ui_port: int) -> str:
    """The standalone master is ALIVE; the detail counts its alive workers."""
    status = _spark_status(ui_port)
    if status.get("status") != "ALIVE":
        msg = f"master status {status.get('status')}"
        raise RuntimeError(msg)
    return f"{status.get('url')} ALIVE, {status.get('aliveworkers')} worker(s)"


def check_spark_worker(settings: Settings, *, ui_port: int, worker_port: int) -> str:
    """The worker on ``worker_port`` is registered with the master and ALIVE."""
    workers = _spark_status(ui_port).get("workers") or []
    assert isinstance(workers, list)
    for w in workers:
        if w.get("port") == worker_port and w.get("state") == "ALIVE":
            return f"registered ALIVE, {w.get('cores')} core(s), {w.get('memory')} MB"
    msg = f"no ALIVE worker on port {worker_port} registered with the master"
    raise RuntimeError(msg)


def redis_cluster_info(host: str, port: int) -> dict[str, str]:
    """``CLUSTER INFO`` of one node as a dict of strings."""
    import redis

    client = redis.Redis(host=host, port=port, socket_timeout=2, decode_responses=True)
    try:
        text = client.execute_command("CLUSTER INFO")
    finally:
        client.close()
    if isinstance(text, dict):
        return {k: str(v) for k, v in text.items()}
    return dict(line.split(":", 1) for line in str(text).strip().splitlines() if ":" in line)


def check_redis_node(settings: Settings, *, port: int) -> str:
    """A Redis Cluster node: cluster_state ok, every slot covered; its role and slot count."""
    import redis

    info = redis_cluster_info("127.0.0.1", port)
    if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
        msg = f"cluster_state={info.get('cluster_state')}, slots ok {info.get('cluster_slots_ok')}"
        raise RuntimeError(msg)
    client = redis.Redis(port=port, socket_timeout=2, decode_responses=True)
    try:
        nodes = client.execute_command("CLUSTER NODES")  # redis-py parses it: addr -> node
    finally:
        client.close()
    me = next(n for n in nodes.values() if "myself" in n["flags"])
    role = "master" if "master" in me["flags"] else "replica"
    slots = sum(int(r[-1]) - int(r[0]) + 1 for r in me["slots"])
    return f"cluster_state ok, {role}" + (f", {slots} slots" if role == "master" else "")


def check_redis_cluster(settings: Settings, *, ports: list[int]) -> str:
    """Every node of the Redis Cluster sees it ok, with 3 masters holding all 16384 slots."""
    states = {p: redis_cluster_info("127.0.0.1", p) for p in ports}
    bad = {p: i.get("cluster_state") for p, i in states.items() if i.get("cluster_state") != "ok"}
    if bad:
        msg = f"cluster_state not ok on {bad}"
        raise RuntimeError(msg)
    first = states[ports[0]]
    return (
        f"{first.get('cluster_size')} masters, {first.get('cluster_known_nodes')} nodes, "
        f"slots ok {first.get('cluster_slots_ok')}"
    )


def check_process(settings: Settings) -> str:
    """For services whose work shows in other checks (lag, batch age): running is healthy."""
    return "process running"


def check_for(service: str) -> Callable[[Settings], str]:
    """The health check of a service; ``speed-{stream}`` services share the speed check."""
    return CHECKS[service.split("-", 1)[0]]


CHECKS: dict[str, Callable[[Settings], str]] = {
    "api": check_api,
    "speed": check_process,
    "archiver": check_process,
    "batch": check_process,
    "kafka": check_kafka,
    "namenode": check_namenode,
    "datanode": check_hdfs,
    "redis": check_redis,
    "trino": check_trino,
    "luigid": check_luigid,
    "spark": check_spark,
}
