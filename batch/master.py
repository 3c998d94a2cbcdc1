"""The master dataset: every accepted event once, with its Kafka coordinates, never rewritten.

Append-only Parquet on HDFS, one file per (ingest window, partition, offset range) named
by :class:`lambdalab.paths.MasterFile`. A file is written under a hidden temporary name
and renamed into place: the rename is the commit, so a crash leaves either the whole
file or none of it (readers, Spark and Trino, skip names starting with ``_`` or ``.``).
Columns: the Kafka coordinates, ingest time, the raw record bytes (byte-for-byte what
the producer sent), and the parsed fields of the stream.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from hdfs import InsecureClient
from hdfs.util import HdfsError

from lambdalab.errors import ClaimLost, SchemaRefused
from lambdalab.paths import HdfsPaths, MasterFile
from lambdalab.schema import Stream, parse_ts_ms
from lambdalab.settings import Settings
from lambdalab.wait import wait_until

log = logging.getLogger(__name__)

CLAIM_READ_WAIT_S = 30.0

COORDINATES = [
    pa.field("topic", pa.string(), nullable=False),
    pa.field("partition", pa.int32(), nullable=False),
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("ingest_ts", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("key", pa.binary()),
    pa.field("value", pa.binary(), nullable=False),
]


def master_schema(stream: Stream) -> pa.Schema:
    """Arrow schema of the master dataset of ``stream``."""
    return pa.schema(COORDINATES + stream.arrow_fields())


def to_table(stream: Stream, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (coordinates, raw bytes, validated event fields) as a master-dataset table."""
    schema = master_schema(stream)
    cols: dict[str, list[Any]] = {f.name: [] for f in schema}
    for row in rows:
        for f in COORDINATES:
            cols[f.name].append(row[f.name])
        event = row["event"]
        for f in stream.fields:
            value = event.get(f.name)
            if f.type == "timestamp" and value is not None:
                value = parse_ts_ms(value)
            cols[f.name].append(value)
    return pa.table(cols, schema=schema)


def commit_file(
    client: InsecureClient,
    settings: Settings,
    stream: Stream,
    mf: MasterFile,
    table: pa.Table,
    run_id: str | None = None,
) -> str:
    """Write one master file atomically; return its path (also when it existed already).

    Fenced in HDFS itself, so that any number of landers on any number of hosts commit
    every offset once:

    1. the data is written under a temporary name of this run (``_tmp.{run}.{name}``);
    2. the file's first offset is **claimed** by creating
       ``_claims/p{partition}-o{first}`` with ``overwrite=false``, which the NameNode grants
       to exactly one writer; the claim records the temporary and the final name;
    3. the temporary file is renamed to its final name (the commit).

    A lander that loses the claim first completes the winner's commit if the winner died
    between 2 and 3 (the same rename, which only one caller can make). If the claim names
    this very range, the file is committed and its path returned; otherwise it raises
    :class:`ClaimLost`: its view of the committed offsets is stale, and a new run resumes
    from the files that exist. Committing the same range twice is a no-op.

    Raises:
        ClaimLost: another lander claimed this first offset for another range.
    """
    folder = f"{HdfsPaths(settings).master(stream.name)}/{mf.date_dir}"
    final = f"{folder}/{mf.name}"
    if client.status(final, strict=False) is not None:
        return final  # this very range is committed (identical coordinates, identical rows)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    tmp = f"{folder}/_tmp.{run_id or uuid.uuid4().hex[:12]}.{mf.name}"
    client.write(tmp, data=buf.getvalue(), overwrite=True)
    claim = f"{HdfsPaths(settings).claims(stream.name)}/p{mf.partition:03d}-o{mf.first_offset:012d}"
    mine = {"final": final, "tmp": tmp}
    held = _claim(client, claim, mine)
    if held != mine:
        _complete(client, held)
        client.delete(tmp)
        if held["final"] == final:
            return final  # a dead run claimed this very range; its commit is completed now
        msg = (
            f"another archiver committed {held['final'].rsplit('/', 1)[-1]} from offset "
            f"{mf.first_offset} of partition {mf.partition}; this run stops (its view of the "
            "master dataset is stale) and the next one resumes from the committed files"
        )
        raise ClaimLost(msg)
    _complete(client, mine)
    return final


def _claim(client: InsecureClient, path: str, mine: dict[str, str]) -> dict[str, str]:
    """Create the claim ``path`` holding ``mine``; return whichever claim holds it now."""
    try:
        client.write(path, data=orjson.dumps(mine), overwrite=False)
        return mine
    except HdfsError as exc:
        text = str(exc).lower()
        # exists: claimed before; lease owned: another lander is creating it right now
        if "exists" not in text and "lease" not in text:
            raise

    def held() -> dict[str, str]:
        with client.read(path) as reader:
            return dict(orjson.loads(reader.read()))

    # the other lander's create may still be open: its claim is not readable yet
    return wait_until(
        held,
        timeout_s=CLAIM_READ_WAIT_S,
        interval_s=0.2,
        what=f"claim {path} readable",
        retry_on=(HdfsError, orjson.JSONDecodeError),
        reraise=True,
    )


def _complete(client: InsecureClient, claim: dict[str, str]) -> bool:
    """Rename a claim's temporary file to its final name; True if this call committed it."""
    if client.status(claim["final"], strict=False) is not None:
        return False
    try:
        client.rename(claim["tmp"], claim["final"])
    except HdfsError:
        if client.status(claim["final"], strict=False) is not None:
            return False
        raise
    return True


def list_files(
    client: InsecureClient, settings: Settings, stream: str
) -> list[tuple[str, MasterFile]]:
    """Every committed master file (path, parsed name), in (partition, offset) order."""
    root = HdfsPaths(settings).master(stream)
    if client.status(root, strict=False) is None:
        return []
    found = []
    for day in client.list(root):
        if not day.startswith("ingest_date="):
            continue
        for name in client.list(f"{root}/{day}"):
            mf = MasterFile.parse(name)
            if mf is not None:
                found.append((f"{root}/{day}/{name}", mf))
    return sorted(found, key=lambda item: (item[1].partition, item[1].first_offset))


def next_offsets(files: list[tuple[str, MasterFile]]) -> dict[int, int]:
    """Per partition, the offset after the last one committed to the master dataset."""
    nxt: dict[int, int] = {}
    for _path, mf in files:
        nxt[mf.partition] = max(nxt.get(mf.partition, 0), mf.last_offset + 1)
    return nxt


def landed_offsets(
    client: InsecureClient, settings: Settings, stream: str, partitions: Iterable[int]
) -> dict[int, int]:
    """Per partition of ``partitions``, the offset after the last one landed (0: none yet).

    What :func:`next_offsets` answers over :func:`list_files`, read from the newest
    ``ingest_date=`` folder back only until every partition was seen, so a health probe
    lists one or two folders rather than the whole history. A partition's files go to
    folders in offset order (ingest windows grow with offsets), so the newest folder that
    holds one of its files holds its last one.
    """
    root = HdfsPaths(settings).master(stream)
    wanted = set(partitions)
    found: dict[int, int] = {}
    if not wanted or client.status(root, strict=False) is None:
        return dict.fromkeys(sorted(wanted), 0)
    days = sorted((d for d in client.list(root) if d.startswith("ingest_date=")), reverse=True)
    for day in days:
        if wanted <= found.keys():
            break
        day_files = [(day, mf) for mf in map(MasterFile.parse, client.list(f"{root}/{day}")) if mf]
        for partition, nxt in next_offsets(day_files).items():
            found.setdefault(partition, nxt)
    return {p: found.get(p, 0) for p in sorted(wanted)}


def read_master(
    client: InsecureClient, settings: Settings, stream: str, paths: list[str] | None = None
) -> pa.Table:
    """The committed master files of ``stream`` (or just ``paths``) as one Arrow table.

    Each file is read in the stream's declared shape (:func:`conform`): a field added since
    the file was written holds its default. For small ranges (tests, the lab's drift
    check); Spark and Trino read at scale.
    """
    from lambdalab.schema import STREAMS

    if paths is None:
        paths = [path for path, _mf in list_files(client, settings, stream)]
    tables = []
    for path in paths:
        with client.read(path) as reader:
            table = pq.read_table(io.BytesIO(reader.read()))
        tables.append(conform(table, STREAMS[stream]) if stream in STREAMS else table)
    return pa.concat_tables(tables) if tables else pa.table({})


def conform(table: pa.Table, stream: Stream) -> pa.Table:
    """A master file's table in the declared shape: a missing field filled with its default."""
    schema = master_schema(stream)
    columns = []
    for f in stream.fields:
        if f.name in table.column_names:
            column = table.column(f.name)
            if f.default is not None:
                column = pc.fill_null(column, _stored(f, f.default))
        else:
            column = pa.array([_stored(f, f.default)] * table.num_rows, schema.field(f.name).type)
        columns.append(column)
    coordinates = [table.column(f.name) for f in COORDINATES]
    return pa.Table.from_arrays(coordinates + columns, schema=schema)


def _stored(f: Any, value: Any) -> Any:
    """A validated value as the master dataset stores it (a timestamp: ms since 1970)."""
    return parse_ts_ms(value) if f.type == "timestamp" and value is not None else value


def schema_record_path(settings: Settings, stream: str) -> str:
    """Where the shape of ``stream``'s stored data is recorded (hidden from every reader)."""
    return f"{HdfsPaths(settings).master(stream)}/_schema.json"


def check_schema(
    client: InsecureClient, settings: Settings, stream: Stream, *, record: bool = True
) -> str:
    """Check the declared ``stream`` against the recorded shape of its data; record it.

    The first landing records the declaration; an allowed evolution (an optional field
    added, ...: :meth:`Stream.evolution_problems`) records the new one. Returns what was
    done: ``"recorded"``, ``"evolved"`` or ``"unchanged"``. With ``record=False`` (``lambdalab
    project check --stored``) it only checks, and says ``"new"``/``"evolves"`` instead.

    Raises:
        SchemaRefused: the declaration removes or retypes a field of stored data.
    """
    path = schema_record_path(settings, stream.name)
    declared = stream.record()
    recorded = _read_record(client, path)
    if recorded == declared:
        return "unchanged"
    if recorded is not None:
        problems = stream.evolution_problems(recorded)
        if problems:
            msg = (
                f"stream {stream.name!r}: the declaration does not match its stored data "
                f"({path}): {'; '.join(problems)}. Stored events are never rewritten: only "
                "optional fields (with a default) may be added; declare a new stream for "
                "another shape"
            )
            raise SchemaRefused(msg)
    if not record:
        return "new" if recorded is None else "evolves"
    try:
        client.write(path, data=orjson.dumps(declared, option=orjson.OPT_INDENT_2), overwrite=True)
    except HdfsError:
        # Another lander wrote the same record at the same moment (HDFS took the file, and
        # its lease, from under this write): fine if what is there now is this declaration.
        if _read_record(client, path) != declared:
            raise
    return "recorded" if recorded is None else "evolved"


def window_record_path(settings: Settings, stream: str) -> str:
    """Where the ingest-window width of ``stream``'s master files is recorded (hidden)."""
    return f"{HdfsPaths(settings).master(stream)}/_window.json"


def check_window(client: InsecureClient, settings: Settings, stream: str) -> int | None:
    """Record the width W every master file of ``stream`` holds one ingest window of.

    Called by each lander before it commits anything. The first landing (no master file
    yet) records ``batch.window_s``; a lander with another width marks the record mixed
    for good (``window_s`` null), as does a race between two first landings with different
    widths. Files landed before widths were recorded leave no record. Returns the width
    now recorded, None when it is unknown or mixed.

    What it buys: with one known width W, a master file in a window below a cut (a
    multiple of W) holds only records below it, so a build reads its files without a
    row-level cut filter (:func:`recorded_window`, :func:`batch.compile.read_master`).
    """
    path = window_record_path(settings, stream)
    width = settings.batch.window_s
    recorded = _read_record(client, path)
    if recorded is None:
        if list_files(client, settings, stream):
            return None  # landed before widths were recorded: unknown, keep the filter
        try:
            client.write(path, data=orjson.dumps({"window_s": width}), overwrite=False)
            return width
        except HdfsError:  # another first lander wrote it meanwhile
            recorded = _read_record(client, path)
    if recorded.get("window_s") == width:
        return width
    if recorded.get("window_s") is not None:
        log.warning(
            "stream %s: master files were landed in %s s ingest windows, batch.window_s is "
            "%s now; builds keep the row-level cut filter from now on",
            stream,
            recorded["window_s"],
            width,
        )
        client.write(path, data=orjson.dumps({"window_s": None}), overwrite=True)
    return None


def recorded_window(client: InsecureClient, settings: Settings, stream: str) -> int | None:
    """The width recorded by :func:`check_window` (None: unknown or mixed)."""
    recorded = _read_record(client, window_record_path(settings, stream))
    return None if recorded is None else recorded.get("window_s")


def whole_windows(client: InsecureClient, settings: Settings, stream: str, cut_ms: int) -> bool:
    """Whether every master file of ``stream`` below ``cut_ms`` holds only records below it.

    True when the recorded width (:func:`check_window`) is ``batch.window_s`` and the cut
    is a multiple of it: each file then holds one whole window that ends at or before it.
    """
    width = recorded_window(client, settings, stream)
    return width is not None and width == settings.batch.window_s and cut_ms % (width * 1000) == 0


def _read_record(client: InsecureClient, path: str) -> Any:
    """A stored JSON record (None: none yet); waits out another lander's write of it.

    A record being written reads as empty or cut short: read again until it parses.
    """

    def parsed() -> tuple[Any]:
        try:
            with client.read(path) as reader:
                raw = reader.read()
        except HdfsError as exc:
            if any(text in str(exc) for text in ("not found", "not exist", "FileNotFound")):
                return (None,)
            raise
        return (orjson.loads(raw),)

    found: tuple[Any] = wait_until(
        parsed,
        timeout_s=10,
        interval_s=0.2,
        what=f"a complete record at {path}",
        retry_on=(orjson.JSONDecodeError, HdfsError),
        reraise=True,
    )
    return found[0]
