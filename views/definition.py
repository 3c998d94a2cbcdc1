"""A view, declared once, and the closed algebra of mergeable measures.

A :class:`ViewDef` says which stream it reads, which fields key it, how wide its
event-time buckets are, and which measures it keeps. Every measure kind is a commutative
monoid (:func:`merge` with an identity), which is what makes the Lambda merge exact:
``batch ⊕ realtime`` is the same whichever side a record fell on. The batch layer compiles
a definition to Spark (``batch.compile``); the speed layer applies it in Python
(``views.compute``); both read and write the same HLL binary format (Apache DataSketches).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from lambdalab.errors import DefinitionError
from lambdalab.schema import get_stream, value_text

MeasureKind = Literal["count", "sum", "min", "max", "hll"]
KINDS: tuple[str, ...] = ("count", "sum", "min", "max", "hll")
HLL_LG_K = 12
NULL_KEY = "(none)"
KEY_SEP = "\x1f"
ESCAPE = "\\"


@dataclass(frozen=True)
class Measure:
    """One aggregate of a view: ``count``, or ``sum``/``min``/``max``/``hll`` of a field."""

    name: str
    kind: MeasureKind
    field: str | None = None


@dataclass(frozen=True)
class ViewDef:
    """A view over one stream: keys, event-time bucket width, measures."""

    name: str
    stream: str
    keys: tuple[str, ...]
    bucket_s: int
    measures: tuple[Measure, ...]
    description: str = ""

    def __post_init__(self) -> None:
        stream = get_stream(self.stream)
        fields: dict[str, str] = {f.name: f.type for f in stream.fields}
        if not self.name.isidentifier() or self.name != self.name.lower():
            msg = f"view name {self.name!r} must be a lowercase identifier"
            raise DefinitionError(msg)
        for key in self.keys:
            if key not in fields:
                msg = f"view {self.name}: key {key!r} is not a field of stream {self.stream}"
                raise DefinitionError(msg)
            if fields[key] == "float":
                msg = (
                    f"view {self.name}: key {key!r} is a float field; a view key must be a "
                    "string, int, bool or timestamp field (bucket a float with a derived field)"
                )
                raise DefinitionError(msg)
        if self.bucket_s <= 0:
            msg = f"view {self.name}: bucket_s must be positive"
            raise DefinitionError(msg)
        for m in self.measures:
            _check_measure(self.name, m, fields)

    def to_dict(self) -> dict[str, Any]:
        """The definition as plain data (what the fingerprint hashes and lineage records)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ViewDef:
        """The definition :meth:`to_dict` wrote (a deployed definition, a lineage record).

        Raises:
            DefinitionError: a field is missing or has the wrong shape, named.
        """
        try:
            measures = tuple(
                Measure(str(m["name"]), m["kind"], m.get("field")) for m in data["measures"]
            )
            return cls(
                name=str(data["name"]),
                stream=str(data["stream"]),
                keys=tuple(str(k) for k in data["keys"]),
                bucket_s=int(data["bucket_s"]),
                measures=measures,
                description=str(data.get("description", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"view definition {data.get('name', '?')!r}: missing or malformed {exc}"
            raise DefinitionError(msg) from exc

    @property
    def fingerprint(self) -> str:
        """Hash of the definition: a changed definition gives a new batch version."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def key_of(self, event: dict[str, Any]) -> str:
        """The view key of an event: its key fields rendered (:func:`key_part`), joined by KEY_SEP.

        The batch layer renders the same text in Spark (``batch.compile``).
        """
        return KEY_SEP.join(key_part(event.get(k)) for k in self.keys)

    def parts_of(self, key: str) -> dict[str, str]:
        """The rendered key fields of a view key, by name: the inverse of :meth:`key_of`'s join.

        :func:`key_part` escapes KEY_SEP inside a value, so splitting on it is exact.
        """
        return dict(zip(self.keys, key.split(KEY_SEP), strict=False))

    def bucket_of(self, event_ms: int) -> int:
        """Start (ms since epoch) of the event-time bucket holding ``event_ms``."""
        width = self.bucket_s * 1000
        return event_ms - event_ms % width


def key_part(value: Any) -> str:
    r"""One key field as text, so that distinct values never share a key.

    A missing value is ``NULL_KEY``; ints are decimal, bools ``true``/``false``
    (:func:`lambdalab.schema.value_text`), timestamps their normalised ISO text. In a
    value, ``\`` is doubled and KEY_SEP becomes ``\u001f`` (so a multi-field key splits
    unambiguously), and a literal ``NULL_KEY`` gets a leading ``\`` (so it never
    merges with a missing value).
    """
    if value is None:
        return NULL_KEY
    text = value_text(value).replace(ESCAPE, ESCAPE * 2).replace(KEY_SEP, ESCAPE + "u001f")
    return ESCAPE + text if text == NULL_KEY else text


def _check_measure(view: str, m: Measure, fields: dict[str, str]) -> None:
    if m.kind not in KINDS:
        msg = f"view {view}: measure {m.name!r} has unknown kind {m.kind!r} (one of {KINDS})"
        raise DefinitionError(msg)
    if m.kind == "count":
        if m.field is not None:
            msg = f"view {view}: count measure {m.name!r} takes no field"
            raise DefinitionError(msg)
        return
    if m.field not in fields:
        msg = f"view {view}: measure {m.name!r} reads unknown field {m.field!r}"
        raise DefinitionError(msg)
    if m.kind == "hll" and fields[m.field] == "float":  # no text both layers print alike
        msg = f"view {view}: hll measure {m.name!r} cannot count a float field ({m.field!r})"
        raise DefinitionError(msg)
    if m.kind in ("sum", "min", "max") and fields[m.field] != "int":
        msg = f"view {view}: {m.kind} needs an integer field, {m.field!r} is {fields[m.field]}"
        raise DefinitionError(msg)


# --- the measure algebra: identity and merge per kind -------------------------------------


def identity(kind: str) -> Any:
    """The neutral element of a measure kind."""
    return 0 if kind in ("count", "sum") else None


def merge(kind: str, a: Any, b: Any) -> Any:
    """Combine two partial values of one measure (associative and commutative)."""
    if kind in ("count", "sum"):
        return (a or 0) + (b or 0)
    if a is None:
        return b
    if b is None:
        return a
    if kind == "min":
        return min(a, b)
    if kind == "max":
        return max(a, b)
    return hll_union([a, b])


def hll_union(sketches: list[bytes]) -> bytes:
    """Union of serialized DataSketches HLL sketches, as a compact HLL_4 sketch."""
    from datasketches import hll_sketch, tgt_hll_type
    from datasketches import hll_union as union_t

    union = union_t(HLL_LG_K)
    for blob in sketches:
        union.update(hll_sketch.deserialize(blob))
    return bytes(union.get_result(tgt_hll_type.HLL_4).serialize_compact())


HLL_MARK = "\x1f"


def hll_item(value: str) -> str:
    r"""The string a sketch is updated with for ``value``, so that ``""`` counts too.

    DataSketches ignores an empty string (in Python and in Spark's ``hll_sketch_agg``),
    so ``""`` alone would be counted as no visitor at all. One injective rewrite, the same
    in both layers (Spark's is ``batch.compile``): ``""`` becomes ``HLL_MARK`` and a value
    that starts with ``HLL_MARK`` gets one more in front; every other value is itself, so
    sketches of ordinary values are unchanged.
    """
    if value == "":
        return HLL_MARK
    return HLL_MARK + value if value.startswith(HLL_MARK) else value


def hll_of(values: list[str]) -> bytes:
    """A compact HLL sketch of string values (``hll_item`` of each, hashed as UTF-8)."""
    from datasketches import hll_sketch

    sketch = hll_sketch(HLL_LG_K)
    for v in values:
        sketch.update(hll_item(v))
    return bytes(sketch.serialize_compact())


def hll_estimate(blob: bytes | None) -> float:
    """Estimated distinct count of a serialized sketch (0 for none)."""
    from datasketches import hll_sketch

    return 0.0 if blob is None else float(hll_sketch.deserialize(blob).get_estimate())


def hll_rse() -> float:
    """Relative standard error of an HLL sketch with HLL_LG_K (≈ 1.04/sqrt(2^k))."""
    return 1.04 / (2 ** (HLL_LG_K / 2))
