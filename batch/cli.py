"""Commands of the batch layer: one cycle, a loop, SQL over Trino, lineage for people.

``lambdalab batch run`` lands, cuts, builds and publishes once; ``batch loop --every 5m``
repeats it with one Spark session; ``lambdalab sql`` queries the master dataset and the
views through Trino; ``lambdalab lineage VIEW [VERSION]`` says what a version was made of.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from lambdalab.cliutil import console, friendly
from lambdalab.errors import ConfigError, LambdaLabError, NotFound
from lambdalab.settings import get_settings

batch_app = typer.Typer(help="The batch layer: land, cut, build, publish.", no_args_is_help=True)
_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_every(text: str) -> float:
    """Seconds of a period such as ``90s``, ``5m`` or ``1h``."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if not m:
        msg = f"--every must look like 30s, 5m or 1h, got {text!r}"
        raise ConfigError(msg)
    return float(m[1]) * _UNITS[m[2] or "s"]


def _print_cycle(report: dict[str, Any]) -> None:
    from batch.lineage import utc

    table = Table(title=f"batch cycle, cut {utc(report['cut_ms'])}")
    for col in ("view", "status", "version", "fingerprint"):
        table.add_column(col)
    for view, r in report["views"].items():
        table.add_row(view, r["status"], str(r["version"]), r["fingerprint"])
    console.print(table)
    for stream, landed in (report.get("landed") or {}).items():
        if landed.get("landing") == "waited":
            console.print(f"{stream}: waited {landed['waited_s']:.1f} s for the archiver")
        else:
            console.print(f"{stream}: landed {landed.get('rows', 0)} rows")
    phases = ", ".join(f"{name} {s:.2f}" for name, s in (report.get("phases") or {}).items())
    console.print(f"phases (s): {phases}")
    if not report["ok"]:
        console.print(f"[red]batch cycle failed[/]\n{report['summary']}")


@batch_app.command("run")
@friendly
def batch_run(
    cut_ms: Annotated[int | None, typer.Option(help="override the cut (ms, ingest time)")] = None,
    land: Annotated[bool, typer.Option(help="land from Kafka first")] = True,
    trino: Annotated[bool, typer.Option(help="register Trino tables")] = True,
    view: Annotated[list[str] | None, typer.Option(help="only these views")] = None,
) -> None:
    """One batch cycle: land up to the end offsets, cut, build and publish every view."""
    from batch.tasks import run_cycle

    report = run_cycle(get_settings(), cut_ms=cut_ms, land=land, views=view, trino=trino)
    _print_cycle(report)
    if not report["ok"]:
        raise typer.Exit(1)


@batch_app.command("loop")
@friendly
def batch_loop(
    every: Annotated[
        str | None, typer.Option(help="period: 30s, 5m, 1h (default: batch.loop_every_s)")
    ] = None,
    trino: Annotated[bool, typer.Option(help="register Trino tables")] = True,
) -> None:
    """Run a batch cycle every period, with one Spark session, until interrupted."""
    from batch.spark import spark_session
    from batch.tasks import run_cycle

    settings = get_settings()
    period = parse_every(every) if every else float(settings.batch.loop_every_s)
    spark = spark_session(settings, app_name="lambdalab-batch-loop")
    while True:
        started = time.monotonic()
        try:
            _print_cycle(run_cycle(settings, trino=trino, spark=spark))
        except LambdaLabError as exc:  # already logged and mailed; the next cycle may succeed
            console.print(f"[red]batch cycle failed:[/] {exc}")
        time.sleep(max(0.0, period - (time.monotonic() - started)))


def sql(query: Annotated[str, typer.Argument(help="one SQL statement")]) -> None:
    """Run SQL on Trino in the namespace's schema and print the result as a table."""
    from batch.trino_tables import TrinoTables

    columns, rows = TrinoTables(get_settings()).query(query)
    table = Table()
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    console.print(table)
    console.print(f"{len(rows)} row(s)")


def _cell(value: Any) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return "NULL" if value is None else str(value)


def lineage(
    view: Annotated[str, typer.Argument(help="view name")],
    version: Annotated[int | None, typer.Argument(help="version (default: current)")] = None,
) -> None:
    """What a published version of a view was computed from, for people."""
    from batch.lineage import describe
    from batch.reader import BatchReader
    from views.registry import get_view

    reader = BatchReader(get_settings())
    published = reader.store.published(view)
    if not published:
        get_view(view)  # an unknown name says which views exist
    if not published or (version is not None and version not in published):
        known = ", ".join(map(str, published)) or "none (run `lambdalab batch run`)"
        msg = f"view {view}: no published version {version or ''}; published: {known}"
        raise NotFound(msg)
    lin = reader.store.lineage(view, version or published[0])
    table = Table(show_header=False)
    for label, text in describe(lin):
        table.add_row(label, text)
    console.print(table)


def land(
    follow: Annotated[bool, typer.Option(help="keep landing until SIGTERM")] = False,
    max_rows_per_file: Annotated[int, typer.Option(help="cap of rows per master file")] = 50_000,
) -> None:
    """Land every declared stream's log into the master dataset on HDFS (exactly once)."""
    from batch.archiver import land as land_stream
    from batch.archiver import land_forever
    from lambdalab.schema import STREAMS

    settings = get_settings()
    if follow:
        land_forever(settings, max_rows_per_file)
        return
    for stream in STREAMS.values():
        manifest = land_stream(settings, stream, max_rows_per_file=max_rows_per_file)
        console.print(
            f"{stream.name}: landed {manifest.get('rows', 0)} rows in "
            f"{len(manifest.get('files', []))} files, "
            f"{manifest.get('dead_letters', 0)} dead letters"
        )


def register(app: typer.Typer) -> None:
    """Add ``batch``, ``land``, ``sql`` and ``lineage`` to the ``lambdalab`` command."""
    app.add_typer(batch_app, name="batch")
    app.command("land")(friendly(land))
    app.command("sql")(friendly(sql))
    app.command("lineage")(friendly(lineage))
