"""Real health checks of the stack's services, each doing the thing the platform needs.

Kafka: produce a record and consume it back. HDFS: write and read a file over WebHDFS
(through the DataNode). Redis: PING. Trino: ``SELECT 1``. luigid: its scheduler API
answers. Spark: a local job. Each check
returns a short detail on success and raises on failure.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Callable

from lambdalab.errors import WaitTimeout
from lambdalab.settings import Settings
from lambdalab.wait import wait_until


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
    topic = "_lambdalab_health"
    admin = KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=5000)
    try:
        if topic not in admin.list_topics():
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(topic, 1, 1)])
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
    return f"Spark {version} local job ok"


def check_luigid(settings: Settings) -> str:
    """Luigi's scheduler API answers ``task_list`` (what the batch workers and the UI use)."""
    from batch.scheduler import running_tasks

    running = running_tasks(settings)
    return f"API ok, {len(running)} task(s) running; UI {settings.luigi.ui}"


def check_api(settings: Settings) -> str:
    """``GET /health`` of lambda-lab's API answers 2xx."""
    import httpx

    url = f"http://{settings.api.host}:{settings.api.port}/health"
    resp = httpx.get(url, timeout=5)
    resp.raise_for_status()
    return f"GET /health {resp.status_code}"


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
