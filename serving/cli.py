"""CLI of the serving layer: ``lambdalab serve``, the API under uvicorn.

Under supervision (``lambdalab stack up --platform``, the demo) it is the program
``lambdalab serve``; settings are read here, at the entry point.
"""

from __future__ import annotations

from typing import Annotated

import typer

from lambdalab.cliutil import friendly
from lambdalab.settings import get_settings


@friendly
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default: api.host)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: api.port)")] = None,
) -> None:
    """Run the serving API (merged queries, SQL, metrics, dashboard, ingest) with uvicorn."""
    import uvicorn

    from serving.app import create_app

    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=host or settings.api.host,
        port=port or settings.api.port,
        log_level="warning",
    )


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``lambdalab`` command."""
    app.command("serve")(serve)
