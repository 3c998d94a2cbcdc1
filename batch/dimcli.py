"""``lambdalab dim``: load a dimension table's file as its next version, list versions.

``lambdalab dim load campaigns campaigns.csv`` (or ``--topic campaigns``, a compacted
Kafka topic: its newest value per key) validates the rows against the declared
dimension (``views.dimension``), publishes it on HDFS as the next version (nothing if
the rows equal the newest version's) and prints the version. The next batch cycle builds
the views that enrich from it with that version; the speed layer copies it into Redis
and rebuilds those views (``speed.dimensions``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lambdalab.cliutil import console, friendly
from lambdalab.settings import get_settings

dim_app = typer.Typer(help="Dimension tables: versions views enrich from.", no_args_is_help=True)


@dim_app.command("load")
@friendly
def load(
    name: Annotated[str, typer.Argument(help="the declared dimension")],
    file: Annotated[
        Path | None, typer.Argument(help="a .csv (with a header) or .jsonl file")
    ] = None,
    topic: Annotated[
        str | None, typer.Option(help="read a compacted Kafka topic instead of a file")
    ] = None,
) -> None:
    """Load FILE (or --topic) as the next version of dimension NAME; print the version."""
    from batch.dimensions import load as publish
    from batch.dimensions import topic_table
    from lambdalab.errors import ConfigError
    from views.dimension import get_dimension

    if (file is None) == (topic is None):
        msg = "give the rows as FILE or as --topic TOPIC (one of them)"
        raise ConfigError(msg)
    dim, settings = get_dimension(name), get_settings()
    if file is not None:
        table, source = dim.read(file), str(file)
    else:
        table, source = topic_table(settings, dim, str(topic)), f"topic {topic}"
    result = publish(settings, dim, table, source)
    console.print(
        f"dimension {name}: version {result['version']} ({result['status']}, "
        f"{result['rows']} rows, hash {result['hash']})"
    )


@dim_app.command("versions")
@friendly
def versions(name: Annotated[str, typer.Argument(help="the declared dimension")]) -> None:
    """The versions of dimension NAME, newest first."""
    from lambdalab.hdfs import dimension_versions, webhdfs
    from views.dimension import get_dimension

    settings = get_settings()
    get_dimension(name)
    for n in dimension_versions(webhdfs(settings), settings, name):
        console.print(f"v{n}")


def register(app: typer.Typer) -> None:
    """Add ``dim`` to the ``lambdalab`` command."""
    app.add_typer(dim_app, name="dim")
