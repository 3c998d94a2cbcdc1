"""Merged SQL (serving.mergedsql) without services: key fields, the realtime part, the limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from lambdalab.errors import ValidationFailed
from lambdalab.settings import Settings
from serving.mergedsql import SqlTimeout, field_value, run_merged_sql
from views.definition import key_part
from views.registry import get_view

pytestmark = pytest.mark.unit
VIEW = get_view("bytes_by_referrer_daily")
DAY = 86_400_000


@pytest.mark.parametrize(
    "value", [None, "(none)", "\\(none)", "a\x1fb", "a\\u001f", "\\\\x", "plain", "", "\\"]
)
def test_a_key_field_value_is_recovered_from_its_rendered_part(value: str | None) -> None:
    assert field_value(key_part(value)) == value


@dataclass
class _Snapshot:
    cells: dict[str, dict[int, dict[str, Any]]]
    freshness_ms: int | None = 5
    offsets: dict[int, int] | None = None


class _NoBatch:
    def current(self, view: str) -> None:
        return None


class _Speed:
    def view_snapshot(self, view: str, since: int, lo: int, hi: int, keep: Any) -> _Snapshot:
        cells = {
            key_part(None): {0: {"bytes": 2**70, "views": 2}, DAY: {"bytes": 1, "views": 1}},
            key_part("(none)"): {0: {"bytes": 3, "views": 1}},
        }
        return _Snapshot(cells, offsets={0: 4})


def _run(settings: Settings, sql: str) -> Any:
    return run_merged_sql(settings, _NoBatch(), _Speed(), sql)  # type: ignore[arg-type]


def test_the_realtime_part_alone_groups_exactly(settings: Settings) -> None:
    result = _run(
        settings,
        f"SELECT referrer, sum(bytes) AS b, sum(views) AS v FROM {VIEW.name} "
        "GROUP BY referrer ORDER BY referrer NULLS FIRST",
    )
    assert result.rows == [[None, 2**70 + 1, 3], ["(none)", 3, 1]]
    assert result.views[VIEW.name]["version"] is None
    assert result.views[VIEW.name]["speed_offsets"] == {"0": 4}


def test_refused_statements_name_the_problem(settings: Settings) -> None:
    with pytest.raises(ValidationFailed, match="Permission"):
        _run(settings, f"SELECT * FROM {VIEW.name}, read_csv('/etc/passwd')")
    with pytest.raises(ValidationFailed, match="reads no view"):
        _run(settings, "SELECT 1")


def test_a_long_statement_is_interrupted(settings: Settings) -> None:
    api = settings.api.model_copy(update={"sql_timeout_s": 0.2})
    slow = settings.model_copy(update={"api": api})
    with pytest.raises(SqlTimeout):
        _run(slow, f"SELECT count(*) FROM {VIEW.name}, range(100000000000) a")
