"""CLI of the ingest side: ``lambdalab ingest generate|file``.

Settings are read here, at the entry point, and passed down explicitly.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lambdalab.cliutil import console, err, friendly
from lambdalab.settings import get_settings

ingest_app = typer.Typer(help="Producers: the generator and NDJSON files.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``ingest`` (generate, file) to the ``lambdalab`` command."""
    app.add_typer(ingest_app, name="ingest")


@ingest_app.command("generate")
@friendly
def generate_cmd(
    rate: Annotated[float, typer.Option(help="events per second (outside bursts)")] = 100.0,
    duration: Annotated[float | None, typer.Option(help="seconds of traffic")] = None,
    count: Annotated[int | None, typer.Option(help="events to send (not duration)")] = None,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same events")] = 42,
    late_fraction: Annotated[float, typer.Option(help="share of late events")] = 0.05,
    out: Annotated[Path | None, typer.Option(help="NDJSON file of every sent event")] = None,
    http: Annotated[str | None, typer.Option(help="send over HTTP to this base URL")] = None,
    api_key: Annotated[str | None, typer.Option(help="write key for --http")] = None,
    unpaced: Annotated[bool, typer.Option(help="ignore --rate timing, send at full speed")] = False,
) -> None:
    """Generate realistic page views (Zipf URLs and users, late events, bursts)."""
    from ingest.generator import STREAM, GeneratorConfig, generate, http_sink, run, utc_now
    from ingest.producer import EventProducer

    if duration is None and count is None:
        duration = 10.0
    settings = get_settings()
    config = GeneratorConfig(seed=seed, rate=rate, late_fraction=late_fraction)
    total = count if count is not None else int(rate * (duration or 0))
    with ExitStack() as stack:
        if http:
            sink: Any = http_sink(http, api_key or settings.api.write_keys[0])
        else:
            producer = EventProducer(settings, STREAM)
            stack.callback(producer.close)
            sink = lambda events: len(producer.send_many(events))  # noqa: E731
        handle = stack.enter_context(out.open("wb")) if out else None
        progress = stack.enter_context(_progress())
        task = progress.add_task("sending", total=total)
        sent = run(
            generate(config, utc_now(), count),
            sink,
            duration_s=duration if count is None else None,
            paced=not unpaced,
            out=handle,
            on_sent=lambda n: progress.advance(task, n),
        )
    console.print(f"sent {sent} events" + (f", written to {out}" if out else ""))


@ingest_app.command("file")
@friendly
def file_cmd(
    path: Annotated[Path, typer.Argument(help="NDJSON file, one event per line")],
    stream: Annotated[
        str | None, typer.Option(help="the declared stream (default: the default_stream setting)")
    ] = None,
) -> None:
    """Send every valid line of an NDJSON file; report rejected lines (exit 1 if any)."""
    from ingest.files import ingest_file
    from ingest.producer import EventProducer
    from lambdalab.schema import default_stream

    settings = get_settings()
    producer = EventProducer(settings, default_stream(stream or settings.default_stream))
    try:
        report = ingest_file(producer, path)
    finally:
        producer.close()
    for number, reason in report.rejected:
        err.print(
            f"{path}:{number}: rejected: {reason}", highlight=False, markup=False, soft_wrap=True
        )
    console.print(f"sent {report.sent} events, rejected {len(report.rejected)} lines")
    if report.rejected:
        raise typer.Exit(1)


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
