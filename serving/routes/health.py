"""Liveness of the API and the pipeline's health snapshot (the dashboard's health panel)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from infra.health import port_open
from lambdalab.settings import Settings
from serving.deps import BatchDep, HdfsDep, ProbeDep, ReadKey, SettingsDep, SpeedDep
from serving.models import AUTH_ERRORS, Health, Pipeline, PipelineHistory
from serving.pipeline import snapshot

router = APIRouter(tags=["health"])


def backends(settings: Settings) -> dict[str, str]:
    """Each backend's TCP reachability: 'up' or 'down (host:port)'."""
    endpoints = {
        "kafka": settings.kafka.bootstrap_servers.split(",")[0].rsplit(":", 1),
        "hdfs": [
            settings.hdfs.webhdfs_url.split("://", 1)[-1].split(":", 1)[0],
            str(settings.hdfs.http_port),
        ],
        "redis": [_host(settings.redis.url), str(settings.redis.port)],
        "trino": [settings.trino.host, str(settings.trino.port)],
    }
    return {
        name: "up" if port_open(host, int(port)) else f"down ({host}:{port})"
        for name, (host, port) in endpoints.items()
    }


def _host(url: str) -> str:
    netloc = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    return netloc.rsplit(":", 1)[0] if ":" in netloc else netloc


@router.get("/health", response_model=Health, summary="API liveness and backend reachability")
async def health(settings: SettingsDep) -> dict[str, Any]:
    """Always 200 while the API runs; ``status`` is 'degraded' when a backend is down."""
    found = await run_in_threadpool(backends, settings)
    return {
        "status": "ok" if all(v == "up" for v in found.values()) else "degraded",
        "backends": found,
    }


@router.get(
    "/pipeline", response_model=Pipeline, responses=AUTH_ERRORS, summary="Pipeline health snapshot"
)
def pipeline(
    _: ReadKey,
    settings: SettingsDep,
    batch: BatchDep,
    speed: SpeedDep,
    probe: ProbeDep,
    hdfs: HdfsDep,
) -> dict[str, Any]:
    """Ingest offsets, speed lag and freshness, batch version and age per view, dead letters."""
    return snapshot(settings, batch, speed, probe, hdfs)


@router.get(
    "/pipeline/history",
    response_model=PipelineHistory,
    responses=AUTH_ERRORS,
    summary="The last minutes of ingest rate, speed lag and freshness",
)
def pipeline_history(_: ReadKey, request: Request) -> dict[str, Any]:
    """Samples of every stream this API process took in the background, oldest first.

    One sample each ``api.history_interval_s`` seconds, the last ``api.history_points``
    kept in memory (the dashboard's charts). Each process keeps its own buffer; a
    restarted one starts empty.
    """
    history = request.app.state.history
    return {
        "interval_s": history.interval_s,
        "capacity": history.capacity,
        "points": history.points(),
    }
