"""Queries over many keys of a view: rows (filter, group, roll up, order, page) and keys.

``GET /views/{view}/rows`` and ``GET /views/{view}/keys`` answer from one batch version
and one realtime snapshot per request, like the point query ``GET /views/{view}``, with
the same provenance. Key fields are named query parameters: ``?url=/a`` (equality),
``?url=/a&url=/b`` (one of a set), ``?url.prefix=/page/`` (a prefix); a key field named
like one of the fixed parameters is spelled ``key.<field>``. The OpenAPI document gets one
path per registered view (:func:`document`), with that view's key fields, measures and
rollup units, so what it admits is exactly what the API accepts. docs/queries.md shows
each form with curl.
"""

from __future__ import annotations

import copy
import functools
import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from lambdalab.schema import TS_MAX, TS_MIN
from lambdalab.settings import Settings
from serving.cursor import (
    MAX_CHARS,
    Cursor,
    InvalidCursor,
    changed,
    decode,
    fingerprint,
    snapshot_digest,
)
from serving.deps import BatchDep, BatchSource, ReadKey, SettingsDep, SpeedDep, SpeedSource
from serving.merge import Provenance, iso_ms, provenance
from serving.models import KeysAnswer, QueryAnswer, errors
from serving.pushdown import select_page, supported
from serving.query import merged_cells, merged_parts
from serving.realtime import RealtimeTables
from serving.routes.views import (
    END,
    EPOCH,
    MAX_BUCKETS,
    START,
    UNPROCESSABLE,
    bucket_span,
    known_view,
    moment_ms,
)
from serving.selection import BUCKET, KeyFilter, Order, Page, Selection, keys_in, page, rows
from views.definition import ViewDef
from views.registry import all_views

router = APIRouter(prefix="/views", tags=["views"])
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
ROWS_PARAMS = ("from", "to", "group_by", "rollup", "order_by", "limit", "cursor", "sketches")
KEYS_PARAMS = ("prefix", "from", "to", "limit", "cursor")
DEFAULT_LIMIT, MAX_LIMIT = 100, 10_000
TS_MIN_MS = (TS_MIN - EPOCH).days * 86_400_000
TS_MAX_MS = (TS_MAX - EPOCH).days * 86_400_000
CURSOR = Query(max_length=MAX_CHARS, description="next_cursor of the previous page (opaque)")
LIMIT = Query(ge=1, le=MAX_LIMIT, description="at most this many rows (top-N with order_by)")
KEYS_LIMIT = Query(ge=1, le=MAX_LIMIT, description="at most this many keys")


def filter_params(view: ViewDef) -> dict[str, tuple[str, str]]:
    """Query parameter -> (key field, 'equals' or 'prefix') of ``view``'s key filters."""
    fixed = set(ROWS_PARAMS) | set(KEYS_PARAMS)
    out = {}
    for field in view.keys:
        name = f"key.{field}" if field in fixed else field
        out[name] = (field, "equals")
        out[f"{name}.prefix"] = (field, "prefix")
    return out


def key_filter(
    view: ViewDef, request: Request, fixed: tuple[str, ...], prefix: str = ""
) -> KeyFilter:
    """The key filter named by the request's query parameters; 422 on an unknown one."""
    names = filter_params(view)
    equals: dict[str, set[str]] = {}
    prefixes: dict[str, list[str]] = {}
    for name in request.query_params:
        if name in fixed:
            continue
        if name not in names:
            msg = (
                f"unknown query parameter {name!r} for view {view.name}: it takes "
                f"{', '.join([*fixed, *names])}"
            )
            raise HTTPException(UNPROCESSABLE, detail=msg)
        field, kind = names[name]
        values = request.query_params.getlist(name)
        if kind == "equals":
            equals.setdefault(field, set()).update(values)
        else:
            prefixes.setdefault(field, []).extend(values)
    return KeyFilter(
        equals={f: frozenset(v) for f, v in equals.items()},
        prefixes={f: tuple(sorted(set(p))) for f, p in prefixes.items()},
        key_prefix=prefix,
    )


def rollup_pattern(view: ViewDef) -> str:
    """``all``, or a count and a unit whose width is a multiple of the view's bucket."""
    units = "".join(u for u, s in UNITS.items() if s % view.bucket_s == 0)
    return f"^(?:all|[1-9][0-9]{{0,5}}[{units}])$" if units else "^all$"


def rollup_ms(view: ViewDef, text: str | None) -> int | None:
    """The rollup width in ms (None: the whole range); the view's own width by default."""
    if text is None:
        return view.bucket_s * 1000
    if not re.fullmatch(rollup_pattern(view), text):
        units = [u for u, s in UNITS.items() if s % view.bucket_s == 0]
        msg = (
            f"'rollup' must be 'all' or a count with a unit among {units} (widths that are "
            f"multiples of the view's {view.bucket_s}s buckets), e.g. "
            f"{'1' + units[-1] if units else 'all'} (got {text[:40]!r})"
        )
        raise HTTPException(UNPROCESSABLE, detail=msg)
    return None if text == "all" else int(text[:-1]) * UNITS[text[-1]] * 1000


def group_fields(view: ViewDef, names: list[str] | None) -> tuple[str, ...]:
    """The group_by fields in the order given, each once; 422 naming an unknown one."""
    for name in names or []:
        if name not in view.keys:
            msg = f"'group_by' {name[:40]!r} is not a key field of view {view.name}: {view.keys}"
            raise HTTPException(UNPROCESSABLE, detail=msg)
    return tuple(dict.fromkeys(names or []))


def order_terms(view: ViewDef, texts: list[str] | None) -> tuple[Order, ...]:
    """The order_by terms, each name once (the first wins); 422 naming an unknown one."""
    names = [m.name for m in view.measures] + [BUCKET]
    terms: dict[str, Order] = {}
    for text in texts or []:
        term = Order.parse(text)
        if term.name not in names:
            msg = (
                f"'order_by' {text[:40]!r} is not a measure of view {view.name} or 'bucket' "
                f"(prefix '-' for descending): {names}"
            )
            raise HTTPException(UNPROCESSABLE, detail=msg)
        unordered = [k for k in view.kinds if k.name == term.name and not k.orderable]
        if unordered:
            msg = (
                f"'order_by' {text[:40]!r}: measure {term.name!r} of view {view.name} is a "
                f"{unordered[0].kind} ({unordered[0].field_type}) and has no numeric order"
            )
            raise HTTPException(UNPROCESSABLE, detail=msg)
        terms.setdefault(term.name, term)
    return tuple(terms.values())


def continued(view: ViewDef, text: str | None, query: str) -> Cursor | None:
    """The request's cursor, checked; 422 naming ``cursor`` when it is not one of this query."""
    if text is None:
        return None
    try:
        cursor = decode(text, query)
    except InvalidCursor as exc:
        raise HTTPException(UNPROCESSABLE, detail=f"'cursor': {exc}") from exc
    lo, hi = cursor.span  # as a first page resolves it: at most MAX_BUCKETS before TS_MIN
    if not view.bucket_of(TS_MIN_MS) - MAX_BUCKETS * view.bucket_s * 1000 <= lo < hi <= TS_MAX_MS:
        raise HTTPException(UNPROCESSABLE, detail="'cursor': not a cursor this API issued")
    return cursor


def _filters_of(keys: KeyFilter) -> dict[str, Any]:
    return {
        "equals": {f: sorted(v) for f, v in keys.equals.items()},
        "prefixes": {f: list(p) for f, p in keys.prefixes.items()},
        "key_prefix": keys.key_prefix,
    }


@router.get(
    "/{view}/rows",
    response_model=QueryAnswer,
    response_model_by_alias=True,
    responses=errors(401, 403, 404, 422, 503),
    summary="Rows of the merged answer: filter keys, group, roll up, order, page",
)
def query_rows(
    request: Request,
    view: str,
    _: ReadKey,
    settings: SettingsDep,
    batch: BatchDep,
    speed: SpeedDep,
    start: Annotated[str | None, Query(alias="from", json_schema_extra=START)] = None,
    end: Annotated[str | None, Query(alias="to", json_schema_extra=END)] = None,
    group_by: Annotated[
        list[str] | None, Query(description="key fields to group by; none: every key merged")
    ] = None,
    rollup: Annotated[
        str | None,
        Query(description="bucket width: a multiple of the view's (e.g. 6h, 1d) or 'all'"),
    ] = None,
    order_by: Annotated[
        list[str] | None, Query(description="a measure or 'bucket', '-' first for descending")
    ] = None,
    limit: Annotated[int, LIMIT] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, CURSOR] = None,
    sketches: Annotated[bool, Query(description="also return HLL sketches (base64)")] = False,
) -> dict[str, Any]:
    """Rows of ``batch view @ cut ⊕ realtime since cut`` over many keys, exact per row.

    Key fields filter as named parameters (``url=/a``, repeated for a set, ``url.prefix=``
    for a prefix), compared with keys rendered as key parts (``(none)`` is a missing
    value). ``group_by`` names the key fields a row keeps (none: all keys merged into one
    row per bucket). ``rollup`` merges the view's buckets into wider ones starting at
    ``from`` (the last may end early, at ``to``), or into one (``all``). ``order_by``
    sorts by measures (an HLL by its merged estimate; rows without a value last) or
    ``bucket``; ties, and the default order, go by the grouped key fields, then the bucket.
    ``limit`` rows per page; ``next_cursor`` continues the listing (keyset paging: a row
    whose place did not change comes exactly once); a cursor keeps the first page's range
    and says in ``changed_since_first_page`` when the version or the realtime part moved.
    ``from``/``to`` as for the point query (422 when ``to`` is not after ``from`` or the
    range exceeds 10,000 of the view's buckets).
    """
    definition = known_view(view)
    keys = key_filter(definition, request, ROWS_PARAMS)
    groups = group_fields(definition, group_by)
    width = rollup_ms(definition, rollup)
    order = order_terms(definition, order_by)
    asked: dict[str, Any] = {"filters": _filters_of(keys), "group_by": list(groups)}
    asked |= {"rollup": rollup}
    asked |= {"order_by": [str(t) for t in order], "from": start, "to": end, "sketches": sketches}
    query = fingerprint(view, "rows", asked)
    first = continued(definition, cursor, query)
    span = first.span if first is not None else bucket_span(definition, start, end)
    selection = Selection(keys, groups, span, width, order, sketches)
    if first is not None and not selection.valid_position(first.after):
        raise HTTPException(UNPROCESSABLE, detail="'cursor': not a cursor this API issued")
    began = time.perf_counter()
    after = first.after if first is not None else None
    tables = request.app.state.realtime_tables
    chosen, prov = _page(settings, batch, speed, tables, definition, selection, after, limit)
    out = provenance(prov)
    request.app.state.telemetry.observe_query(view, time.perf_counter() - began, out)
    digest = snapshot_digest(prov.speed_offsets)
    return {
        "view": view,
        **out,
        **_next(query, chosen.after, span, first, prov.version, digest),
        "from": iso_ms(span[0]),
        "to": iso_ms(span[1]),
        "group_by": list(groups),
        "rollup_s": None if width is None else width // 1000,
        "order_by": [str(t) for t in order],
        "rows": chosen.items,
    }


def _page(
    settings: Settings,
    batch: BatchSource,
    speed: SpeedSource,
    tables: RealtimeTables,
    view: ViewDef,
    selection: Selection,
    after: list[Any] | None,
    limit: int,
) -> tuple[Page, Provenance]:
    """One page of the selection and its provenance: in DuckDB when it can, else in Python.

    DuckDB (:mod:`serving.pushdown`) scans the local copy of the version and the realtime
    snapshot, so only the page's rows become Python objects; views with an HLL measure,
    and batch sources without local copies (the unit tests' fakes), take the Python path
    (:mod:`serving.selection`) over the cells of every key.
    """
    keep = selection.keys.matcher(view)
    if supported(view) and callable(getattr(batch, "local", None)):
        read = functools.partial(tables.read, speed, view)  # every key: DuckDB filters
        local, realtime, prov = merged_parts(settings, batch, speed, view, realtime=read)
        table = None if local is None else local.table
        memory = settings.api.sql_memory
        return select_page(view, table, realtime, selection, after, limit, memory), prov
    parts, prov = merged_cells(settings, batch, speed, view, selection.span, keep)
    listed = rows(view, parts, selection)
    return page(listed, selection.sort_key, selection.position, after, limit), prov


def _next(
    query: str,
    after: list[Any] | None,
    span: tuple[int, int],
    first: Cursor | None,
    version: int | None,
    digest: str,
) -> dict[str, Any]:
    """next_cursor (pinning the first page's span, version and snapshot) and what changed."""
    pinned = (first.version, first.snapshot) if first is not None else (version, digest)
    following = None if after is None else Cursor(query, after, span, *pinned).encode()
    return {"next_cursor": following, "changed_since_first_page": changed(first, version, digest)}


def key_span(view: ViewDef, start: str | None, end: str | None) -> tuple[int, int]:
    """[from, to) of a key listing: ``from`` aligned to its bucket; both open by default.

    Given both, ``to`` must be after ``from`` (422), as for ``/rows``; ``to`` alone at
    the start of the accepted range is simply an empty range.
    """
    lo = view.bucket_of(moment_ms("from", start) if start is not None else TS_MIN_MS)
    hi = moment_ms("to", end) if end is not None else TS_MAX_MS
    if start is None:
        hi = max(hi, lo)
    if hi <= lo and start is not None:
        msg = f"'to' ({iso_ms(hi)}) must be after 'from' ({iso_ms(lo)})"
        raise HTTPException(UNPROCESSABLE, detail=msg)
    return lo, hi


@router.get(
    "/{view}/keys",
    response_model=KeysAnswer,
    responses=errors(401, 403, 404, 422, 503),
    summary="The view's keys, by prefix (a key picker)",
)
def list_keys(
    request: Request,
    view: str,
    _: ReadKey,
    settings: SettingsDep,
    batch: BatchDep,
    speed: SpeedDep,
    prefix: Annotated[
        str, Query(max_length=4096, description="prefix of the whole rendered key")
    ] = "",
    start: Annotated[str | None, Query(alias="from", json_schema_extra=START)] = None,
    end: Annotated[str | None, Query(alias="to", json_schema_extra=END)] = None,
    limit: Annotated[int, KEYS_LIMIT] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, CURSOR] = None,
) -> dict[str, Any]:
    """Keys with data in the batch version or the realtime part since its cut, sorted.

    ``prefix`` is matched against the whole rendered key (what the point query's ``key``
    takes); key fields filter as for ``/rows``. With ``from``/``to``, only keys with a
    bucket in that range. ``limit`` keys per page, ``next_cursor`` for the next one.
    """
    definition = known_view(view)
    keys = key_filter(definition, request, KEYS_PARAMS, prefix)
    asked: dict[str, Any] = {"filters": _filters_of(keys), "from": start, "to": end}
    query = fingerprint(view, "keys", asked)
    first = continued(definition, cursor, query)
    span = first.span if first is not None else key_span(definition, start, end)
    after = first.after if first is not None else None
    if after is not None and not (len(after) == 1 and isinstance(after[0], str)):
        raise HTTPException(UNPROCESSABLE, detail="'cursor': not a cursor this API issued")
    parts, prov = merged_cells(settings, batch, speed, definition, span, keys.matcher(definition))
    found = keys_in(definition, parts, keys, span)
    chosen = page(found, tuple, lambda key: [key], after, limit)
    digest = snapshot_digest(prov.speed_offsets)
    return {
        "view": view,
        **provenance(prov),
        **_next(query, chosen.after, span, first, prov.version, digest),
        "keys": [{"key": k, "fields": definition.parts_of(k)} for k in chosen.items],
    }


def _view_parameters(view: ViewDef, operation: str) -> list[dict[str, Any]]:
    """The key-filter parameters of ``view``, as OpenAPI parameters."""
    out = []
    for name, (field, kind) in filter_params(view).items():
        what = "equals (repeat for a set)" if kind == "equals" else "starts with (repeat: any)"
        out.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "style": "form",
                "explode": True,
                "description": f"key field {field!r}, rendered as a key part, {what}",
                "schema": {"type": "array", "items": {"type": "string"}},
            }
        )
    return out


def _specialise(operation: dict[str, Any], view: ViewDef, suffix: str) -> dict[str, Any]:
    out = copy.deepcopy(operation)
    out["operationId"] = f"{suffix}_{view.name}"
    params = [p for p in out["parameters"] if p["name"] != "view"]
    measures = [k.name for k in view.kinds if k.orderable] + [BUCKET]
    schemas = {
        "group_by": {"type": "array", "items": {"type": "string", "enum": list(view.keys)}},
        "order_by": {
            "type": "array",
            "items": {"type": "string", "enum": [*measures, *(f"-{m}" for m in measures)]},
        },
        "rollup": {"type": "string", "pattern": rollup_pattern(view)},
    }
    for param in params:
        if param["name"] in schemas:
            param["schema"] = schemas[param["name"]]
    out["parameters"] = params + _view_parameters(view, suffix)
    del out["responses"]["404"]  # a registered view's own path
    return out


def document(openapi: dict[str, Any]) -> None:
    """One path per registered view for ``/rows`` and ``/keys``, with its own parameters.

    Each view's key fields become its filter parameters, ``group_by`` and ``order_by`` list
    its key fields and measures, and ``rollup`` admits the widths that are multiples of
    its bucket: a schema-valid query is one the API accepts.
    """
    paths: dict[str, Any] = openapi["paths"]
    for suffix in ("rows", "keys"):
        template = paths.pop(f"{router.prefix}/{{view}}/{suffix}", {}).get("get")
        if template is None:
            continue
        for name, view in all_views().items():
            paths[f"{router.prefix}/{name}/{suffix}"] = {"get": _specialise(template, view, suffix)}


__all__ = ["document", "router"]
