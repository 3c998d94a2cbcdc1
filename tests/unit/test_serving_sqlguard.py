"""The read-only SQL gate: queries pass, writes, DDL and session changes are refused."""

from __future__ import annotations

import pytest

from lambdalab.errors import ValidationFailed
from serving.sqlguard import check_read_only


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "select url, count(*) from pageviews group by 1;",
        "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
        "SHOW TABLES",
        "DESCRIBE pageviews",
        "EXPLAIN SELECT 1",
        "SELECT 'insert into x; drop table y' AS s -- delete\n",
        'SELECT "update" FROM t /* create */',
    ],
)
def test_queries_pass(sql: str) -> None:
    assert check_read_only(sql).upper().lstrip().startswith(tuple("SWDEV"))


@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("INSERT INTO t VALUES (1)", "INSERT"),
        ("DELETE FROM t", "DELETE"),
        ("CREATE TABLE t (x int)", "CREATE"),
        ("DROP TABLE pageviews", "DROP"),
        ("ALTER TABLE t RENAME TO u", "ALTER"),
        ("EXPLAIN ANALYZE INSERT INTO t SELECT 1", "ANALYZE"),
        ("WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a", "INSERT"),
        ("SET SESSION query_max_execution_time = '1h'", "SET"),
        ("CALL system.sync_partition_metadata('a', 'b', 'FULL')", "CALL"),
        ("TRUNCATE TABLE t", "TRUNCATE"),
    ],
)
def test_writes_and_ddl_are_refused_naming_the_keyword(sql: str, word: str) -> None:
    with pytest.raises(ValidationFailed, match=word):
        check_read_only(sql)


@pytest.mark.parametrize(
    "sql", ["", "  ;", "-- only a comment", "SELECT 1; DROP TABLE t", "SELECT 1; SELECT 2"]
)
def test_empty_or_several_statements_are_refused(sql: str) -> None:
    with pytest.raises(ValidationFailed):
        check_read_only(sql)
