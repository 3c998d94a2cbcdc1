"""``lambdalab init DIR``: a new project (a stream, a view, a README) that runs as it is."""

from __future__ import annotations

from pathlib import Path

from lambdalab.errors import ConfigError

STREAMS = '''"""The streams of this project, one ``Stream`` each (docs/lab/adding-a-stream.md)."""

from lambdalab.schema import Field, Stream

ORDERS = Stream(
    name="orders",
    id_field="order_id",
    time_field="placed_at",
    fields=(
        Field("order_id", "string"),
        Field("shop", "string"),
        Field("items", "int"),
        Field("amount", "float"),
        Field("paid", "bool"),
        Field("coupon", "string", required=False),
        Field("placed_at", "timestamp", time_format="epoch_ms"),
    ),
)

STREAMS = [ORDERS]
'''

VIEW = '''"""Orders and items per shop per hour of event time (docs/lab/adding-a-view.md)."""

from views.definition import Measure, ViewDef

VIEW = ViewDef(
    name="orders_by_shop_hourly",
    stream="orders",
    keys=("shop",),
    bucket_s=3600,
    measures=(Measure("orders", "count"), Measure("items", "sum", "items")),
    description="How many orders, and how many items, each shop took per hour.",
)
'''

README = """# {name}

A lambda-lab project: the streams this deployment ingests and the views it serves.

- `streams.py`: `STREAMS = [Stream(...)]`, the typed fields of each stream
  (see docs/lab/adding-a-stream.md in lambda-lab).
- `views/*.py`: one file per view, each with `VIEW = ViewDef(...)`
  (see docs/lab/adding-a-view.md).
- `dimensions.py` (optional): `DIMENSIONS = [...]`, tables to enrich events with
  (see docs/lab/transforms.md).

Use it with every command by setting the project directory:

    export LAMBDALAB_PROJECT={path}
    lambdalab project check          # load and list the streams and views
    lambdalab demo                   # or any other command

An event of the `orders` stream:

    {{"order_id": "o1", "shop": "north", "items": 2, "amount": 19.9, "paid": true,
     "placed_at": 1767225600000}}
"""


def init_project(folder: Path) -> list[Path]:
    """Write a new project into ``folder`` (created; it must be empty); return the files.

    Raises:
        ConfigError: ``folder`` exists and is not empty.
    """
    if folder.exists() and any(folder.iterdir()):
        msg = f"{folder} is not empty; `lambdalab init` writes a new project into an empty folder"
        raise ConfigError(msg)
    (folder / "views").mkdir(parents=True, exist_ok=True)
    files = {
        folder / "streams.py": STREAMS,
        folder / "views" / "orders_by_shop_hourly.py": VIEW,
        folder / "README.md": README.format(name=folder.name, path=folder.resolve()),
    }
    for path, text in files.items():
        path.write_text(text)
    return list(files)
