"""Trino tables over the master dataset and the batch views (Hive catalog, file metastore).

Schema ``hive.{namespace}`` lives under the namespace's HDFS root. ``master_{stream}`` is
an external table over the master dataset, partitioned by ``ingest_date``; each published
version of a view is the table ``{view}__v{N}`` over its immutable data dir; the stable
name ``{view}`` is a Trino VIEW pointed at the current version after each publication,
so older versions stay queryable by version while SQL users see one name.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from batch.compile import output_columns
from lambdalab.errors import ServiceUnavailable
from lambdalab.paths import HdfsPaths
from lambdalab.schema import Stream
from lambdalab.settings import Settings
from views.definition import ViewDef

if TYPE_CHECKING:
    from batch.publish import VersionStore

PARALLEL = 4  # statements in flight: Trino and HDFS latency, not CPU, bound this step

_TRINO_TYPES = {
    "string": "varchar",
    "int": "bigint",
    "float": "double",
    "bool": "boolean",
    "timestamp": "timestamp(3)",
}
_COORDINATES = [
    ("topic", "varchar"),
    ("partition", "integer"),
    ("offset", "bigint"),
    ("ingest_ts", "timestamp(3)"),
    ("key", "varbinary"),
    ("value", "varbinary"),
]


def version_table(view: str, n: int) -> str:
    """The Trino table name of version ``n`` of ``view``."""
    return f"{view}__v{n}"


class TrinoTables:
    """DDL and queries against the namespace's Trino schema."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.schema = settings.trino_schema
        self.catalog = settings.trino.catalog
        self.paths = HdfsPaths(settings)

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one statement; return (column names, rows).

        Raises:
            ServiceUnavailable: Trino did not answer.
        """
        import trino

        t = self.settings.trino
        try:
            conn = trino.dbapi.connect(
                host=t.host, port=t.port, user=t.user, catalog=self.catalog, schema=self.schema
            )
            cur = conn.cursor()
            cur.execute(sql)
            rows = [tuple(r) for r in cur.fetchall()]
        except OSError as exc:
            msg = f"Trino ({t.host}:{t.port}) did not answer: {exc}; start the stack"
            raise ServiceUnavailable(msg) from exc
        columns = [d[0] for d in cur.description or []]
        conn.close()
        return columns, rows

    def ensure_schema(self) -> None:
        """Create the namespace's schema, located under its HDFS root."""
        location = self.paths.uri(f"{self.paths.root}/warehouse")
        self.query(
            f"CREATE SCHEMA IF NOT EXISTS {self.catalog}.{self.schema} "
            f"WITH (location = '{location}')"
        )

    def register_master(self, stream: Stream, *, listed: bool = False) -> str:
        """Create ``master_{stream}`` over the master dataset and sync its partitions.

        A field added to the stream since the table was created is added to it (schema
        evolution); Trino reads it as null in files written before it (no default: raw
        SQL over the master dataset shows what is stored). ``listed``: the caller has just
        seen the table in the schema (:meth:`table_names`), so it is not created again.
        """
        table = f"master_{stream.name}"
        fields = _COORDINATES + [(f.name, _TRINO_TYPES[f.type]) for f in stream.fields]
        cols = ", ".join(f'"{n}" {t}' for n, t in [*fields, ("ingest_date", "varchar")])
        location = self.paths.uri(self.paths.master(stream.name))
        if not listed:
            self.query(
                f"CREATE TABLE IF NOT EXISTS {self._name(table)} ({cols}) WITH (format = "
                f"'PARQUET', external_location = '{location}', "
                "partitioned_by = ARRAY['ingest_date'])"
            )
        _, rows = self.query(f"SHOW COLUMNS FROM {self._name(table)}")
        existing = {str(row[0]) for row in rows}
        for name, kind in fields:
            if name not in existing:
                self.query(f'ALTER TABLE {self._name(table)} ADD COLUMN "{name}" {kind}')
        self.query(
            f"CALL {self.catalog}.system.sync_partition_metadata('{self.schema}', "
            f"'{table}', 'FULL')"
        )
        return table

    def register_version(self, view: ViewDef, n: int) -> str:
        """Create the table of version ``n`` of ``view`` over its data dir."""
        table = version_table(view.name, n)
        cols = ", ".join(f'"{name}" {typ}' for name, typ in output_columns(view))
        location = self.paths.uri(f"{self.paths.version(view.name, n)}/data")
        self.query(
            f"CREATE TABLE IF NOT EXISTS {self._name(table)} ({cols}) "
            f"WITH (format = 'PARQUET', external_location = '{location}')"
        )
        return table

    def table_names(self) -> set[str] | None:
        """The names of the schema's tables and views (one query); None: no such schema."""
        from trino.exceptions import TrinoUserError

        try:
            _, rows = self.query("SHOW TABLES")
        except TrinoUserError as exc:
            if exc.error_name == "SCHEMA_NOT_FOUND":
                return None
            raise
        return {str(name) for (name,) in rows}

    def registered(self) -> dict[str, set[int]]:
        """Per view, the version numbers that have a table in the schema (one query)."""
        return versions_in(self.table_names() or set())

    def point_current(self, view: str, n: int) -> None:
        """Point the stable name ``{view}`` at version ``n``."""
        self.query(
            f"CREATE OR REPLACE VIEW {self._name(view)} AS "
            f"SELECT * FROM {self._name(version_table(view, n))}"
        )

    def drop_version(self, view: str, n: int) -> None:
        """Forget the table of a deleted version (the data is already gone)."""
        self.query(f"DROP TABLE IF EXISTS {self._name(version_table(view, n))}")

    def drop_schema(self) -> None:
        """Forget the namespace's schema, its views and tables (never deletes their data)."""
        _, rows = self.query(
            f"SELECT table_name, table_type FROM {self.catalog}.information_schema.tables "
            f"WHERE table_schema = '{self.schema}'"
        )
        for name, kind in rows:
            what = "VIEW" if kind == "VIEW" else "TABLE"
            self.query(f"DROP {what} IF EXISTS {self._name(name)}")
        self.query(f"DROP SCHEMA IF EXISTS {self.catalog}.{self.schema}")

    def _name(self, table: str) -> str:
        return f'{self.catalog}.{self.schema}."{table}"'


def versions_in(names: set[str]) -> dict[str, set[int]]:
    """Per view, the version numbers among table names (``{view}__v{N}``)."""
    found: dict[str, set[int]] = {}
    for name in names:
        view, _, tail = name.rpartition("__v")
        if view and tail.isdigit():
            found.setdefault(view, set()).add(int(tail))
    return found


def expose(
    tables: TrinoTables, store: VersionStore, views: list[ViewDef], markers: dict[str, str]
) -> dict[str, int]:
    """Make a cycle's published versions queryable; return each view's current version.

    The schema first (created only when SHOW TABLES does not find it); then, side by
    side, each stream's master table (created if not listed, columns added, partitions synced)
    and each view: a table for every published version not registered yet (new, or missed
    by a failed cycle), the stable name pointed at the newest, tables of pruned versions
    dropped, and its ``markers[view]`` file written last (the step is done).
    """
    from lambdalab.schema import get_stream

    names = tables.table_names()  # also says whether the schema exists: one round trip
    if names is None:
        tables.ensure_schema()
        names = set()
    registered = versions_in(names)

    def one_view(view: ViewDef) -> int:
        published = store.published(view.name)
        held = registered.get(view.name, set())
        for n in sorted(set(published) - held):
            tables.register_version(view, n)
        tables.point_current(view.name, published[0])
        for n in sorted(held - set(published)):  # their data is already gone from HDFS
            tables.drop_version(view.name, n)
        store.touch(markers[view.name], str(published[0]))
        return published[0]

    streams = sorted({v.stream for v in views})
    with ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="trino") as pool:
        masters = [
            pool.submit(tables.register_master, get_stream(s), listed=f"master_{s}" in names)
            for s in streams
        ]
        current = {v.name: pool.submit(one_view, v) for v in views}
        for future in masters:
            future.result()
        return {name: future.result() for name, future in current.items()}
