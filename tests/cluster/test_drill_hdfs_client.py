"""Cluster drill: the platform's WebHDFS client right after a DataNode is SIGKILLed.

For seconds after a DataNode dies the NameNode still redirects reads and writes to it (for
a client on its host, a create goes to the local node every time). The drill kills the
DataNode the NameNode redirects this host's creates to, and at once does ``ROUNDS`` writes
of new small files and reads of files written (twice, replication 2) before the kill, each
round once with the package's plain ``InsecureClient`` and once with the platform's
:func:`lambdalab.hdfs.webhdfs` client. Every operation of the platform's client succeeds
and returns the bytes written; the plain client failing some proves the drill hit the
window (that is the finding of the DataNode drill this fixes). supervisord restarts the
node; the drill waits until it is live again and every block has its two replicas.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
import requests
from hdfs import InsecureClient

from infra import health
from infra.cluster import DATANODES, datanode_ports
from infra.stack import Stack
from lambdalab.hdfs import TIMEOUT_S, webhdfs
from lambdalab.settings import Settings
from tests.cluster.nodes import kill_node, under_replicated, wait_rejoined
from tests.drills.harness import wait_for
from tests.namespaces import new_name

pytestmark = [pytest.mark.cluster_drill, pytest.mark.timeout(600)]
ROUNDS = 20  # per client: writes of a new file and reads of a file written before the kill


@pytest.fixture
def settings(cluster_stack: Stack) -> Iterator[Settings]:
    """The cluster's settings in a namespace of their own; its HDFS root removed after."""
    mine = cluster_stack.settings.model_copy(update={"namespace": new_name()})
    yield mine
    webhdfs(mine).delete(mine.hdfs_root, recursive=True)


def create_target(settings: Settings) -> int:
    """The DataNode (1, 2, ...) the NameNode redirects a create from this host to now."""
    resp = requests.put(
        f"{settings.hdfs.webhdfs_url}/webhdfs/v1{settings.hdfs_root}/probe",
        params={"op": "CREATE", "user.name": settings.hdfs.user},
        allow_redirects=False,
        timeout=10,
    )  # the NameNode only chooses a DataNode: no file is created without the data step
    port = int(resp.headers["location"].split("/")[2].rpartition(":")[2])
    return next(n for n in range(1, DATANODES + 1) if datanode_ports(settings, n)[1] == port)


def round_trip(client: InsecureClient, root: str, folder: str, i: int) -> Counter[str]:
    """Write a new file and read one written before the kill; the operations that failed."""
    failed: Counter[str] = Counter()
    try:
        client.write(f"{root}/{folder}/new-{i:03d}", data=f"new {i}".encode(), overwrite=False)
    except Exception:  # any failure counts; the platform's client must have none
        failed["write"] += 1
    try:
        with client.read(f"{root}/before/{i:03d}") as reader:
            assert reader.read() == f"before {i}".encode()
    except Exception:
        failed["read"] += 1
    return failed


def test_webhdfs_client_right_after_a_datanode_sigkill(
    cluster_stack: Stack, settings: Settings
) -> None:
    ours = webhdfs(settings)
    plain = InsecureClient(settings.hdfs.webhdfs_url, user=settings.hdfs.user, timeout=TIMEOUT_S)
    root = settings.hdfs_root
    for i in range(ROUNDS):
        ours.write(f"{root}/before/{i:03d}", data=f"before {i}".encode())
    n = create_target(settings)

    kill = kill_node(cluster_stack, f"datanode-{n}")
    failures = {"plain": Counter[str](), "ours": Counter[str]()}
    for i in range(ROUNDS):
        failures["plain"] += round_trip(plain, root, "plain", i)
        failures["ours"] += round_trip(ours, root, "ours", i)
    window = time.monotonic() - kill.at

    port = datanode_ports(settings, n)[0]
    rejoined = wait_rejoined(
        cluster_stack, kill, lambda: health.check_datanode(settings, port=port), 180
    )
    copied = wait_for(lambda: under_replicated(settings) == 0, 180, "every block twice")
    print(
        f"\ndatanode-{n} killed; {ROUNDS} writes + {ROUNDS} reads per client in {window:.1f} s: "
        f"plain InsecureClient failed {dict(failures['plain'])}, webhdfs() failed "
        f"{dict(failures['ours'])}; live again {rejoined:.1f} s after the kill, "
        f"every block twice {copied:.0f} s later"
    )
    assert failures["ours"] == Counter(), failures
    assert sum(failures["plain"].values()) > 0, (
        "the drill missed the window: nothing to step around"
    )
    for i in range(ROUNDS):
        with ours.read(f"{root}/ours/new-{i:03d}") as reader:
            assert reader.read() == f"new {i}".encode()
