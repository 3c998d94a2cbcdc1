"""Event streams, each declared once; every other form of the schema is derived from it.

A :class:`Stream` lists typed fields. From it come: validation of raw Kafka bytes (the
serde, which also yields the dead-letter reason), the pyarrow schema of the master
dataset, the Spark schema, and the JSON schema of the HTTP API. The streams themselves
are declared in the user's project (``streams.py``, :mod:`lambdalab.project`) and
collected in :data:`STREAMS`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import orjson

from lambdalab.errors import DefinitionError, NotFound

FieldType = Literal["string", "int", "float", "bool", "timestamp"]
FIELD_TYPES: tuple[str, ...] = ("string", "int", "float", "bool", "timestamp")
TimeFormat = Literal["iso", "epoch_s", "epoch_ms"]
TIME_FORMATS: tuple[str, ...] = ("iso", "epoch_s", "epoch_ms")
RESERVED_STREAM_NAMES = ("dlq",)
# Event times every layer represents identically: after the Gregorian switch (Spark and
# Parquet rebase older dates) and far enough before year 10000 that a bucket or a query
# range ending after the event still fits in a datetime.
TS_MIN = datetime(1900, 1, 1, tzinfo=UTC)
TS_MAX = datetime(9000, 1, 1, tzinfo=UTC)
MAX_STRING = 2048
_ONE_MS = timedelta(milliseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Field:
    """One typed field of an event.

    ``time_format`` says how a producer writes a timestamp field: ``"iso"`` (RFC 3339
    text), ``"epoch_s"`` (a JSON number of seconds since 1970, a fraction allowed, kept to
    the millisecond) or ``"epoch_ms"`` (a JSON integer of milliseconds). Whatever the
    form, the validated event holds the normal ISO text (:func:`format_ts`); an epoch
    field also takes ISO text, which is what the edge writes to the log.

    ``default`` (optional fields only) is the value of the field in an event that leaves
    it out, and in every event stored before the field was declared: the master
    dataset's readers fill it in (schema evolution, docs/lab/adding-a-stream.md).
    """

    name: str
    type: FieldType
    required: bool = True
    time_format: TimeFormat = "iso"
    default: Any = None

    def problem(self) -> str | None:
        """What is wrong with this declaration (None: nothing); :class:`Stream` raises it."""
        if not self.name.isidentifier():
            return "a field name must be an identifier"
        if self.type not in FIELD_TYPES:
            return f"unknown type {self.type!r} (one of {', '.join(FIELD_TYPES)})"
        if self.time_format not in TIME_FORMATS:
            return f"unknown time_format {self.time_format!r} (one of {', '.join(TIME_FORMATS)})"
        if self.time_format != "iso" and self.type != "timestamp":
            return "time_format applies to timestamp fields only"
        if self.default is not None:
            if self.required:
                return "a default is for an optional field (required=False)"
            _, why = _check(self, self.default)
            if why:
                return f"default {self.default!r} is not a valid value: {why}"
        return None


@dataclass(frozen=True)
class Stream:
    """A stream of immutable facts: its name, its fields, and which field is event time."""

    name: str
    fields: tuple[Field, ...]
    id_field: str = "event_id"
    time_field: str = "event_time"
    field_names: tuple[str, ...] = field(init=False)
    _known: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "field_names", tuple(f.name for f in self.fields))
        object.__setattr__(self, "_known", frozenset(self.field_names))
        if not self.name.isidentifier() or self.name != self.name.lower():
            msg = f"stream name {self.name!r} must be a lowercase identifier"
            raise DefinitionError(msg)
        if self.name in RESERVED_STREAM_NAMES:
            msg = f"stream name {self.name!r} is reserved (its topic is the dead-letter topic)"
            raise DefinitionError(msg)
        for f in self.fields:
            if not isinstance(f, Field):
                msg = f"stream {self.name!r}: fields must be Field(...), got {type(f).__name__}"
                raise DefinitionError(msg)
            problem = f.problem()
            if problem:
                msg = f"stream {self.name!r}: field {f.name!r}: {problem}"
                raise DefinitionError(msg)
        if len(self._known) != len(self.field_names):
            twice = sorted({n for n in self.field_names if self.field_names.count(n) > 1})
            msg = f"stream {self.name!r}: field {twice[0]!r} is declared twice"
            raise DefinitionError(msg)
        for role, name in (("id_field", self.id_field), ("time_field", self.time_field)):
            if name not in self._known:
                msg = f"stream {self.name!r}: {role} {name!r} is not one of its fields"
                raise DefinitionError(msg)
        if self.get_field(self.time_field).type != "timestamp":
            msg = f"stream {self.name!r}: time_field {self.time_field!r} must be a timestamp field"
            raise DefinitionError(msg)

    def record(self) -> dict[str, Any]:
        """The stored shape of the stream (``master/{stream}/_schema.json``), as plain data."""
        return {
            "stream": self.name,
            "fields": [
                {"name": f.name, "type": f.type, "required": f.required, "default": f.default}
                for f in self.fields
            ],
        }

    def evolution_problems(self, recorded: dict[str, Any]) -> list[str]:
        """Why this declaration cannot read data stored under ``recorded`` (empty: it can).

        Allowed: adding an optional field (its ``default`` fills in old events), making a
        required field optional, changing a ``time_format``. Refused, because stored data
        is never rewritten: removing a field, changing its type or its default, making an
        optional field required, adding a required field.
        """
        old = {f["name"]: f for f in recorded.get("fields", [])}
        now = {f.name: f for f in self.fields}
        problems = []
        for name, was in old.items():
            if name not in now:
                problems.append(f"field {name!r} was removed")
            elif now[name].type != was["type"]:
                problems.append(
                    f"field {name!r} changed type from {was['type']} to {now[name].type}"
                )
            elif now[name].required and not was["required"]:
                problems.append(f"field {name!r} became required (stored events may lack it)")
            elif now[name].default != was.get("default"):
                problems.append(
                    f"field {name!r} changed its default from {was.get('default')!r} to "
                    f"{now[name].default!r} (the views that read it would change meaning)"
                )
        for name, f in now.items():
            if name not in old and f.required:
                problems.append(
                    f"field {name!r} was added as required (stored events lack it; declare it "
                    "required=False with a default)"
                )
        return problems

    def get_field(self, name: str) -> Field:
        """The declared field ``name`` (KeyError if none)."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def validate(self, obj: Any) -> tuple[dict[str, Any] | None, str | None]:
        """Check one decoded event; return (normalised event, None) or (None, reason).

        Timestamps become ISO-8601 UTC strings with a ``Z``; ints stay ints; a float field
        holds a finite float (a JSON integer given for it becomes the nearest float); a bool
        field holds only JSON ``true``/``false``. Unknown fields are rejected so that a typo
        never silently drops data.
        """
        if not isinstance(obj, dict):
            return None, f"event must be a JSON object, got {type(obj).__name__}"
        if not obj.keys() <= self._known:
            unknown = sorted(set(obj) - self._known)
            return None, f"unknown field(s): {', '.join(unknown)}"
        out: dict[str, Any] = {}
        for f in self.fields:
            value = obj.get(f.name)
            if value is None:
                if f.required:
                    return None, f"field '{f.name}' is required"
                out[f.name] = f.default
                continue
            if _plainly_valid(f.type, value):  # the common case, without building anything
                out[f.name] = value
                continue
            norm, why = _check(f, value)
            if why:
                return None, why
            out[f.name] = norm
        return out, None

    def decode(self, raw: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
        """Decode and validate the raw bytes of a Kafka record (the serde)."""
        if raw is None:
            return None, "record has no value"
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return None, f"not valid JSON: {exc}"
        return self.validate(obj)

    def encode(self, event: dict[str, Any]) -> bytes:
        """The bytes written to Kafka for a validated event."""
        return orjson.dumps(event)

    def arrow_fields(self) -> list[Any]:
        """The pyarrow fields of the parsed columns (master dataset, batch input)."""
        import pyarrow as pa

        types = {
            "string": pa.string(),
            "int": pa.int64(),
            "float": pa.float64(),
            "bool": pa.bool_(),
            "timestamp": pa.timestamp("ms", tz="UTC"),
        }
        return [pa.field(f.name, types[f.type], nullable=not f.required) for f in self.fields]

    def spark_ddl(self) -> str:
        """Spark DDL of the parsed columns (used with ``from_json``)."""
        types = {
            "string": "STRING",
            "int": "BIGINT",
            "float": "DOUBLE",
            "bool": "BOOLEAN",
            "timestamp": "STRING",
        }
        return ", ".join(f"`{f.name}` {types[f.type]}" for f in self.fields)


def _plainly_valid(kind: FieldType, value: Any) -> bool:
    """True when ``value`` is valid and already normal; False means "ask :func:`_check`"."""
    if kind == "string":
        return type(value) is str and len(value) <= MAX_STRING
    if kind == "int":
        return type(value) is int and -(2**63) <= value < 2**63
    if kind == "float":
        return type(value) is float and math.isfinite(value)
    if kind == "bool":
        return type(value) is bool
    return type(value) is str and normal_ts_ms(value) is not None


def _check(f: Field, value: Any) -> tuple[Any, str | None]:
    if f.type == "string":
        if not isinstance(value, str):
            return None, f"field '{f.name}' must be a string, got {type(value).__name__}"
        if len(value) > MAX_STRING:
            return None, f"field '{f.name}' is longer than {MAX_STRING} characters"
        return value, None
    if f.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"field '{f.name}' must be an integer, got {type(value).__name__}"
        if not -(2**63) <= value < 2**63:
            return None, f"field '{f.name}' is out of the 64-bit range"
        return value, None
    if f.type == "float":
        return _check_float(f, value)
    if f.type == "bool":
        if not isinstance(value, bool):
            return None, f"field '{f.name}' must be true or false, got {_json_kind(value)}"
        return value, None
    return _check_timestamp(f, value)


def _check_float(f: Field, value: Any) -> tuple[Any, str | None]:
    """A finite float; a JSON integer becomes the nearest double (exact up to 2**53).

    An integer past 2**53 is rounded to the nearest double, as every JSON reader that
    reads numbers as doubles does (Spark, Trino, JavaScript); one beyond the double
    range, NaN and the infinities are refused.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, f"field '{f.name}' must be a number, got {_json_kind(value)}"
    try:
        number = float(value)
    except OverflowError:
        return None, f"field '{f.name}' is beyond the range of a 64-bit float"
    if not math.isfinite(number):
        return None, f"field '{f.name}' must be a finite number, got {value!r}"
    return number, None


def _json_kind(value: Any) -> str:
    """The JSON name of a decoded value's type, for a reason."""
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    return kinds.get(type(value), "an array" if isinstance(value, list) else "an object")


# The syntax accepted for a timestamp field, checked before any parsing: Python's
# fromisoformat alone also takes "2026-03-01 10:15", "20260301T1015" or a stray letter
# before the offset. The calendar, the zone (required, named in its own message) and the
# range are checked after it.
RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)


def _check_timestamp(f: Field, value: Any) -> tuple[Any, str | None]:
    if f.time_format != "iso" and not isinstance(value, str):
        return _check_epoch(f, value)
    if not isinstance(value, str):
        return None, f"field '{f.name}' must be an ISO-8601 timestamp string"
    if not RFC3339.fullmatch(value):
        return None, (
            f"field '{f.name}' is not an ISO-8601 timestamp in RFC 3339 form "
            f"(YYYY-MM-DDTHH:MM:SS[.fraction] then Z or +HH:MM): {value[:40]!r}"
        )
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None, f"field '{f.name}' is not an ISO-8601 timestamp: {value[:40]!r}"
    if parsed.tzinfo is None:
        return None, f"field '{f.name}' must carry a timezone (UTC), got {value[:40]!r}"
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not TS_MIN <= utc < TS_MAX:
        return None, (
            f"field '{f.name}' is outside the accepted range {format_ts(TS_MIN)} to "
            f"{format_ts(TS_MAX)} (exclusive): {value[:40]!r}"
        )
    return format_ts(utc), None


def value_text(value: Any) -> str:
    """A validated value as text, the same in every layer (a key part, a sketch item).

    A bool is ``true``/``false`` (as Spark casts it to a string and as JSON writes it);
    every other type is ``str(value)``. Float fields have no text form every layer renders
    alike (Python and the JVM print doubles differently), so they cannot be view keys.
    """
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def _check_epoch(f: Field, value: Any) -> tuple[Any, str | None]:
    """An epoch number as the normal ISO text; seconds with a fraction floor to the ms."""
    unit = "seconds" if f.time_format == "epoch_s" else "milliseconds"
    if f.time_format == "epoch_ms" and (isinstance(value, bool) or not isinstance(value, int)):
        return None, (
            f"field '{f.name}' must be an integer number of milliseconds since 1970-01-01 "
            f"(or ISO-8601 text), got {_json_kind(value)}"
        )
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, (
            f"field '{f.name}' must be a number of seconds since 1970-01-01 "
            f"(or ISO-8601 text), got {_json_kind(value)}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        return None, f"field '{f.name}' must be a finite number of {unit}"
    if isinstance(value, int):
        ms = value * 1000 if f.time_format == "epoch_s" else value
    else:  # the float's shortest decimal form, so 1.001 s is 1001 ms, not 1000.9999
        ms = math.floor(Decimal(repr(value)) * 1000)
    if not _EPOCH_MIN_MS <= ms < _EPOCH_MAX_MS:
        return None, (
            f"field '{f.name}' is outside the accepted range {format_ts(TS_MIN)} to "
            f"{format_ts(TS_MAX)} (exclusive): {value!r} {unit} since 1970-01-01"
        )
    return format_ts(EPOCH + timedelta(milliseconds=ms)), None


def format_ts(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``: the one textual form of a timestamp.

    The year always has four digits (``strftime("%Y")`` does not pad years before 1000).
    """
    utc = moment.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
        f"{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


def parse_ts_ms(text: str) -> int:
    """Milliseconds since the epoch of a normalised timestamp string (exact, no float)."""
    fast = normal_ts_ms(text)
    if fast is not None:
        return fast
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment - EPOCH) // _ONE_MS


# The hot path of every reader of the log: events that went through the edge (or the
# generator) carry their event time in the normal form of :func:`format_ts`, which is
# checked and read here with one regex and one C-level parse, no reformatting. Anything
# else returns None and takes the full path, which also gives the reasons.
NORMAL_TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_EPOCH_MIN_MS = (TS_MIN - EPOCH) // _ONE_MS
_EPOCH_MAX_MS = (TS_MAX - EPOCH) // _ONE_MS
_NORMAL_MIN = format_ts(TS_MIN)
_NORMAL_MAX = format_ts(TS_MAX)  # fixed-width text in normal form sorts like time


def normal_ts_ms(text: str) -> int | None:
    """Milliseconds of a valid, in-range timestamp in the normal form (:func:`format_ts`).

    None for any other string (then :func:`parse_ts_ms` or the validator's full path).
    """
    if NORMAL_TS.fullmatch(text) is None or not _NORMAL_MIN <= text < _NORMAL_MAX:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:  # Feb 30, hour 24, ...: the full path words the reason
        return None
    return (moment - EPOCH) // _ONE_MS


# The streams of the project (lambdalab.project): loaded once, when this module is first
# imported, into this dict, which every layer reads (tests add their own to it).
STREAMS: dict[str, Stream] = {}


def load_project_streams() -> None:
    """Fill :data:`STREAMS` from the project's ``streams.py`` (see :mod:`lambdalab.project`).

    Raises:
        DefinitionError: a declaration is broken, named (file, line, stream, field).
    """
    from lambdalab.project import load_streams, project_dir

    STREAMS.update(load_streams(project_dir()))


load_project_streams()


def __getattr__(name: str) -> Stream:
    """``PAGE_VIEWS``: the example project's stream, for the lab, the benches and the tests."""
    if name == "PAGE_VIEWS":
        return get_stream("pageviews")
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def default_stream(name: str | None) -> Stream:
    """The stream named ``name`` (the ``default_stream`` setting); None: the project's first.

    Raises:
        NotFound: no such stream, or the project declares none.
    """
    if name is not None:
        return get_stream(name)
    if not STREAMS:
        msg = "the project declares no stream (streams.py: STREAMS = [Stream(...)])"
        raise NotFound(msg)
    return next(iter(STREAMS.values()))


def get_stream(name: str) -> Stream:
    """The stream declared under ``name``.

    Raises:
        NotFound: no such stream, listing the declared ones.
    """
    try:
        return STREAMS[name]
    except KeyError:
        msg = f"unknown stream {name!r}; declared: {', '.join(sorted(STREAMS))}"
        raise NotFound(msg) from None
