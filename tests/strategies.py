"""Hypothesis strategies of adversarial input, each drawn together with its verdict.

A strategy here never asks the platform what is valid. Every value carries the verdict it
must get, worked out from how it was built (an int outside 64 bits, a string one
character too long, a time rendered from a known instant with a known UTC offset), and,
when valid, the normalised form the log must hold. Values are drawn by the declared type
of a stream's fields (:mod:`lambdalab.schema`), so every stream gets the same treatment.

Used by ``tests/integration/test_properties.py``; pure, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from lambdalab.schema import MAX_STRING, Field, Stream


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # the field's key is left out of the object
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NS = 10**9  # nanoseconds per second: instants are exact ints, never floats
TS_MIN_NS = (datetime(1900, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1) * 1000
TS_MAX_NS = (datetime(9000, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1) * 1000


@dataclass(frozen=True)
class Value:
    """One field value as sent (``MISSING``: left out), its verdict and normalised form."""

    sent: Any
    ok: bool
    norm: Any = None


@dataclass(frozen=True)
class Candidate:
    """One event as sent, with what the edge must do with it.

    ``broken`` are declared fields with a bad value, ``unknown`` undeclared ones; the edge
    must reject the event naming one of them. ``expected`` is the normalised event the
    log must hold when both are empty.
    """

    sent: dict[str, Any]
    broken: frozenset[str]
    unknown: frozenset[str]
    expected: dict[str, Any] | None

    def body(self, *, ascii_only: bool) -> str:
        """The JSON text of the event (``json`` writes ints beyond 64 bits, orjson won't)."""
        return json.dumps(self.sent, ensure_ascii=ascii_only)


# --- strings ------------------------------------------------------------------------------

SPECIAL_STRINGS = (
    "",
    "\x1f",  # the key separator
    "\\",  # the key escape
    "(none)",  # the rendering of a missing key field
    "\\(none)",
    "a\x1fb",
    "(none)\x1f(none)",
    "\x00",
    "\u2028",
    "\u2029",
    "\x85",
    "\U0001f600",
    "\r\n",
    "\t",
    "\x7f",
    "\ufeff",
    "e\u0301",
    "\U0010ffff",
    "|",  # the separator of a realtime field name
    ":",  # the separator of Redis key names
    "*",
    "'\"",
)


@st.composite
def _long_strings(draw: st.DrawFn, length: int) -> str:
    """A string of exactly ``length`` characters (code points) from a short repeated chunk."""
    chunk = draw(st.text(min_size=1, max_size=3))
    return (chunk * length)[:length]


def _strings_of(lengths: tuple[int, ...]) -> st.SearchStrategy[str]:
    return st.sampled_from(lengths).flatmap(_long_strings)


VALID_STRINGS = st.one_of(
    st.sampled_from(SPECIAL_STRINGS),
    st.text(max_size=8),  # every code point but surrogates: controls, emoji, U+2028, ...
    _strings_of((MAX_STRING, MAX_STRING - 1)),
).map(lambda s: Value(s, True, s))
BAD_STRINGS = _strings_of((MAX_STRING + 1, MAX_STRING + 2)).map(lambda s: Value(s, False))

# --- ints ---------------------------------------------------------------------------------

EDGE_INTS = (0, -1, 1, 2**63 - 1, -(2**63), 2**63 - 2, -(2**63) + 1, 2**62, -(2**62))
OUTSIDE_INTS = (2**63, -(2**63) - 1, 2**64 - 1, 2**64, -(2**64), 10**30, -(10**30))
VALID_INTS = st.one_of(
    st.sampled_from(EDGE_INTS), st.integers(min_value=-(2**63), max_value=2**63 - 1)
).map(lambda n: Value(n, True, n))
BAD_INTS = st.one_of(
    st.sampled_from(OUTSIDE_INTS),
    st.integers(min_value=2**63),
    st.integers(max_value=-(2**63) - 1),
).map(lambda n: Value(n, False))

# --- timestamps ---------------------------------------------------------------------------


def _ns_of(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


ANCHORS_NS = (
    TS_MIN_NS,
    TS_MAX_NS,
    0,
    _ns_of(datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
    _ns_of(datetime(2000, 2, 29, 23, 0, tzinfo=UTC)),
)
NUDGES_NS = (0, -1, 1, -(10**6), 10**6, -NS, NS, -3600 * NS, 3600 * NS, -86400 * NS)
OFFSETS_MIN = (0, 14 * 60, -12 * 60, 5 * 60 + 45, -(9 * 60 + 30), 13 * 60 + 45, -30, 23 * 60 + 59)
# ISO-8601 carries no letter but T and Z, no control character, line separator or emoji
INTRUDERS = ("\x00", "\x1f", "\n", "\u2028", "\U0001f600", "\x7f", "x")


def ms_text(ms: int) -> str:
    """The one normalised text of an instant (ms since the epoch): UTC, ms, four-digit year."""
    t = EPOCH + timedelta(milliseconds=ms)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        f".{t.microsecond // 1000:03d}Z"
    )


def _zone(draw: st.DrawFn, minutes: int) -> str:
    if minutes == 0:
        return draw(st.sampled_from(("Z", "+00:00", "-00:00")))
    sign = "+" if minutes > 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@st.composite
def _rendered_times(draw: st.DrawFn) -> Value:
    """A known instant near an edge, in local time at an odd offset, 0 to 9 fraction digits."""
    nudge = draw(st.one_of(st.sampled_from(NUDGES_NS), st.integers(-2 * 86400 * NS, 86400 * NS)))
    instant = draw(st.sampled_from(ANCHORS_NS)) + nudge
    digits = draw(st.sampled_from((3, 0, 1, 6, 7, 9)))
    unit = 10 ** (9 - digits)
    instant -= instant % unit  # exactly what the text says
    minutes = draw(st.sampled_from(OFFSETS_MIN))
    if minutes:
        minutes *= draw(st.sampled_from((1, -1)))
    seconds, fraction = divmod(instant + minutes * 60 * NS, NS)
    t = EPOCH + timedelta(seconds=seconds)
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    if digits:
        text += f".{fraction // unit:0{digits}d}"
    text += _zone(draw, minutes)
    if not TS_MIN_NS <= instant < TS_MAX_NS:
        return Value(text, False)
    return Value(text, True, ms_text(instant // 10**6))


NOT_TIMES = (
    "",
    "now",
    "(none)",
    "2026-03-01T10:15:00",  # no zone
    "2026-03-01",
    "2026-02-30T00:00:00Z",
    "2026-03-01T24:00:00Z",
    "2026-03-01T10:60:00Z",
    "2026-03-01T10:15:00+24:00",
    "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
    "9999-12-31T23:59:59.999999-14:00",  # after year 9999 in UTC
    "10000-01-01T00:00:00Z",
    "2026-03-01 10:15:00Z",  # fromisoformat takes these five: RFC 3339 does not
    "20260301T101500Z",
    "2026-03-01T10:15:00+05",
    "2026-03-01t10:15:00z",
    "2026-03-01T10:15:00.1234567890Z",
)


@st.composite
def _intruded_times(draw: st.DrawFn) -> Value:
    """A valid time text with one character no ISO-8601 text contains, anywhere in it.

    Token boundaries (the ends, the ``T``, the zone) are drawn more often: that is where
    a lenient parser skips what it does not expect.
    """
    text = draw(_rendered_times()).sent
    zone = len(text) - (1 if text.endswith("Z") else 6)
    at = draw(st.one_of(st.sampled_from((len(text), zone, 10, 11, 0)), st.integers(0, len(text))))
    return Value(text[:at] + draw(st.sampled_from(INTRUDERS)) + text[at:], False)


VALID_TIMES = _rendered_times().filter(lambda v: v.ok)
BAD_TIMES = st.one_of(
    _rendered_times().filter(lambda v: not v.ok),
    st.sampled_from(NOT_TIMES).map(lambda s: Value(s, False)),
)

# --- fields and events --------------------------------------------------------------------

WRONG_SCALARS: tuple[Any, ...] = (True, False, 0.5, 1e300, -1.5e-7, "1", 0, -1, 2**63)
WRONG_TYPES = (*WRONG_SCALARS, [], ["a"], [1], {}, {"v": 1})


def _wrong(*kinds: type) -> st.SearchStrategy[Value]:
    """JSON values of another type than ``kinds`` (a bool is never an int)."""
    return st.sampled_from(
        [v for v in WRONG_TYPES if isinstance(v, bool) or not isinstance(v, kinds)]
    ).map(lambda v: Value(v, False))


Kinds = Mapping[str, st.SearchStrategy[Value]]  # field type -> values of that verdict
VALID: Kinds = {"string": VALID_STRINGS, "int": VALID_INTS, "timestamp": VALID_TIMES}


def _whole(number: float) -> Value:
    """A number written with a fraction or an exponent (as ``json`` writes the float)."""
    written = Decimal(json.dumps(number))
    whole = written == written.to_integral_value() and -(2**63) <= written < 2**63
    return Value(number, True, int(written)) if whole else Value(number, False)


# The HTTP edge reads numbers as JSON Schema does (ingest.validation.loads): a whole
# number written with a fraction or an exponent (1.0, 5.6e2, -0.0) within 64 bits is that
# integer. The log's serde (Stream.decode) reads it as a float: a dead letter.
WHOLE_FLOATS = st.sampled_from((1.0, -0.0, 560.0, 1e3, 2.0**53, -(2.0**62), 1e19)).map(_whole)
VALID_AT_THE_EDGE: Kinds = {
    **VALID,
    "int": st.one_of(VALID_INTS, WHOLE_FLOATS.filter(lambda v: v.ok)),
}
BAD: Kinds = {
    "string": st.one_of(BAD_STRINGS, _wrong(str)),
    "int": st.one_of(BAD_INTS, _wrong(int), WHOLE_FLOATS.filter(lambda v: not v.ok)),
    "timestamp": st.one_of(BAD_TIMES, _wrong(str)),
}
# BAD, and time texts with one intruding character: the edge-only test draws these, so
# that a lenient time parser shows up there, shrunk, without hiding what the pipeline
# tests find behind it.
# The serde reads every number with a fraction or an exponent as a float: never an int.
BAD_IN_THE_LOG: Kinds = {
    **BAD,
    "int": st.one_of(BAD["int"], WHOLE_FLOATS.map(lambda v: Value(v.sent, False))),
}
BAD_OR_INTRUDED: Kinds = {**BAD, "timestamp": st.one_of(BAD["timestamp"], _intruded_times())}
ABSENT = (Value(None, True, None), Value(MISSING, True, None))  # null or left out
UNKNOWN_NAMES = st.one_of(
    st.sampled_from(("extra", "URL", "Bytes", "referer", "event_id ", "", "(none)", "\x1f", "🙂")),
    st.text(max_size=6),
)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=4))


def valid_value(field: Field, kinds: Kinds = VALID) -> st.SearchStrategy[Value]:
    """A value the edge must accept for ``field`` (null or left out if it is optional)."""
    valid = kinds[field.type]
    return valid if field.required else st.one_of(valid, st.sampled_from(ABSENT))


def bad_value(field: Field, kinds: Kinds = BAD) -> st.SearchStrategy[Value]:
    """A value the edge must reject for ``field`` (null or left out if it is required)."""
    bad = kinds[field.type]
    if field.required:
        return st.one_of(bad, st.sampled_from((Value(None, False), Value(MISSING, False))))
    return bad


def pools(stream: Stream, valid: Kinds = VALID) -> st.SearchStrategy[dict[str, list[Value]]]:
    """A few valid values per field, shared by a batch so that keys and buckets repeat."""
    return st.fixed_dictionaries(
        {f.name: st.lists(valid_value(f, valid), min_size=1, max_size=3) for f in stream.fields}
    )


FAULTS = ("none", "none", "fields", "unknown", "both")


@st.composite
def candidates(
    draw: st.DrawFn,
    stream: Stream,
    pool: dict[str, list[Value]],
    fault: str | None = None,
    bad: Kinds = BAD,
    valid: Kinds = VALID,
) -> Candidate:
    """One event of ``stream``: valid or broken in some fields and/or with unknown ones.

    ``fault`` is one of FAULTS (drawn if None); ``bad`` and ``valid`` the values to draw
    per field type.
    """
    fault = fault or draw(st.sampled_from(FAULTS))
    names = list(stream.field_names)
    broken: set[str] = set()
    if fault in ("fields", "both"):
        broken = draw(st.sets(st.sampled_from(names), min_size=1, max_size=2))
    unknown: dict[str, Any] = {}
    if fault in ("unknown", "both"):
        fresh = UNKNOWN_NAMES.filter(lambda n: n not in stream.field_names)
        unknown = draw(st.dictionaries(fresh, JSON_SCALARS, min_size=1, max_size=2))
    values = {
        f.name: draw(bad_value(f, bad))
        if f.name in broken
        else draw(st.one_of(st.sampled_from(pool[f.name]), valid_value(f, valid)))
        for f in stream.fields
    }
    sent = {n: v.sent for n, v in values.items() if v.sent is not MISSING} | unknown
    wrong = frozenset(n for n, v in values.items() if not v.ok)
    expected = None if wrong or unknown else {n: v.norm for n, v in values.items()}
    return Candidate(sent, wrong, frozenset(unknown), expected)


def batches(stream: Stream, max_size: int = 8) -> st.SearchStrategy[list[Candidate]]:
    """A batch of candidates of ``stream`` for the HTTP edge, on shared pools of values."""

    def batch(pool: dict[str, list[Value]]) -> st.SearchStrategy[list[Candidate]]:
        one = candidates(stream, pool, valid=VALID_AT_THE_EDGE)
        return st.lists(one, min_size=1, max_size=max_size)

    return pools(stream, VALID_AT_THE_EDGE).flatmap(batch)


# --- raw Kafka records --------------------------------------------------------------------


@dataclass(frozen=True)
class RawRecord:
    """A record written straight to the log: its bytes and what every reader must make of it.

    ``expected`` is the normalised event when the value is a valid event, None when the
    record must become a dead letter. ``event`` is the candidate behind a well-formed
    object with bad or unknown fields, whose dead-letter reason must name one of them.
    """

    value: bytes | None
    key: bytes | None
    partition: int
    expected: dict[str, Any] | None
    event: Candidate | None = None


GARBAGE = (
    b"",
    b" ",
    b"null",
    b"true",
    b"0",
    b'"event"',
    b"[]",
    b"{}",
    b"[{}]",
    b"{",
    b"}",
    b'{"bytes": NaN}',
    b'{"url": "\\ud800"}',  # a lone surrogate
    b"\xff\xfe\xfd",  # not UTF-8
    b"\xef\xbb\xbf{}",  # a byte order mark
    b"[" * 5000 + b"]" * 5000,  # deeper than any parser's limit
    b"\x00",
)
NOT_AN_OBJECT = st.binary(max_size=40).filter(lambda b: not b.lstrip(b" \t\r\n").startswith(b"{"))


@st.composite
def raw_records(
    draw: st.DrawFn, stream: Stream, partitions: int, pool: dict[str, list[Value]]
) -> RawRecord:
    """One raw record: a valid event (maybe padded with JSON whitespace) or a malformed one."""
    kind = draw(st.sampled_from(("valid", "valid", "fields", "garbage", "cut", "null")))
    key = draw(st.one_of(st.none(), st.binary(max_size=8)))
    partition = draw(st.integers(0, partitions - 1))
    if kind == "null":  # kafka-python sends no record with neither key nor value
        return RawRecord(None, key or b"k", partition, None)
    if kind == "garbage":
        value = draw(st.one_of(st.sampled_from(GARBAGE), NOT_AN_OBJECT))
        return RawRecord(value, key, partition, None)
    fault = draw(st.sampled_from(("fields", "unknown", "both"))) if kind == "fields" else "none"
    event = draw(candidates(stream, pool, fault, BAD_IN_THE_LOG))
    body = event.body(ascii_only=draw(st.booleans())).encode()
    if event.expected is None:
        return RawRecord(body, key, partition, None, event)
    if kind == "cut":  # a proper prefix, a trailing character, or an array around it
        prefix = body[: draw(st.integers(0, len(body) - 1))]
        body = draw(st.sampled_from((prefix, body + b"}", b"[" + body + b"]")))
        return RawRecord(body, key, partition, None)
    pad = draw(st.sampled_from((b"", b" ", b"\n", b"\r\n\t ")))
    return RawRecord(pad + body + pad, key, partition, event.expected)


def raw_rounds(
    stream: Stream, partitions: int, max_size: int = 12
) -> st.SearchStrategy[tuple[list[RawRecord], list[RawRecord]]]:
    """Two rounds of raw records on shared pools: every layer must go on after the first."""

    def rounds(pool: dict[str, list[Value]]) -> st.SearchStrategy[Any]:
        one = st.lists(raw_records(stream, partitions, pool), min_size=1, max_size=max_size)
        return st.tuples(one, one)

    return pools(stream).flatmap(rounds)
