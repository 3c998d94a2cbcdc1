"""The serving layer's one FastAPI app: where the Lambda architecture answers its users.

``create_app(settings)`` wires thin routers (views, sql, health, metrics, dashboard, and the
ingest router when the ingest layer is installed), API-key scopes, Prometheus telemetry,
and error handlers that turn every failure into JSON ``{"detail": "..."}`` with a message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lambdalab.errors import (
    DefinitionError,
    IngestRejected,
    LambdaLabError,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
)
from lambdalab.settings import Settings
from serving.auth import check_keys, require
from serving.history import History, sampler_of
from serving.models import AUTH_ERRORS, errors
from serving.realtime import RealtimeTables
from serving.routes import dashboard, health, metrics, rows, sql, views
from serving.telemetry import Telemetry

log = logging.getLogger("lambdalab.serving")
DESCRIPTION = (
    "Merged queries `batch view @ cut ⊕ realtime since cut` with provenance, read-only SQL "
    "on Trino, Prometheus metrics and a dashboard. Send the API key as `X-API-Key`: "
    "a read key for queries, a write key for ingest."
)


def _ingest_http() -> Any | None:
    try:
        import ingest.http
    except ImportError as exc:
        log.warning("ingest layer not installed (%s): POST /events is not served", exc)
        return None
    return ingest.http


def _start_producer(settings: Settings) -> Any | None:
    try:
        from ingest.producer import EventProducer
    except ImportError:
        return None
    try:
        from lambdalab.schema import default_stream

        return EventProducer(settings, default_stream(settings.default_stream))
    except LambdaLabError as exc:
        log.error("ingest producer could not start (%s): POST /events will fail", exc)
        return None


def _close(obj: Any) -> None:
    close = getattr(obj, "close", None)
    if callable(close):
        try:
            close()
        except Exception as exc:  # closing on shutdown must not hide the others
            log.warning("closing %s failed: %s", type(obj).__name__, exc)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the ingest producer and the history sampler; on shutdown stop and close all."""
    app.state.ingest = _start_producer(app.state.settings)
    sampler = sampler_of(app.state) if app.state.history.interval_s > 0 else None
    if sampler is not None:
        sampler.start()
    yield
    if sampler is not None:
        sampler.stop()
    for attr in ("ingest", "batch_reader", "speed_reader", "kafka_probe"):
        _close(getattr(app.state, attr, None))
    for producer in getattr(app.state, "stream_producers", {}).values():
        _close(producer)


def create_app(settings: Settings) -> FastAPI:
    """The serving API for ``settings`` (its namespace decides topics, paths, keys, schema)."""
    check_keys(settings)
    app = FastAPI(
        title="lambda-lab serving layer",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=errors(500),  # _internal and _platform_error answer every 500 as JSON
    )
    app.state.settings = settings
    app.state.telemetry = Telemetry()
    app.state.realtime_tables = RealtimeTables()
    app.state.history = History(settings.api.history_points, settings.api.history_interval_s)
    app.state.ingest = None
    for module in (views, rows, sql, health, metrics, dashboard):
        app.include_router(module.router)
    ingest = _ingest_http()
    if ingest is not None:
        app.include_router(
            ingest.router, dependencies=[Depends(require("write"))], responses=AUTH_ERRORS
        )
    app.openapi = _openapi(app, ingest)  # type: ignore[method-assign]
    _install_handlers(app)
    app.add_middleware(Measured)
    return app


def _openapi(app: FastAPI, ingest: Any | None) -> Callable[[], dict[str, Any]]:
    """``app.openapi`` as FastAPI builds it, completed once with what the API really does.

    The ``{view}`` parameters name the registered views, the ingest bodies are derived
    from the stream declarations (``ingest.http.document``), and errors are described as
    the handlers below send them (:func:`_errors_as_sent`).
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()  # FastAPI caches it in app.openapi_schema: completed in place
            _errors_as_sent(doc)
            rows.document(doc)  # before views.document: one path per view replaces {view}
            views.document(doc)
            if ingest is not None:
                ingest.document(doc, app.state.settings)
        return app.openapi_schema or {}

    return openapi


def _errors_as_sent(doc: dict[str, Any]) -> None:
    """Every error as the JSON body the handlers send, under ``application/json``.

    FastAPI gives each operation with parameters a 422 of its own shape: our handler
    (:func:`_invalid`) sends :class:`ErrorBody`, and an operation that can fail validation
    declares that 422 itself, so FastAPI's entries go. FastAPI also files an error model
    under the route's media type (``text/html`` for the dashboard): errors are JSON.
    """
    fastapi_422 = "#/components/schemas/HTTPValidationError"
    for item in doc["paths"].values():
        for operation in item.values():
            responses = operation["responses"]
            if _schema(responses.get("422", {})).get("$ref") == fastapi_422:
                del responses["422"]
            for status, response in responses.items():
                content = response.get("content", {})
                if int(status) >= 400 and content and "application/json" not in content:
                    response["content"] = {"application/json": content.popitem()[1]}
    for name in ("HTTPValidationError", "ValidationError"):
        doc.get("components", {}).get("schemas", {}).pop(name, None)


def _schema(response: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = (
        response.get("content", {}).get("application/json", {}).get("schema", {})
    )
    return schema


class Measured:
    """Pure ASGI middleware counting each HTTP request and its latency by route template.

    Not ``app.middleware("http")``: Starlette's BaseHTTPMiddleware wraps every request in
    a task and memory streams, a measurable share of a point query's cost.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; count it once its response has started or it failed."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            scope["app"].state.telemetry.observe_request(
                scope["method"], route, status, time.perf_counter() - started
            )


def _json(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


def _install_handlers(app: FastAPI) -> None:
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(LambdaLabError)(_platform_error)
    app.exception_handler(Exception)(_internal)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such resource: {request.method} {request.url.path} (see /docs)"
    elif exc.status_code == 405 and detail == "Method Not Allowed":
        detail = f"method {request.method} is not allowed on {request.url.path} (see /docs)"
    response = _json(exc.status_code, detail)
    response.headers.update(exc.headers or {})
    return response


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors(), exclude={"input", "ctx", "url"})
    reasons = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors
    )
    return _json(422, f"invalid request: {reasons}", errors=errors)


async def _platform_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, ServiceUnavailable):
        return _json(503, str(exc))
    if isinstance(exc, NotFound):
        return _json(404, str(exc))
    if isinstance(exc, IngestRejected):
        return _json(400, str(exc))
    if isinstance(exc, ValidationFailed):
        return _json(422, str(exc), errors=exc.reasons)
    if isinstance(exc, DefinitionError):
        log.error("invalid declaration behind %s %s: %s", request.method, request.url.path, exc)
        return _json(500, f"invalid view or stream declaration on the server: {exc}")
    log.exception("platform error on %s %s", request.method, request.url.path)
    return _json(500, f"{type(exc).__name__}: {exc}")


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json(500, f"internal error ({type(exc).__name__}): {exc}; see the API's log")
