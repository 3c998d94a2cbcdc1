"""API keys with scopes for the HTTP service: ``write`` for ingest, ``read`` for queries.

Keys come from settings (``api.write_keys``, ``api.read_keys``) and their scopes are
explicit: a key listed in both may do both, a write key alone may not read. Sent as the
``X-API-Key`` header, never in a URL. The development keys (:data:`DEV_KEYS`) are accepted
only in demo mode (``LAMBDALAB_DEMO=true``): :func:`check_keys` refuses them otherwise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader

from lambdalab.errors import ConfigError
from lambdalab.settings import Settings

Scope = Literal["read", "write"]
_header = APIKeyHeader(name="X-API-Key", auto_error=False)


DEV_KEYS = frozenset({"dev-write-key", "dev-read-key"})


def check_keys(settings: Settings) -> None:
    """Refuse to serve with the development keys outside demo mode.

    Raises:
        ConfigError: a development key is configured and ``demo`` is off, naming the settings.
    """
    found = sorted(DEV_KEYS & {*settings.api.write_keys, *settings.api.read_keys})
    if found and not settings.demo:
        msg = (
            f"the development API key(s) {', '.join(found)} are accepted only in demo mode: "
            "set your own keys in LAMBDALAB_API__WRITE_KEYS and LAMBDALAB_API__READ_KEYS "
            "(JSON lists, e.g. '[\"k1\"]'), or LAMBDALAB_DEMO=true for a demo"
        )
        raise ConfigError(msg)


def scopes_of(settings: Settings, key: str | None) -> set[str]:
    """The scopes an API key grants: each list it is in (empty for an unknown key)."""
    if key is None:
        return set()
    scopes = set()
    if key in settings.api.write_keys:
        scopes.add("write")
    if key in settings.api.read_keys:
        scopes.add("read")
    return scopes


def require(scope: Scope) -> Callable[..., Awaitable[str]]:
    """A FastAPI dependency that admits only keys holding ``scope`` (async: no threadpool hop)."""

    async def check(request: Request, key: Annotated[str | None, Depends(_header)]) -> str:
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
