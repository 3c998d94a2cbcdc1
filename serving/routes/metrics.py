"""``GET /metrics``: Prometheus text for ingest, speed, batch and serving."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from serving.deps import BatchDep, HdfsDep, ProbeDep, SettingsDep, SpeedDep
from serving.pipeline import snapshot

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            "description": "Prometheus text",
        }
    },
)
def metrics(
    request: Request,
    settings: SettingsDep,
    batch: BatchDep,
    speed: SpeedDep,
    probe: ProbeDep,
    hdfs: HdfsDep,
) -> Response:
    """Every metric of the platform, read at scrape time.

    Request counts and latencies, query latency, partial answers; ingest end offsets,
    speed lag and freshness, batch version and age, dead letters.

    Unauthenticated, like most Prometheus targets; bind the API to a private interface.
    """
    body = request.app.state.telemetry.render(snapshot(settings, batch, speed, probe, hdfs))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
