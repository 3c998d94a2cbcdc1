"""The WebHDFS client every layer uses: it steps around a DataNode that has just died.

Reads and writes of file data over WebHDFS take two hops: the NameNode answers the
operation (``OPEN``, ``CREATE``, ``APPEND``) with a redirect to a DataNode, and the data
goes to that DataNode. For seconds to minutes after a DataNode dies the NameNode still
believes it alive and keeps choosing it -- for a client on the DataNode's own host every
time, since it prefers the local node. The ``hdfs`` package gives up at the first refused
connection; the archiver, the batch publisher and the serving layer's part reads then fail
although another replica and another DataNode are right there. Spark's HDFS client does
not: it asks the NameNode again, excluding the dead node.

:class:`WebHdfsClient` does the same over WebHDFS: when the redirect's DataNode cannot be
reached it asks the NameNode again with ``excludedatanodes`` naming every DataNode that
failed so far, up to ``attempts`` hops in all, then raises the first failure. It hooks the
package's one request method, so ``read``, ``write``, ``upload`` and ``download`` keep
their behaviour and callers do not change.

What is retried, and why nothing else:

- Only a failure to reach the DataNode of a redirect. A NameNode that does not answer and
  every HTTP error (``FileAlreadyExistsException``, a 403, a 500 of either node) surface at
  once, as before: the archiver's claims and the publisher's rename depend on seeing
  "exists" the first time.
- A read (``OPEN``) is retried on any connection failure or timeout: it has no effect.
- A write (``CREATE``, ``APPEND``) only when the connection was never made (refused,
  unreachable, connect timeout): the DataNode never saw the request, so nothing was
  created or appended, and the data (bytes, or a generator not yet started) can be sent
  again. A write that failed after its bytes went out may have taken effect; sending it
  again could append twice or meet its own file, so it surfaces as before.
- When the NameNode, asked again, answers with anything but a redirect (no DataNode left:
  "Failed to find datanode"; the file created meanwhile by another writer), the first
  failure is raised: the operation failed because its DataNode was gone.

The NameNode reads ``excludedatanodes`` entries of the form ``host:port`` as a DataNode's
*transfer* address (the redirect names its HTTP address; Hadoop's own WebHDFS client sends
that, which matches no DataNode when the ports differ). The transfer address is looked up
in the NameNode's JMX (``NameNodeInfo.LiveNodes``); both forms are sent.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from hdfs import InsecureClient
from urllib3.exceptions import NewConnectionError

log = logging.getLogger(__name__)

ATTEMPTS = 4  # DataNode hops per operation: the first one and up to three others
WRITES = frozenset({"CREATE", "APPEND"})  # two calls from the package: redirect, then data
READ = "OPEN"  # one call from the package, which followed the redirect itself before
NODE_INFO = "Hadoop:service=NameNode,name=NameNodeInfo"
PENDING_MAX = 256  # redirects of writes whose data step has not run yet (normally 0 or 1)


@dataclass(frozen=True)
class NameNodeCall:
    """The NameNode request of a redirected operation, kept to ask it again."""

    method: str
    url: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def excluding(self, nodes: list[str]) -> NameNodeCall:
        """The same request with ``excludedatanodes`` naming ``nodes``."""
        params = {**(self.kwargs.get("params") or {}), "excludedatanodes": ",".join(nodes)}
        return NameNodeCall(self.method, self.url, {**self.kwargs, "params": params})


@dataclass(frozen=True)
class Hop:
    """The request carrying an operation's data to a DataNode.

    ``retriable`` says which of its failures mean "that DataNode is unreachable: ask the
    NameNode for another".
    """

    method: str
    kwargs: dict[str, Any]
    retriable: Callable[[BaseException], bool]


def never_connected(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure to open the connection: the server never saw a byte."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if not isinstance(exc, requests.exceptions.ConnectionError) or not exc.args:
        return False
    return isinstance(getattr(exc.args[0], "reason", None), NewConnectionError)


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` is a connection failure or a timeout (a read may be sent again)."""
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)


class WebHdfsClient(InsecureClient):
    """An ``hdfs.InsecureClient`` that retries a redirect to an unreachable DataNode.

    Args:
        url: the NameNode's WebHDFS URL (``http://host:port``).
        user: the HDFS user named in every request.
        attempts: DataNode hops per operation before the first failure is raised.
        **kwargs: passed to ``InsecureClient`` (``timeout``, ``root``, ``session``).
    """

    def __init__(
        self, url: str, user: str | None = None, attempts: int = ATTEMPTS, **kwargs: Any
    ) -> None:
        super().__init__(url, user=user, **kwargs)
        self.attempts = attempts
        self._pending: OrderedDict[str, NameNodeCall] = OrderedDict()
        self._pending_lock = threading.Lock()

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Every request of the package passes here: NameNode calls and DataNode data."""
        op = str((kwargs.get("params") or {}).get("op", "")).upper()
        if op == READ:
            return self._read(NameNodeCall(method, url, {**kwargs, "allow_redirects": False}))
        if op in WRITES:  # the package sends the data to the redirect's Location next
            answer = self._send(method, url, **kwargs)
            if answer.is_redirect:
                self._remember(answer.headers["location"], NameNodeCall(method, url, kwargs))
            return answer
        asked = self._recall(url)
        if asked is None:
            return self._send(method, url, **kwargs)
        return self._via_datanodes(asked, url, Hop(method, kwargs, never_connected))

    def _read(self, asked: NameNodeCall) -> requests.Response:
        """OPEN: the NameNode's redirect, then the DataNode's stream (or the NN's answer)."""
        answer = self._send(asked.method, asked.url, **asked.kwargs)
        if not answer.is_redirect:
            return answer  # an error, or a proxy (HttpFS) serving the data itself
        answer.close()
        hop = Hop("GET", {"stream": bool(asked.kwargs.get("stream"))}, unreachable)
        return self._via_datanodes(asked, answer.headers["location"], hop)

    def _via_datanodes(self, asked: NameNodeCall, location: str, hop: Hop) -> requests.Response:
        """Send ``hop`` to ``location``, stepping around DataNodes that cannot be reached.

        While the DataNode is unreachable, ask the NameNode again, excluding each DataNode
        that failed so far; after ``attempts`` hops, or when the NameNode answers anything
        but a redirect, raise the first failure.
        """
        excluded: list[str] = []
        first: requests.RequestException | None = None
        for n in range(1, self.attempts + 1):
            try:
                return self._send(hop.method, location, **hop.kwargs)
            except requests.RequestException as exc:
                if not hop.retriable(exc):
                    raise
                first = first or exc
                log.warning(
                    "WebHDFS: DataNode %s unreachable (hop %d of %d): %s",
                    _authority(location),
                    n,
                    self.attempts,
                    exc,
                )
            if n == self.attempts:
                break
            excluded += [d for d in self.datanode_names(asked.url, location) if d not in excluded]
            again = asked.excluding(excluded)
            answer = self._send(again.method, again.url, **again.kwargs)
            if not answer.is_redirect:
                log.warning(
                    "WebHDFS: the NameNode, excluding %s, answered %s: %s",
                    ",".join(excluded),
                    answer.status_code,
                    answer.text[:300],
                )
                answer.close()
                break
            answer.close()
            location = answer.headers["location"]
        assert first is not None  # every hop that did not return recorded a failure
        raise first

    def datanode_names(self, namenode_url: str, location: str) -> list[str]:
        """The names by which the NameNode may exclude the DataNode serving ``location``.

        Its HTTP ``host:port`` (what Hadoop's client sends) and its transfer address, found
        in the NameNode's JMX (what the NameNode matches).
        """
        http = _authority(location)
        try:
            live = self._live_nodes(namenode_url)
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "WebHDFS: no DataNode list in the NameNode's JMX (%s); "
                "excluding %s by its HTTP address only",
                exc,
                http,
            )
            return [http]
        host, _, port = http.rpartition(":")
        return [http] + [
            str(node["xferaddr"])
            for name, node in live.items()
            if node.get("infoAddr") == http
            or (name.rpartition(":")[0] == host and str(node.get("infoAddr")).endswith(f":{port}"))
        ]

    def _live_nodes(self, namenode_url: str) -> dict[str, dict[str, Any]]:
        """``LiveNodes`` of the NameNode's JMX: per DataNode, its addresses and state."""
        parts = urlsplit(namenode_url)
        url = f"{parts.scheme}://{parts.netloc}/jmx"
        resp = self._send("GET", url, params={"qry": NODE_INFO})
        resp.raise_for_status()
        (bean,) = resp.json()["beans"]
        return dict(json.loads(bean["LiveNodes"]))

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One HTTP request as the package sends it (its session, timeout, headers)."""
        response: requests.Response = super()._request(method, url, **kwargs)
        return response

    def _remember(self, location: str, asked: NameNodeCall) -> None:
        """Keep the NameNode call that redirected a write to ``location``."""
        with self._pending_lock:
            self._pending[location] = asked
            while len(self._pending) > PENDING_MAX:  # redirects whose data never went
                self._pending.popitem(last=False)

    def _recall(self, url: str) -> NameNodeCall | None:
        """The NameNode call that redirected a write to ``url``, if ``url`` is one."""
        with self._pending_lock:
            return self._pending.pop(url, None)


def _authority(url: str) -> str:
    """``host:port`` of ``url``."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"
