"""``GET /dashboard``: one self-contained HTML page (no CDN) over the JSON API."""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from serving.deps import SettingsDep

router = APIRouter(tags=["dashboard"])
PAGE = Path(__file__).resolve().parent.parent / "static" / "dashboard.html"
LUIGI_UI = "{{luigi_ui}}"  # the page's one placeholder: the Luigi UI (luigi.ui_url)


@lru_cache
def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


@router.get("/dashboard", response_class=HTMLResponse, summary="The live dashboard")
def dashboard(settings: SettingsDep) -> HTMLResponse:
    """The dashboard page: top keys, a key picker and its series, the pipeline's health.

    A top-N table per view, measure and range (``/views/{view}/rows``) with the version,
    cut and freshness it read; a key picker (``/views/{view}/keys``) whose key's series
    shows batch and realtime apart with the cut marked; every stream's health
    (``/pipeline``); charts of ingest rate, lag and freshness (``/pipeline/history``). All
    refreshed every few seconds. The read key is typed into its field and kept in the
    browser's localStorage (one given as ``?key=`` is dropped from the URL). The header
    links to Luigi's UI (``luigi.ui_url``): the batch tasks' graph, history and failures.
    """
    return HTMLResponse(_page().replace(LUIGI_UI, html.escape(settings.luigi.ui, quote=True)))
