"""``lambdalab speed …``: run the speed layer in the foreground."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.text import Text

from lambdalab.cliutil import console, friendly
from lambdalab.settings import get_settings

speed_app = typer.Typer(help="The speed layer: Kafka → realtime views in Redis.")


def register(app: typer.Typer) -> None:
    """Add the ``speed`` command group to the ``lambdalab`` command."""
    app.add_typer(speed_app, name="speed")


def _line(status: Any) -> Text:
    fresh = "-"
    if status.freshness_ms is not None:
        fresh = datetime.fromtimestamp(status.freshness_ms / 1000, tz=UTC).strftime("%H:%M:%S")
    return Text(
        f"applied {status.applied:,} events · {status.rate:,.0f} ev/s · lag {status.lag:,} · "
        f"dead letters {status.dead_letters:,} · newest ingest {fresh} UTC"
    )


@speed_app.command("run")
@friendly
def run(
    once: Annotated[
        bool, typer.Option("--once", help="stop once caught up with the end offsets at start")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="no live status line")] = False,
    metrics_port: Annotated[
        int, typer.Option(help="expose Prometheus metrics on this port (0: off)")
    ] = 0,
    max_poll_records: Annotated[
        int | None, typer.Option(help="records per poll batch, at most (default 20,000)")
    ] = None,
    stream: Annotated[
        str | None, typer.Option(help="the stream to consume (default: default_stream)")
    ] = None,
    group: Annotated[
        bool | None,
        typer.Option(
            "--group/--no-group",
            help="join the stream's consumer group and own the partitions it assigns, so N "
            "workers share a stream (default: on, off with --once: all partitions)",
        ),
    ] = None,
    worker: Annotated[
        str,
        typer.Option(help="this worker's name: logs, and its static member id in the group"),
    ] = "",
    all_streams: Annotated[
        bool,
        typer.Option(
            "--all-streams",
            help="one consumer per stream that has views, in this process (compose runs this)",
        ),
    ] = False,
) -> None:
    """Consume a stream's topic into its realtime views (resume, or rebuild if needed)."""
    from lambdalab.schema import default_stream
    from speed.consumer import MAX_POLL_RECORDS, SpeedConsumer

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    settings = get_settings()
    grouped = not once if group is None else group
    if all_streams:
        _run_all(
            settings,
            stop,
            once=once,
            max_poll_records=max_poll_records or MAX_POLL_RECORDS,
            group=grouped,
            worker=worker,
        )
        return
    consumer = SpeedConsumer(
        settings,
        default_stream(stream or settings.default_stream),
        max_poll_records=max_poll_records or MAX_POLL_RECORDS,
        group=grouped,
        worker=worker,
    )
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=consumer.metrics.registry)
    consumer.setup()
    try:
        if quiet:
            consumer.run(once=once, stop=stop)
        else:
            with Live(Text("starting…"), console=console, refresh_per_second=4) as live:
                consumer.run(once=once, stop=stop, on_status=lambda s: live.update(_line(s)))
    finally:
        consumer.close()


def _run_all(
    settings: Any,
    stop: threading.Event,
    *,
    once: bool,
    max_poll_records: int,
    group: bool,
    worker: str,
) -> None:
    """One consumer thread per stream that has views; the first that fails stops them all.

    Each consumer keeps its own offsets and views, as separate processes would; the process
    exits non-zero when one failed, so its supervisor (compose's restart policy) restarts it.
    """
    from lambdalab.schema import get_stream
    from speed.consumer import SpeedConsumer
    from views.registry import all_views

    streams = sorted({v.stream for v in all_views().values()})
    failed: list[BaseException] = []

    def consume(name: str) -> None:
        consumer = SpeedConsumer(
            settings,
            get_stream(name),
            max_poll_records=max_poll_records,
            group=group,
            worker=f"{worker}-{name}" if worker else "",
        )
        try:
            consumer.setup()
            consumer.run(once=once, stop=stop)
        except BaseException as exc:  # report it, stop the others, exit non-zero
            failed.append(exc)
            stop.set()
        finally:
            consumer.close()

    threads = [threading.Thread(target=consume, args=(n,), name=f"speed-{n}") for n in streams]
    console.print(f"speed layer: {', '.join(streams) or 'no stream has views'}")
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        raise failed[0]
