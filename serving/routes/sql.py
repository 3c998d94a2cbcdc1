"""Read-only SQL: Trino over the batch tables, DuckDB over the merged views.

``/sql`` runs on Trino over the master dataset and the batch views; ``/sql/merged`` runs
in the API process over batch ⊕ realtime (:mod:`serving.mergedsql`).
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import trino
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from lambdalab.errors import ServiceUnavailable, ValidationFailed
from lambdalab.settings import Settings
from serving.deps import BatchDep, ReadKey, SettingsDep, SpeedDep
from serving.mergedsql import SqlTimeout, run_merged_sql
from serving.models import MergedSqlRequest, MergedSqlResult, SqlRequest, SqlResult, errors
from serving.sqlguard import check_read_only

router = APIRouter(tags=["sql"], responses=errors(400, 401, 403, 422, 503, 504))


def _connect(settings: Settings) -> Any:
    timeout = max(1, int(settings.api.sql_timeout_s))
    return trino.dbapi.connect(
        host=settings.trino.host,
        port=settings.trino.port,
        user=settings.api.trino_user,
        catalog=settings.trino.catalog,
        schema=settings.trino_schema,
        session_properties={"query_max_execution_time": f"{timeout}s"},
        request_timeout=settings.api.sql_timeout_s + 10,
    )


def _exact(value: Any) -> Any:
    """A whole decimal (an exact sum, decimal(38,0)) as a JSON integer, not a float."""
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


def run_sql(settings: Settings, sql: str) -> dict[str, Any]:
    """Run one read-only statement; at most ``api.sql_row_limit`` rows, flagged truncated."""
    limit = settings.api.sql_row_limit
    started = time.perf_counter()
    conn = _connect(settings)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        rows = cur.fetchmany(limit + 1)
        columns = [d[0] for d in cur.description or []]
        if len(rows) > limit:
            cur.cancel()
    finally:
        conn.close()
    return {
        "columns": columns,
        "rows": [[_exact(v) for v in r] for r in rows[:limit]],
        "row_count": min(len(rows), limit),
        "truncated": len(rows) > limit,
        "catalog": settings.trino.catalog,
        "schema": settings.trino_schema,
        "elapsed_s": round(time.perf_counter() - started, 3),
    }


def _translate(settings: Settings, exc: Exception) -> Exception:
    if isinstance(exc, trino.exceptions.TrinoQueryError):
        if exc.error_name == "EXCEEDED_TIME_LIMIT":
            msg = f"query exceeded api.sql_timeout_s={settings.api.sql_timeout_s}s: {exc.message}"
            return HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, detail=msg)
        detail = f"Trino refused the query ({exc.error_name}): {exc.message}"
        return HTTPException(status.HTTP_400_BAD_REQUEST, detail=detail)
    where = f"{settings.trino.host}:{settings.trino.port}"
    msg = f"Trino at {where} did not answer ({type(exc).__name__}: {exc}); start the stack"
    return ServiceUnavailable(msg)


@router.post("/sql", response_model=SqlResult, response_model_by_alias=True)
async def sql(body: SqlRequest, _: ReadKey, settings: SettingsDep) -> dict[str, Any]:
    """Run one read-only statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) on Trino.

    Default catalog ``hive``, schema = the namespace. Writes and DDL are refused with 400;
    rows beyond ``api.sql_row_limit`` are cut (``truncated``); ``api.sql_timeout_s`` bounds
    the execution time (Trino session property ``query_max_execution_time``).
    """
    try:
        statement = check_read_only(body.sql)
    except ValidationFailed as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from exc
    try:
        return await run_in_threadpool(run_sql, settings, statement)
    except (trino.exceptions.Error, trino.exceptions.HttpError, OSError) as exc:
        raise _translate(settings, exc) from exc


@router.post("/sql/merged", response_model=MergedSqlResult)
async def sql_merged(
    request: Request,
    body: MergedSqlRequest,
    _: ReadKey,
    settings: SettingsDep,
    batch: BatchDep,
    speed: SpeedDep,
) -> dict[str, Any]:
    """Run one read-only statement over the merged views it names (batch ⊕ realtime).

    Each view named (unquoted) is a relation of that name: the rows of its current batch
    version and the realtime partials since that version's cut, a column ``part`` telling
    which. Aggregate measures with ``sum`` (count, sum: exact integers), ``min``/``max``,
    an avg as ``sum(x_sum) / sum(x_count)``, and ``hll_estimate(sketch)``,
    ``theta_estimate(sketch)``, ``kll_quantile_bigint(sketch, q)`` or
    ``kll_quantile_double(sketch, q)`` (of the merged sketch of each result row;
    docs/lab/measures.md).
    The answer names, per view, the version, cut and speed offsets it read. Limits as
    ``/sql``: ``api.sql_row_limit`` rows (``truncated``), ``api.sql_timeout_s`` (504),
    ``api.sql_memory``; writes, file access and settings are refused (400).
    """
    try:
        tables = request.app.state.realtime_tables
        result = await run_in_threadpool(run_merged_sql, settings, batch, speed, body.sql, tables)
    except ValidationFailed as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from exc
    except SqlTimeout as exc:
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, detail=str(exc)) from exc
    return {
        "columns": result.columns,
        "rows": result.rows,
        "row_count": len(result.rows),
        "truncated": result.truncated,
        "engine": "duckdb",
        "views": result.views,
        "elapsed_s": result.elapsed_s,
    }
