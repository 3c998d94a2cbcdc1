"""API keys with scopes for the HTTP service: ``write`` for ingest, ``read`` for queries.

Keys come from settings (``api.write_keys``, ``api.read_keys``); a write key may also
read. Sent as the ``X-API-Key`` header.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader

from lambdalab.settings import Settings

Scope = Literal["read", "write"]
_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def scopes_of(settings: Settings, key: str | None) -> set[str]:
    """The scopes an API key grants (empty for an unknown or missing key)."""
    if key is None:
        return set()
    if key in settings.api.write_keys:
        return {"write", "read"}
    if key in settings.api.read_keys:
        return {"read"}
    return set()


def require(scope: Scope) -> Callable[..., str]:
    """A FastAPI dependency that admits only keys holding ``scope``."""

    def check(request: Request, key: Annotated[str | None, Depends(_header)]) -> str:
        settings: Settings = request.app.state.settings
        if key is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing API key: send it in the X-API-Key header",
            )
        if scope not in scopes_of(settings, key):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail=f"this API key lacks the '{scope}' scope"
            )
        return key

    return check
