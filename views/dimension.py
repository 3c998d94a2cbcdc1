"""Dimension tables: small, slowly changing lookups a view enriches its events from.

A :class:`Dimension` is declared once (name, key field, value fields with their types)
and registered in :data:`DIMENSIONS`; a view names it in ``enrich``. Its rows are loaded
from a file (CSV with a header, or JSON lines) or a compacted Kafka topic (its newest value
per key, :func:`topic_rows`) as an immutable, numbered **version**: the
batch layer reads a version as Parquet on HDFS (``batch.dimensions``), the speed layer
from a Redis hash (``speed.dimensions``), and a view runs pinned to one version
(:meth:`views.definition.ViewDef.pinned`), so a new version is a new batch version and a
speed-layer rebuild. This module is pure: declarations, file parsing and the names of a
version in each store.

Where declarations come from: :func:`declare` (a user project registers its dimensions
with it at import, as it registers its streams and views).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdalab.errors import DefinitionError, NotFound, ValidationFailed
from lambdalab.schema import MAX_STRING, Field

DIMENSION_TYPES = ("string", "int", "float", "bool")
KEY_TYPES = ("string", "int")
Table = dict[Any, tuple[Any, ...]]  # key value -> values, in the declared order of fields


@dataclass(frozen=True)
class Dimension:
    """A lookup table: rows keyed by ``key``, each with the values of ``fields``."""

    name: str
    key: Field
    fields: tuple[Field, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name != self.name.lower():
            msg = f"dimension name {self.name!r} must be a lowercase identifier"
            raise DefinitionError(msg)
        if self.key.type not in KEY_TYPES:
            msg = f"dimension {self.name}: key {self.key.name!r} must be one of {KEY_TYPES}"
            raise DefinitionError(msg)
        names = [self.key.name, *(f.name for f in self.fields)]
        if len(set(names)) != len(names) or not self.fields:
            msg = f"dimension {self.name}: needs value fields, names distinct from the key's"
            raise DefinitionError(msg)
        for f in self.fields:
            if f.type not in DIMENSION_TYPES:
                msg = f"dimension {self.name}: field {f.name!r} must be one of {DIMENSION_TYPES}"
                raise DefinitionError(msg)

    def field_types(self) -> dict[str, str]:
        """Value field -> type."""
        return {f.name: f.type for f in self.fields}

    def index(self, name: str) -> int:
        """Position of value field ``name`` in a row's values."""
        return [f.name for f in self.fields].index(name)

    def read(self, path: Path) -> Table:
        """The rows of a ``.csv`` (header row; an empty cell is NULL) or ``.jsonl`` file.

        Raises:
            ValidationFailed: a row is malformed (wrong type, missing or NULL key, unknown
                column, duplicate key), naming the file, line and column.
        """
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".csv":
            rows = _csv_rows(text)
        elif path.suffix in (".jsonl", ".json", ".ndjson"):
            rows = _jsonl_rows(path, text)
        else:
            msg = f"dimension file {path}: use .csv or .jsonl"
            raise ValidationFailed(msg)
        return self.table_of((f"{path}:{line}", row) for line, row in rows)

    def table_of(self, rows: Iterable[tuple[str, dict[str, Any]]]) -> Table:
        """Validated rows (where each is, column -> value) as a table; see :meth:`read`."""
        table: Table = {}
        known = {self.key.name, *(f.name for f in self.fields)}
        for where, row in rows:
            unknown = sorted(set(row) - known)
            if unknown:
                msg = f"{where}: unknown column(s) {', '.join(unknown)}"
                raise ValidationFailed(msg)
            key = _value(self.key, row.get(self.key.name), where)
            if key is None:
                msg = f"{where}: key {self.key.name!r} is missing"
                raise ValidationFailed(msg)
            if key in table:
                msg = f"{where}: duplicate key {key!r}"
                raise ValidationFailed(msg)
            table[key] = tuple(_value(f, row.get(f.name), where) for f in self.fields)
        return table


def topic_rows(
    dim: Dimension, records: Iterable[tuple[int, int, bytes | None, bytes | None]]
) -> Table:
    """The table a compacted topic holds: per key, its newest value; a tombstone deletes.

    ``records`` are (partition, offset, key, value) in log order. A record's key is the
    dimension key as UTF-8 text, its value a JSON object of the value fields (a NULL value
    deletes the key), as a compacted topic keeps them.

    Raises:
        ValidationFailed: a record without a key, or a value that is not a JSON object of
            the dimension's fields, naming its partition and offset.
    """
    latest: dict[str, tuple[str, dict[str, Any]]] = {}
    for partition, offset, key, value in records:
        where = f"dimension {dim.name}, partition {partition} offset {offset}"
        if key is None:
            msg = f"{where}: a record without a key"
            raise ValidationFailed(msg)
        text = key.decode("utf-8", errors="replace")
        if value is None:
            latest.pop(text, None)
            continue
        try:
            obj = json.loads(value)
        except ValueError as exc:
            msg = f"{where}: value is not valid JSON: {exc}"
            raise ValidationFailed(msg) from exc
        if not isinstance(obj, dict):
            msg = f"{where}: value must be a JSON object"
            raise ValidationFailed(msg)
        latest[text] = (where, {**obj, dim.key.name: text})
    return dim.table_of(latest.values())


def _csv_rows(text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    return [
        (n + 2, {k: (None if v == "" else v) for k, v in row.items()})
        for n, row in enumerate(reader)
    ]


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            msg = f"{path}:{n}: not valid JSON: {exc}"
            raise ValidationFailed(msg) from exc
        if not isinstance(obj, dict):
            msg = f"{path}:{n}: each line must be a JSON object"
            raise ValidationFailed(msg)
        rows.append((n, obj))
    return rows


def _value(f: Field, raw: Any, where: str) -> Any:
    """``raw`` (JSON value, or CSV text) as a value of ``f``'s type; None stays None."""
    if raw is None:
        return None
    text = isinstance(raw, str)
    try:
        if f.type == "string" and text and len(raw) <= MAX_STRING:
            return raw
        if f.type == "int" and not isinstance(raw, bool | float):
            value = int(raw)
            if -(2**63) <= value < 2**63 and (not text or raw.strip().lstrip("-").isdigit()):
                return value
        if f.type == "float" and not isinstance(raw, bool):
            real = float(raw)
            if math.isfinite(real):
                return real
        if f.type == "bool" and (isinstance(raw, bool) or raw in ("true", "false")):
            return raw if isinstance(raw, bool) else raw == "true"
    except ValueError:
        pass
    msg = f"{where}: column {f.name!r} must be a {f.type}, got {str(raw)[:40]!r}"
    raise ValidationFailed(msg)


def content_hash(table: Table) -> str:
    """A hash of a table's rows: loading the same content again makes no new version."""
    rows = sorted(([key, *values] for key, values in table.items()), key=lambda r: repr(r[0]))
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


# --- a key in a Redis hash field ------------------------------------------------------


def key_text(value: Any) -> str:
    """A key as a Redis hash field (ints as decimal)."""
    return str(value)


def key_value(dim: Dimension, text: str) -> Any:
    """The inverse of :func:`key_text` for ``dim``'s key type."""
    return int(text) if dim.key.type == "int" else text


# --- the registry -------------------------------------------------------------------------

DIMENSIONS: dict[str, Dimension] = {}


def declare(dim: Dimension) -> Dimension:
    """Register ``dim`` (a project's dimensions are declared at import); returns it.

    Raises:
        DefinitionError: another dimension of that name is declared.
    """
    held = DIMENSIONS.get(dim.name)
    if held is not None and held != dim:
        msg = f"dimension {dim.name!r} is declared twice, differently"
        raise DefinitionError(msg)
    DIMENSIONS[dim.name] = dim
    return dim


def get_dimension(name: str) -> Dimension:
    """The dimension declared as ``name``.

    Raises:
        NotFound: none is, listing the declared ones.
    """
    if name not in DIMENSIONS:  # the project's dimensions.py, on first use
        from views import registry

        registry.declare_dimensions()
    try:
        return DIMENSIONS[name]
    except KeyError:
        declared = ", ".join(sorted(DIMENSIONS)) or "none"
        msg = f"unknown dimension {name!r}; declared: {declared}"
        raise NotFound(msg) from None
