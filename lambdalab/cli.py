"""The ``lambdalab`` command: one entry point for the stack and every layer.

Settings are read here (environment, ``.env``) and passed down explicitly. Errors of the
platform print their message and exit 1, without a stack trace.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from lambdalab.errors import LambdaLabError
from lambdalab.settings import get_settings

app = typer.Typer(help="lambda-lab: a reference platform and teaching lab for the Lambda architecture.",
                  no_args_is_help=True)
stack_app = typer.Typer(help="The local stack: Kafka, HDFS, Redis, Trino, Spark.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
console = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def friendly(func: F) -> F:
    """Turn a LambdaLabError into its message and exit code 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LambdaLabError as exc:
            err.print(f"[bold red]error:[/] {exc}")
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _stack() -> Any:
    from lambdalab.stack import Stack

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
def stack_up() -> None:
    """Start every service and wait until each is healthy (idempotent)."""
    with console.status("starting the stack (fetch, format once, start, health checks)…"):
        rows = _stack().up()
    if not _print_status(rows):
        raise typer.Exit(1)


@stack_app.command("down")
@friendly
def stack_down() -> None:
    """Stop the stack's own processes; data is kept."""
    stopped = _stack().down()
    console.print("stack stopped" if stopped else "stack was not running")


@stack_app.command("status")
@friendly
def stack_status() -> None:
    """Each service, its ports, process and a live health check."""
    if not _print_status(_stack().status()):
        raise typer.Exit(1)


@stack_app.command("logs")
@friendly
def stack_logs(
    service: Annotated[str, typer.Argument(help="kafka, namenode, datanode, redis, trino, …")],
    lines: Annotated[int, typer.Option("-n", help="how many lines")] = 50,
) -> None:
    """The last lines of one service's log."""
    console.print(_stack().tail(service, lines), markup=False, highlight=False)


if __name__ == "__main__":
    app()
