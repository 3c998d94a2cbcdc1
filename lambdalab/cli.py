"""The ``lambdalab`` command: one entry point for the stack and every layer.

The one module of the kernel that may import the layers above it and the local stack
(``infra``): it assembles the command from each layer's ``register(app)``.

Settings are read here (environment, ``.env``) and passed down explicitly. Errors of the
platform print their message and exit 1, without a stack trace.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lambdalab.cliutil import console, err, friendly
from lambdalab.errors import LambdaLabError
from lambdalab.settings import get_settings, load_settings

app = typer.Typer(
    help="lambda-lab: a reference platform and teaching lab for the Lambda architecture.",
    no_args_is_help=True,
)
stack_app = typer.Typer(
    help="The local stack: Kafka, HDFS, Redis, Trino, Spark.", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")
project_app = typer.Typer(
    help="The project: its streams, views and dimensions (LAMBDALAB_PROJECT).",
    no_args_is_help=True,
)
app.add_typer(project_app, name="project")

# Each layer adds its own commands: a module with ``register(app)``.
LAYER_CLIS = ("ingest.cli", "batch.cli", "batch.dimcli", "speed.cli", "serving.cli", "lab.cli")


def _register_layers() -> None:
    for name in LAYER_CLIS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        except LambdaLabError as exc:  # a broken project: its one message, no traceback
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            sys.exit(1)
        module.register(app)


@app.callback()
def _start(ctx: typer.Context) -> None:
    """Load the whole project before any command (but ``init``): a broken one stops here."""
    if ctx.invoked_subcommand in ("init", None):
        return
    try:
        _load_project()
    except LambdaLabError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)


def _load_project() -> tuple[Path, dict[str, Any], dict[str, Any], list[Any]]:
    from lambdalab.schema import STREAMS
    from views import registry

    views = registry.all_views()
    return registry.project_folder(), dict(STREAMS), views, registry.dimensions()


@app.command("init")
@friendly
def init(directory: Annotated[Path, typer.Argument(help="the new project's folder")]) -> None:
    """Write a new project (a stream, a view, a README) that runs as it is."""
    from lambdalab.scaffold import init_project

    for path in init_project(directory):
        console.print(f"wrote {path}")
    console.print(f"use it: export LAMBDALAB_PROJECT={directory.resolve()}")


@project_app.command("check")
@friendly
def project_check(
    stored: Annotated[
        bool, typer.Option(help="also check each stream against its stored data (HDFS)")
    ] = False,
) -> None:
    """Load the project and list its streams, views and dimensions."""
    folder, streams, views, dims = _load_project()
    if stored:
        from batch.master import check_schema
        from lambdalab.hdfs import webhdfs

        settings = get_settings()
        for stream in streams.values():  # a refused evolution raises, named
            state = check_schema(webhdfs(settings), settings, stream, record=False)
            console.print(f"  stored data of {stream.name}: {state}")
    console.print(f"project {folder}")
    for name, stream in streams.items():
        fields = ", ".join(f"{f.name}:{f.type}" for f in stream.fields)
        console.print(f"  stream {name}: {fields}")
    for name, view in views.items():
        console.print(f"  view {name} on {view.stream}: keys {', '.join(view.keys)}")
    console.print(f"  dimensions: {len(dims)}")


Cluster = Annotated[
    bool,
    typer.Option(
        "--cluster",
        help="the multi-node stack on loopback (settings of LAMBDALAB_PROFILE=cluster)",
    ),
]


def _stack(cluster: bool = False) -> Any:
    from infra.stack import Stack

    if cluster:
        return Stack(load_settings(profile="cluster"), cluster=True)
    return Stack(get_settings())


def _print_status(rows: list[Any]) -> bool:
    table = Table(title="lambda-lab stack")
    for col in ("service", "ports", "process", "health", "detail"):
        table.add_column(col)
    for r in rows:
        health = "[green]healthy[/]" if r.healthy else "[red]unhealthy[/]"
        table.add_row(r.name, ",".join(map(str, r.ports)) or "-", r.process, health, r.detail)
    console.print(table)
    return all(r.healthy for r in rows)


@stack_app.command("fetch")
@friendly
def stack_fetch() -> None:
    """Fetch the JVM artifacts from Maven Central into the cache (no-op when cached)."""
    with console.status("fetching artifacts with Maven…"):
        done = _stack().fetch()
    console.print(f"fetched: {', '.join(done)}" if done else "all artifacts cached")


@stack_app.command("up")
@friendly
def stack_up(
    platform: Annotated[
        bool, typer.Option("--platform", help="also start archiver, speed, API, batch loop")
    ] = False,
    cluster: Cluster = False,
) -> None:
    """Start every service and wait until each is healthy (idempotent)."""
    with console.status("starting the stack (fetch, format once, start, health checks)…"):
        rows = _stack(cluster).up(with_platform=platform)
    if not _print_status(rows):
        raise typer.Exit(1)


@stack_app.command("down")
@friendly
def stack_down(cluster: Cluster = False) -> None:
    """Stop the stack's own processes; data is kept."""
    stopped = _stack(cluster).down()
    console.print("stack stopped" if stopped else "stack was not running")


@stack_app.command("status")
@friendly
def stack_status(cluster: Cluster = False) -> None:
    """Each service, its ports, process and a live health check."""
    if not _print_status(_stack(cluster).status()):
        raise typer.Exit(1)


@stack_app.command("logs")
@friendly
def stack_logs(
    service: Annotated[str, typer.Argument(help="kafka, namenode, datanode, redis, trino, …")],
    lines: Annotated[int, typer.Option("-n", help="how many lines")] = 50,
    cluster: Cluster = False,
) -> None:
    """The last lines of one service's log."""
    console.print(_stack(cluster).tail(service, lines), markup=False, highlight=False)


@app.command("demo")
@friendly
def demo(
    seconds: Annotated[float, typer.Option(help="seconds of generated traffic")] = 30.0,
    rate: Annotated[float, typer.Option(help="events per second")] = 100.0,
) -> None:
    """The whole pipeline: stack and platform services up, traffic, a batch cycle, an answer.

    The archiver, speed consumer, API and batch loop run under the stack's supervisord
    (``lambdalab stack up --platform``); ``lambdalab stack down`` stops everything.
    """
    from infra.stack import Stack
    from lab.demo import run

    settings = get_settings().model_copy(update={"demo": True})  # the development keys work
    with console.status("stack and platform services up (archiver, speed, API, batch loop)…"):
        Stack(settings).up(with_platform=True)
    run(settings, seconds, rate)


_register_layers()

if __name__ == "__main__":
    app()
