"""``/sql`` stays read-only in Trino itself, even if its lexical guard is bypassed."""

from __future__ import annotations

import pytest
from trino.exceptions import TrinoUserError

from batch.trino_tables import TrinoTables
from lambdalab.settings import Settings
from serving.routes.sql import run_sql


def test_the_api_trino_user_cannot_write(stack: Settings, settings: Settings) -> None:
    TrinoTables(settings).ensure_schema()  # as the batch layer's user, which may write
    assert run_sql(settings, "SELECT 1")["rows"] == [[1]]
    for statement in (
        "CREATE TABLE sneaky (a integer)",
        f"CREATE SCHEMA {settings.trino.catalog}.{settings.trino_schema}_sneaky",
        f"DROP SCHEMA {settings.trino.catalog}.{settings.trino_schema}",
    ):
        with pytest.raises(TrinoUserError, match="Access Denied"):
            run_sql(settings, statement)  # straight to Trino: no lexical guard on this path
