"""The WebHDFS client steps around a dead DataNode, and around nothing else.

A fake NameNode and fake DataNodes on loopback ports speak just enough WebHDFS: the
NameNode redirects ``OPEN``/``CREATE``/``APPEND`` to the first DataNode of its list that
``excludedatanodes`` does not name (matched by transfer address, as Hadoop's NameNode does),
and lists its DataNodes in its JMX. A dead DataNode is a bound port nobody listens on
(connect refused); a hung one listens and never answers. Each fake records what it was
asked, so a test sees the exclusions sent and counts the attempts.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from hdfs.util import HdfsError

from lambdalab.webhdfs import ATTEMPTS, WebHdfsClient
from tests.unit.conftest import Loopback

pytestmark = pytest.mark.unit
EXISTS = "/exists"  # a path the fake NameNode refuses to create: FileAlreadyExistsException
BROKEN = "/broken"  # a path the fake NameNode answers with a 500 for every operation


@dataclass
class DataNode:
    """A DataNode as the NameNode knows it: HTTP port (redirects) and transfer address."""

    http_port: int
    xfer: str  # what ``excludedatanodes`` must name to exclude it


@dataclass
class Cluster:
    """What the fake nodes hold and were asked."""

    datanodes: list[DataNode] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    namenode_calls: list[dict[str, str]] = field(default_factory=list)
    datanode_calls: list[tuple[str, int]] = field(default_factory=list)
    jmx: bool = True  # whether the NameNode's /jmx lists its DataNodes


def _params(path: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(path).query, keep_blank_values=True).items()}


class NameNodeHandler(BaseHTTPRequestHandler):
    cluster: Cluster

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _remote(self, status: int, exception: str, message: str) -> None:
        self._answer(status, {"RemoteException": {"exception": exception, "message": message}})

    def _redirect(self) -> None:
        params, path = _params(self.path), urlsplit(self.path).path.removeprefix("/webhdfs/v1")
        self.cluster.namenode_calls.append({"path": path, **params})
        excluded = set(filter(None, params.get("excludedatanodes", "").split(",")))
        if path == BROKEN:
            return self._remote(500, "IOException", "the NameNode is unwell")
        if params["op"] == "CREATE" and path == EXISTS:
            return self._remote(403, "FileAlreadyExistsException", f"{path} already exists")
        if params["op"] == "OPEN" and path not in self.cluster.files:
            return self._remote(404, "FileNotFoundException", f"File does not exist: {path}")
        for dn in self.cluster.datanodes:
            if dn.xfer not in excluded:
                location = f"http://127.0.0.1:{dn.http_port}/webhdfs/v1{path}?op={params['op']}"
                return self._answer(307, {}, {"Location": location})
        msg = (
            f"Failed to find datanode, suggest to check cluster health. excludeDatanodes={excluded}"
        )
        return self._remote(403, "IOException", msg)

    def do_GET(self) -> None:
        if self.path.startswith("/jmx"):
            live = {
                f"127.0.0.1:{dn.xfer.rpartition(':')[2]}": {
                    "infoAddr": f"127.0.0.1:{dn.http_port}",
                    "xferaddr": dn.xfer,
                }
                for dn in self.cluster.datanodes
            }
            if not self.cluster.jmx:
                return self._answer(404, {})
            return self._answer(200, {"beans": [{"LiveNodes": json.dumps(live)}]})
        return self._redirect()

    do_PUT = do_POST = _redirect


class DataNodeHandler(BaseHTTPRequestHandler):
    cluster: Cluster

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding") == "chunked":
            chunks = []
            while size := int(self.rfile.readline().strip(), 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _done(self, status: int, data: bytes = b"") -> None:
        self.cluster.datanode_calls.append((self.command, self.server.server_address[1]))
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        self.cluster.files[urlsplit(self.path).path.removeprefix("/webhdfs/v1")] = self._body()
        self._done(201)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.removeprefix("/webhdfs/v1")
        self.cluster.files[path] = self.cluster.files.get(path, b"") + self._body()
        self._done(200)

    def do_GET(self) -> None:
        self._done(200, self.cluster.files[urlsplit(self.path).path.removeprefix("/webhdfs/v1")])


class Fakes:
    """A fake NameNode and the DataNodes a test adds: live, dead or hung."""

    def __init__(self, loopback: Loopback) -> None:
        self.loopback, self.cluster, self.servers = loopback, Cluster(), []
        self.namenode = self._serve(NameNodeHandler)
        self.xfer_ports = iter(range(50010, 50100))

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> int:
        bound = type(handler.__name__, (handler,), {"cluster": self.cluster})
        server = ThreadingHTTPServer(("127.0.0.1", 0), bound)
        self.servers.append(server)
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        port = int(server.server_address[1])
        self.loopback.guard.allowed.add(port)
        return port

    def add(self, kind: str) -> DataNode:
        """A DataNode the NameNode lists next: ``live``, ``dead`` (refuses) or ``hung``."""
        port = {
            "live": lambda: self._serve(DataNodeHandler),
            "dead": self.loopback.refusing,
            "hung": self.loopback.listening,
        }[kind]()
        node = DataNode(port, f"127.0.0.1:{next(self.xfer_ports)}")
        self.cluster.datanodes.append(node)
        return node

    def client(self, **kwargs: Any) -> WebHdfsClient:
        return WebHdfsClient(f"http://127.0.0.1:{self.namenode}", user="lab", **kwargs)

    def exclusions(self) -> list[str]:
        """``excludedatanodes`` of each NameNode call, in order ('' when none)."""
        return [call.get("excludedatanodes", "") for call in self.cluster.namenode_calls]

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def fakes(loopback: Loopback) -> Iterator[Fakes]:
    nodes = Fakes(loopback)
    yield nodes
    nodes.close()


def test_write_and_read_go_around_a_dead_datanode(fakes: Fakes) -> None:
    dead, live = fakes.add("dead"), fakes.add("live")
    client = fakes.client()
    client.write("/f", data=b"payload")
    with client.read("/f") as reader:
        assert reader.read() == b"payload"
    both = f"127.0.0.1:{dead.http_port},{dead.xfer}"  # Hadoop's form, and the one that works
    assert fakes.exclusions() == ["", both, "", both]
    assert fakes.cluster.datanode_calls == [("PUT", live.http_port), ("GET", live.http_port)]


def test_exclusions_accumulate_over_several_dead_datanodes(fakes: Fakes) -> None:
    first, second = fakes.add("dead"), fakes.add("dead")
    fakes.add("live")
    fakes.client().write("/f", data=b"x")
    assert fakes.exclusions()[-1].split(",") == [
        f"127.0.0.1:{first.http_port}",
        first.xfer,
        f"127.0.0.1:{second.http_port}",
        second.xfer,
    ]
    assert fakes.cluster.files == {"/f": b"x"}


def test_append_and_a_streamed_write_are_retried(fakes: Fakes) -> None:
    fakes.add("dead")
    fakes.add("live")
    client = fakes.client()
    with client.write("/f") as writer:  # data from a generator the package fills
        writer.write(b"one,")
    client.write("/f", data=b"two", append=True)
    assert fakes.cluster.files == {"/f": b"one,two"}
    assert [c["op"] for c in fakes.cluster.namenode_calls] == ["CREATE"] * 2 + ["APPEND"] * 2


def test_without_jmx_the_datanode_is_excluded_by_its_http_address(fakes: Fakes) -> None:
    dead = fakes.add("dead")
    fakes.add("live")
    fakes.cluster.jmx = False
    with pytest.raises(requests.ConnectionError):  # the fake NN matches transfer addresses
        fakes.client(attempts=2).write("/f", data=b"x")
    assert fakes.exclusions() == ["", f"127.0.0.1:{dead.http_port}"]


def test_attempts_are_bounded_and_the_first_failure_raised(fakes: Fakes) -> None:
    dead = [fakes.add("dead") for _ in range(ATTEMPTS + 1)]
    fakes.add("live")
    with pytest.raises(requests.ConnectionError) as failed:
        fakes.client().write("/f", data=b"x")
    assert f"port={dead[0].http_port}" in str(failed.value)
    assert len(fakes.cluster.namenode_calls) == ATTEMPTS
    assert fakes.cluster.datanode_calls == []


def test_no_datanode_left_raises_the_first_failure(fakes: Fakes) -> None:
    dead = fakes.add("dead")
    fakes.cluster.files["/f"] = b"x"
    with pytest.raises(requests.ConnectionError) as failed, fakes.client().read("/f"):
        pass
    assert f"port={dead.http_port}" in str(failed.value)  # not "Failed to find datanode"
    assert fakes.exclusions() == ["", f"127.0.0.1:{dead.http_port},{dead.xfer}"]


def test_namenode_errors_surface_at_once(fakes: Fakes) -> None:
    fakes.add("dead")
    fakes.add("live")
    client = fakes.client()
    with pytest.raises(HdfsError) as exists:
        client.write(EXISTS, data=b"x")
    assert exists.value.exception == "FileAlreadyExistsException"
    with pytest.raises(HdfsError, match="File does not exist"), client.read("/nothing"):
        pass
    with pytest.raises(HdfsError, match="unwell"):
        client.write(BROKEN, data=b"x")
    assert len(fakes.cluster.namenode_calls) == 3  # one call each, no retry
    assert fakes.cluster.datanode_calls == []


def test_a_dead_namenode_is_not_retried(loopback: Loopback) -> None:
    client = WebHdfsClient(f"http://127.0.0.1:{loopback.refusing()}", user="lab")
    with pytest.raises(requests.ConnectionError):
        client.write("/f", data=b"x")


def test_a_hung_datanode_is_retried_for_reads_not_for_writes(fakes: Fakes) -> None:
    fakes.add("hung")
    live = fakes.add("live")
    fakes.cluster.files["/f"] = b"old"
    client = fakes.client(timeout=0.5)
    with client.read("/f") as reader:  # a read has no effect: safe to send again
        assert reader.read() == b"old"
    with pytest.raises(requests.ReadTimeout):  # the bytes may have reached it: not again
        client.write("/f", data=b"new", overwrite=True)
    assert fakes.cluster.files == {"/f": b"old"}
    assert fakes.cluster.datanode_calls == [("GET", live.http_port)]
