"""The serving layer's HTTP contract: request and response bodies, as in the OpenAPI schema.

Measures differ per view, so rows allow extra fields (one per measure, rendered by its
kind, :mod:`views.measures`: a number, an hll/theta float estimate, an avg float or null,
quantiles an object ``{"p50": ...}``; plus ``<name>_sketch`` base64 for each sketch when
sketches are asked for).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """Every error response: a message saying what went wrong and what to do."""

    detail: str = Field(description="what went wrong, naming the view, backend or field")
    errors: list[dict[str, Any]] | None = Field(None, description="per-field validation errors")


class MergedRow(BaseModel):
    """One event-time bucket of a merged answer; one extra field per measure."""

    model_config = ConfigDict(extra="allow")

    bucket: str = Field(description="bucket start, ISO-8601 UTC")
    bucket_ms: int = Field(description="bucket start, ms since the epoch")


class KappaSource(BaseModel):
    """The Kappa replay output that served an answer (``lambdalab lab replay``)."""

    output: str = Field(description="the replay's output, `{view}__k{generation}`")
    generation: int = Field(description="which replay of the view")
    switched_ms: int = Field(description="when serving switched to it, ms since the epoch")


KappaServed = Annotated[
    KappaSource | None,
    Field(
        description="set when a Kappa replay serves the view instead of batch ⊕ realtime "
        "(`lambdalab lab replay`): then version and cut are null and speed_offsets are the "
        "replay's",
    ),
]
DimensionVersions = Annotated[
    dict[str, dict[str, int | None]] | None,
    Field(
        description="for a view enriched from dimension tables: the version of each table "
        "the batch part and the realtime part used, e.g. "
        '{"batch": {"campaigns": 2}, "realtime": {"campaigns": 2}}',
    ),
]


class MergedAnswer(BaseModel):
    """``batch view @ cut ⊕ realtime since cut`` for one view key, with provenance."""

    view: str
    key: str
    version: int | None = Field(description="batch version read (None: none published)")
    cut: str | None = Field(description="that version's ingest-time cut, ISO-8601 UTC")
    cut_ms: int | None
    batch: dict[str, dict[str, Any]] = Field(description="batch part per bucket_ms")
    realtime: dict[str, dict[str, Any]] = Field(description="realtime part per bucket_ms")
    merged: list[MergedRow]
    freshness: str | None = Field(description="newest ingest time reflected, ISO-8601 UTC")
    freshness_ms: int | None
    speed_offsets: dict[str, int] = Field(description="next offset per partition, speed part")
    partial: bool = Field(description="true when a part was unavailable (availability mode)")
    missing: list[str] = Field(description="unavailable parts: 'batch' and/or 'realtime'")
    kappa: KappaServed = None
    dimensions: DimensionVersions = None
    from_: str = Field(alias="from", description="first bucket start asked, ISO-8601 UTC")
    to: str = Field(description="end of the range (exclusive), ISO-8601 UTC")

    model_config = ConfigDict(populate_by_name=True)


class Sourced(BaseModel):
    """The provenance of a merged answer over many keys: one version, one realtime snapshot."""

    view: str
    version: int | None = Field(description="batch version read (None: none published)")
    cut: str | None = Field(description="that version's ingest-time cut, ISO-8601 UTC")
    cut_ms: int | None
    freshness: str | None = Field(description="newest ingest time reflected, ISO-8601 UTC")
    freshness_ms: int | None
    speed_offsets: dict[str, int] = Field(description="next offset per partition, speed part")
    partial: bool = Field(description="true when a part was unavailable (availability mode)")
    missing: list[str] = Field(description="unavailable parts: 'batch' and/or 'realtime'")
    kappa: KappaServed = None
    dimensions: DimensionVersions = None
    next_cursor: str | None = Field(
        description="pass as `cursor` (with the same other parameters) for the next page; "
        "null on the last page"
    )
    changed_since_first_page: list[str] = Field(
        description="what differs from the page the cursor started at: 'version' (another "
        "batch version) and/or 'realtime' (other speed-layer offsets); empty on a first page "
        "and while nothing changed. Each page is exact for its own version and snapshot"
    )


class QueryRow(BaseModel):
    """One row of a query: a group of keys and a (rolled-up) bucket; one field per measure."""

    model_config = ConfigDict(extra="allow")

    key: dict[str, str] = Field(
        description="the grouped key fields, rendered as key parts ('(none)' for a missing value)"
    )
    bucket: str = Field(description="bucket start, ISO-8601 UTC")
    bucket_ms: int = Field(description="bucket start, ms since the epoch")


class QueryAnswer(Sourced):
    """Rows of ``batch view @ cut ⊕ realtime since cut``, filtered, grouped, rolled up, ordered."""

    from_: str = Field(alias="from", description="first bucket start, ISO-8601 UTC")
    to: str = Field(description="end of the range (exclusive), ISO-8601 UTC")
    group_by: list[str] = Field(description="the key fields rows are grouped by")
    rollup_s: int | None = Field(description="bucket width in seconds (null: the whole range)")
    order_by: list[str] = Field(description="order terms ('-' descending), then key, bucket")
    rows: list[QueryRow]

    model_config = ConfigDict(populate_by_name=True)


class ViewKey(BaseModel):
    """One view key: as the point query's ``key`` takes it, and field by field."""

    key: str = Field(description="the view key (key fields joined by \\x1f)")
    fields: dict[str, str] = Field(description="each key field, rendered as a key part")


class KeysAnswer(Sourced):
    """View keys with data in the batch version or the realtime part, in key order."""

    keys: list[ViewKey]


class ViewSummary(BaseModel):
    """A view's definition and its current batch version."""

    name: str
    definition: dict[str, Any]
    fingerprint: str
    version: int | None = None
    cut: str | None = None
    cut_ms: int | None = None
    age_s: float | None = Field(None, description="seconds since the current version's cut")
    error: str | None = Field(None, description="why the batch store could not be read")


class SqlRequest(BaseModel):
    """One read-only SQL statement for Trino."""

    sql: str = Field(min_length=1, max_length=100_000, examples=["SELECT 1 AS one", "SHOW TABLES"])


class SqlResult(BaseModel):
    """Rows of a read-only query, at most ``settings.api.sql_row_limit`` of them."""

    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool = Field(description="true when more rows existed than the row limit")
    catalog: str
    schema_: str = Field(alias="schema")
    elapsed_s: float

    model_config = ConfigDict(populate_by_name=True)


class MergedSqlRequest(BaseModel):
    """One read-only SQL statement over the merged views (batch ⊕ realtime), for DuckDB."""

    sql: str = Field(
        min_length=1,
        max_length=100_000,
        examples=[
            "SELECT url, sum(views) AS views FROM pageviews_by_url_hourly "
            "GROUP BY url ORDER BY views DESC LIMIT 10",
            "SELECT url, hll_estimate(unique_visitors) AS visitors "
            "FROM visitors_by_url_hourly GROUP BY url ORDER BY visitors DESC LIMIT 10",
        ],
    )


class ViewRead(BaseModel):
    """What a merged SQL answer read of one view: one batch version and one speed snapshot."""

    version: int | None = Field(description="batch version read (None: none published)")
    cut: str | None
    cut_ms: int | None = Field(description="its ingest-time cut: realtime windows >= it")
    freshness: str | None
    freshness_ms: int | None
    speed_offsets: dict[str, int] = Field(description="partition -> next offset covered")
    partial: bool
    missing: list[str]


class MergedSqlResult(BaseModel):
    """Rows of a read-only query over the merged views, at most ``api.sql_row_limit``."""

    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool = Field(description="true when more rows existed than the row limit")
    engine: str = Field(description="'duckdb': in the API process, over the parts below")
    views: dict[str, ViewRead] = Field(description="per view the statement read: its parts")
    elapsed_s: float


class Health(BaseModel):
    """Liveness of the API and reachability of each backend."""

    status: str = Field(description="'ok' when every backend answers, else 'degraded'")
    backends: dict[str, str]


class Lineage(BaseModel):
    """The current batch version of a view and its ``_lineage.json``."""

    version: int
    path: str = Field(description="the version's folder on HDFS")
    lineage: dict[str, Any] = Field(description="cut, inputs, offsets and timings of the run")


class Pipeline(BaseModel):
    """The pipeline's health snapshot; a part that could not be read holds an ``error``."""

    at: str = Field(description="when the snapshot was taken, ISO-8601 UTC")
    at_ms: int
    streams: dict[str, dict[str, Any]] = Field(description="per declared stream: ingest, speed")
    ingest: dict[str, Any] = Field(description="records accepted, summed over the streams")
    speed: dict[str, Any] = Field(description="speed layer offsets, lag and freshness, summed")
    batch: dict[str, dict[str, Any]] = Field(description="per view: version, cut and age")
    dead_letters: dict[str, Any] = Field(description="total and count per reason")


class StreamSample(BaseModel):
    """One stream at one sampling instant; ``None`` where its backend did not answer."""

    records: int | None = Field(description="records accepted into the stream's topic so far")
    rate_per_s: float | None = Field(
        description="ingest rate since the previous sample, records per second (None: first)"
    )
    lag_total: int | None = Field(description="speed-layer lag, records over all partitions")
    freshness_age_s: float | None = Field(
        description="seconds since the newest ingest time the speed layer applied"
    )


class HistoryPoint(BaseModel):
    """One sample of every declared stream."""

    at: str = Field(description="when the sample was taken, ISO-8601 UTC")
    at_ms: int
    streams: dict[str, StreamSample]


class PipelineHistory(BaseModel):
    """The samples this API process kept, oldest first (its own ring buffer, not shared)."""

    interval_s: float = Field(description="sampling period in seconds (0: sampling is off)")
    capacity: int = Field(description="samples kept at most; older ones are dropped")
    points: list[HistoryPoint]


DESCRIPTIONS = {
    400: "not a single read-only query, or Trino (/sql) or DuckDB (/sql/merged) refused it",
    401: "missing API key: send it in the X-API-Key header",
    403: "the API key lacks the scope (read for queries, write for ingest)",
    404: "unknown view, or no published batch version",
    422: "invalid parameters, naming each one",
    500: "internal error: the message names the cause; see the API's log",
    503: "a backend is unavailable (api.availability=consistent)",
    504: "the query exceeded api.sql_timeout_s",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of an operation that can answer ``codes``: each an :class:`ErrorBody`."""
    return {code: {"model": ErrorBody, "description": DESCRIPTIONS[code]} for code in codes}


AUTH_ERRORS = errors(401, 403)
