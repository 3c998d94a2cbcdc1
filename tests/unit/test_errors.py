"""One error root, mapped to HTTP in one place (no services)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from hdfs.util import HdfsError

from batch.reader import BatchReader
from lambdalab import errors
from lambdalab.errors import DefinitionError, LambdaLabError, NotFound, ServiceUnavailable
from lambdalab.settings import load_settings
from serving.app import create_app

pytestmark = pytest.mark.unit


def test_every_platform_error_has_one_root() -> None:
    for name in dir(errors):
        value = getattr(errors, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, LambdaLabError), name


class _BrokenHdfs:
    def status(self, path: str, strict: bool = True) -> Any:
        msg = "NameNode is in safe mode"
        raise HdfsError(msg)

    def list(self, path: str) -> list[str]:
        msg = "NameNode is in safe mode"
        raise HdfsError(msg)


def test_an_hdfs_error_is_service_unavailable() -> None:
    reader = BatchReader(load_settings(), client=_BrokenHdfs())  # type: ignore[arg-type]
    with pytest.raises(ServiceUnavailable, match="safe mode"):
        reader.current("pageviews_by_url_hourly")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFound("no such view 'x'"), 404),
        (DefinitionError("view x: key 'y' is not a field"), 500),
        (ServiceUnavailable("Redis did not answer"), 503),
    ],
)
def test_errors_map_to_statuses(error: Exception, status: int) -> None:
    app = create_app(load_settings())

    @app.get("/boom")
    def boom() -> None:
        raise error

    r = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert r.status_code == status and str(error) in r.json()["detail"]
