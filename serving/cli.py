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


@friendly
def query(
    view: Annotated[str, typer.Argument(help="the view")],
    key: Annotated[str, typer.Option(help="the view key (fields joined by U+001F)")],
) -> None:
    """The merged answer of one view key, as GET /views/{view} gives it, for people."""
    from rich.table import Table

    from batch.reader import BatchReader
    from lambdalab.cliutil import console
    from serving.query import merged_query
    from speed.reader import SpeedReader
    from views.registry import get_view

    settings = get_settings()
    definition = get_view(view)
    got = merged_query(
        settings, BatchReader(settings), SpeedReader(settings), definition, key, (0, 2**53)
    )
    offsets = ", ".join(f"{p}:{o}" for p, o in got["speed_offsets"].items())
    if got["kappa"] is not None:
        source = f"Kappa replay {got['kappa']['output']} at offsets {{{offsets}}}"
    elif got["version"] is None:
        source = f"realtime only (no batch version yet) at offsets {{{offsets}}}"
    else:
        source = (
            f"batch version {got['version']} (cut {got['cut']}) ⊕ realtime at offsets {{{offsets}}}"
        )
    print(f"view {view}, key {key}")
    print(f"served by: {source}")
    if got["partial"]:
        print(f"partial answer: missing {', '.join(got['missing'])}")
    table = Table()
    measures = [m for m in definition.measures]
    for col in ("bucket", *(m.name for m in measures)):
        table.add_column(col)
    for row in got["merged"]:
        table.add_row(row["bucket"], *(str(row[m.name]) for m in measures))
    console.print(table)
    for m in definition.kinds:
        if not m.additive:
            continue
        batch = sum(r.get(m.name) or 0 for r in got["batch"].values())
        realtime = sum(r.get(m.name) or 0 for r in got["realtime"].values())
        merged = sum(r.get(m.name) or 0 for r in got["merged"])
        part = "replay" if got["kappa"] is not None else "realtime"
        print(f"total {m.name} {merged} = batch {batch} + {part} {realtime}")


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``query`` to the ``lambdalab`` command."""
    app.command("serve")(serve)
    app.command("query")(query)
