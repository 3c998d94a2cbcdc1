"""HDFS as every layer reads it: one WebHDFS client and the published versions of a view.

The batch layer publishes a view version by one rename to ``views/{view}/versions/v{N}``
with its ``_lineage.json`` (:mod:`lambdalab.paths`). The speed layer (expiry and rebuild)
and the serving layer read which versions exist and their cuts; this module is that one
reading, so no layer parses another layer's directories. Failures of WebHDFS become
:class:`~lambdalab.errors.ServiceUnavailable` naming the NameNode, never a bare ``HdfsError``.
The client (:mod:`lambdalab.webhdfs`) steps around a DataNode that has just died.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from hdfs import InsecureClient
from hdfs.util import HdfsError
from requests.exceptions import RequestException

from lambdalab.errors import NotFound, ServiceUnavailable
from lambdalab.paths import VERSION_DIR, HdfsPaths
from lambdalab.settings import Settings
from lambdalab.webhdfs import WebHdfsClient

LINEAGE = "_lineage.json"
DIMENSION_DATA = "data.parquet"
T = TypeVar("T")
TIMEOUT_S = (10, 60)  # connect, read: a DataNode that does not accept is tried for 10 s


def webhdfs(settings: Settings) -> WebHdfsClient:
    """A WebHDFS client for the configured NameNode that steps around a dead DataNode."""
    return WebHdfsClient(settings.hdfs.webhdfs_url, user=settings.hdfs.user, timeout=TIMEOUT_S)


@contextmanager
def answering(settings: Settings, what: str) -> Iterator[None]:
    """Turn a WebHDFS failure inside the block into ServiceUnavailable naming ``what``."""
    try:
        yield
    except (HdfsError, RequestException, OSError) as exc:
        msg = f"HDFS (WebHDFS {settings.hdfs.webhdfs_url}) did not answer for {what}: {exc}"
        raise ServiceUnavailable(msg) from exc


def guarded(settings: Settings, what: str, func: Callable[..., T], *args: Any) -> T:
    """Call ``func(*args)``; a WebHDFS failure becomes ServiceUnavailable naming ``what``."""
    with answering(settings, what):
        return func(*args)


def published_versions(client: InsecureClient, settings: Settings, view: str) -> list[int]:
    """Version numbers of ``view`` published so far, newest first (empty before the first).

    Raises:
        ServiceUnavailable: HDFS did not answer.
    """
    return _versions_in(client, settings, HdfsPaths(settings).versions(view))


def dimension_versions(client: InsecureClient, settings: Settings, name: str) -> list[int]:
    """Version numbers of dimension table ``name`` loaded so far, newest first.

    Raises:
        ServiceUnavailable: HDFS did not answer.
    """
    return _versions_in(client, settings, HdfsPaths(settings).dimension(name))


def _versions_in(client: InsecureClient, settings: Settings, root: str) -> list[int]:
    """The numbers of the version folders (``VERSION_DIR``) under ``root``, newest first."""
    with answering(settings, root):
        if client.status(root, strict=False) is None:
            return []
        names = client.list(root)
    return sorted((int(m["n"]) for m in map(VERSION_DIR.match, names) if m), reverse=True)


def read_dimension(client: InsecureClient, settings: Settings, name: str, n: int) -> Any:
    """Version ``n`` of dimension table ``name`` as a pyarrow Table.

    Raises:
        ServiceUnavailable: HDFS did not answer.
    """
    import io

    import pyarrow.parquet as pq

    path = f"{HdfsPaths(settings).dimension_version(name, n)}/{DIMENSION_DATA}"
    with answering(settings, path), client.read(path) as reader:
        return pq.read_table(io.BytesIO(reader.read()))


def read_lineage(client: InsecureClient, settings: Settings, view: str, n: int) -> dict[str, Any]:
    """The ``_lineage.json`` of version ``n`` of ``view``.

    Raises:
        NotFound: the version has no lineage (not published, or pruned meanwhile).
        ServiceUnavailable: HDFS did not answer.
    """
    path = f"{HdfsPaths(settings).version(view, n)}/{LINEAGE}"
    try:
        with client.read(path) as reader:
            return dict(json.loads(reader.read()))
    except HdfsError as exc:
        if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
            msg = f"view {view}: version {n} has no lineage at {path} ({exc})"
            raise NotFound(msg) from exc
        msg = f"HDFS (WebHDFS {settings.hdfs.webhdfs_url}) did not answer for {path}: {exc}"
        raise ServiceUnavailable(msg) from exc
    except (RequestException, OSError) as exc:
        msg = f"HDFS (WebHDFS {settings.hdfs.webhdfs_url}) did not answer for {path}: {exc}"
        raise ServiceUnavailable(msg) from exc


def published_cuts(
    settings: Settings, view: str, client: InsecureClient | None = None
) -> list[int]:
    """Cuts (ms) of the published versions of ``view``, newest version first.

    Raises:
        ServiceUnavailable: HDFS did not answer.
    """
    hdfs = client if client is not None else webhdfs(settings)
    return [
        int(read_lineage(hdfs, settings, view, n)["cut_ms"])
        for n in published_versions(hdfs, settings, view)
    ]
