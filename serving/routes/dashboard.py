"""``GET /dashboard``: one self-contained HTML page (no CDN) over the JSON API."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["dashboard"])
PAGE = Path(__file__).resolve().parent.parent / "static" / "dashboard.html"


@lru_cache
def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


@router.get("/dashboard", response_class=HTMLResponse, summary="The live dashboard")
def dashboard() -> HTMLResponse:
    """The dashboard page: merged series per view and key, and the pipeline's health.

    The series show batch and realtime apart with the cut marked; the health panel is
    refreshed every few seconds. The page asks the API with the
    read key given as ``?key=...`` (or typed into its field).
    """
    return HTMLResponse(_page())
