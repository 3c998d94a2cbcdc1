"""The ``lambdalab`` command: one entry point for the stack and every layer.

The one module of the kernel that may import the layers above it and the local stack
(``infra``): it assembles the command from each layer's ``register(app)``.

Settings are read here (environment, ``.env``) and passed down explicitly. Errors of the
platform print their message and exit 1, without a stack trace.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any

import typer
from rich.table import Table

from lambdalab.cliutil import console, friendly
from lambdalab.settings import get_settings, load_settings

app = typer.Typer(
    help="lambda-lab: a reference platform and teaching lab for the Lambda architecture.",
    no_args_is_help=True,
)
stack_app = typer.Typer(
    help="The local stack: Kafka, HDFS, Redis, Trino, Spark.", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")

# Each layer adds its own commands: a module with ``register(app)``.
LAYER_CLIS = ("ingest.cli", "batch.cli", "speed.cli", "serving.cli", "lab.cli")


def _register_layers() -> None:
    for name in LAYER_CLIS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(app)


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
