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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from lambdalab.errors import DefinitionError
from lambdalab.schema import value_text
from views.measures import (  # noqa: F401 (HLL_MARK, KINDS: re-exported)
    DEFAULTS,
    HLL_MARK,
    KINDS,
    KINDS_BY_NAME,
    PARAMS,
    Hll,
    Kind,
    check,
    sketch_item,
)
from views.measures import hll_union as union_of

if TYPE_CHECKING:
    from views.expr import Node

MeasureKind = str  # one of views.measures.KINDS, checked when a view is defined
HLL_LG_K = DEFAULTS["lg_k"]
NULL_KEY = "(none)"
KEY_SEP = "\x1f"
ESCAPE = "\\"


@dataclass(frozen=True)
class Measure:
    """One aggregate of a view: ``count``, or a kind of :mod:`views.measures` over a field.

    Params (None: the kind's default, :data:`views.measures.DEFAULTS`): ``lg_k`` for
    ``hll`` and ``theta``, ``k`` and ``quantiles`` for ``quantiles``.
    """

    name: str
    kind: MeasureKind
    field: str | None = None
    lg_k: int | None = None
    k: int | None = None
    quantiles: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.quantiles, list):  # a list written in a view file: keep it hashable
            object.__setattr__(self, "quantiles", tuple(self.quantiles))

    def to_dict(self) -> dict[str, Any]:
        """The measure as plain data; params only when set (old definitions hash alike)."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "field": self.field}
        for p in PARAMS:
            value = getattr(self, p)
            if value is not None:
                out[p] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measure:
        """The measure :meth:`to_dict` wrote."""
        quantiles = data.get("quantiles")
        return cls(
            str(data["name"]),
            data["kind"],
            data.get("field"),
            lg_k=data.get("lg_k"),
            k=data.get("k"),
            quantiles=None if quantiles is None else tuple(quantiles),
        )


@dataclass(frozen=True)
class Derived:
    """A field computed from the event by an expression (``views.expr``, docs/lab/transforms.md)."""

    name: str
    expr: str


@dataclass(frozen=True)
class Enrich:
    """Fields looked up in a dimension table by the value of ``on`` (a left join).

    ``version`` is the dimension version a layer runs the view with: None in a declared
    view, set by the layer (:meth:`ViewDef.pinned`), so a new dimension version changes
    the fingerprint (a new batch version, a speed-layer rebuild).
    """

    dimension: str
    on: str
    fields: tuple[str, ...]
    version: int | None = None


TRANSFORMS = ("enrich", "derive", "where")  # applied in this order, before key and measures


@dataclass(frozen=True)
class ViewDef:
    """A view over one stream: transforms, keys, event-time bucket width, measures.

    Before the key is built, an event is enriched from dimension tables (``enrich``),
    gains derived fields (``derive``, in order, each may read the earlier ones) and is kept
    only if ``where`` is true (a NULL drops it, as in SQL). Keys and measures may name
    the stream's fields and the enriched and derived ones (:meth:`field_types`).
    """

    name: str
    stream: str
    keys: tuple[str, ...]
    bucket_s: int
    measures: tuple[Measure, ...]
    description: str = ""
    where: str | None = None
    derive: tuple[Derived, ...] = ()
    enrich: tuple[Enrich, ...] = ()

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name != self.name.lower():
            msg = f"view name {self.name!r} must be a lowercase identifier"
            raise DefinitionError(msg)
        fields = self.field_types()
        for key in self.keys:
            if key not in fields:
                msg = f"view {self.name}: key {key!r} is not a field of stream {self.stream}"
                msg += " nor an enriched or derived field" if self.derive or self.enrich else ""
                raise DefinitionError(msg)
            if fields[key] == "float":
                msg = (
                    f"view {self.name}: key {key!r} is a float field; a view key must be a "
                    "string, int, bool or timestamp field (bucket a float with a derived "
                    f"field, e.g. floor({key}))"
                )
                raise DefinitionError(msg)
        if self.bucket_s <= 0:
            msg = f"view {self.name}: bucket_s must be positive"
            raise DefinitionError(msg)
        kinds = tuple(check(self.name, m, fields) for m in self.measures)
        object.__setattr__(self, "_kinds", kinds)  # not a field: no part of to_dict or eq

    @property
    def kinds(self) -> tuple[Kind, ...]:
        """The kind object of each measure (:mod:`views.measures`), in measure order."""
        kinds: tuple[Kind, ...] = self.__dict__["_kinds"]
        return kinds

    def field_types(self) -> dict[str, str]:
        """Every field keys and measures may name, with its type: stream, enriched, derived."""
        return dict(self._typed[0])

    @cached_property
    def _typed(self) -> tuple[dict[str, str], dict[str, Node], Node | None]:
        """(field types, derived field -> typed expression, typed where): checked once."""
        from views.transform import check_transforms

        return check_transforms(self)

    def pinned(self, versions: Mapping[str, int | None]) -> ViewDef:
        """This view run with these dimension versions (part of its fingerprint)."""
        enrich = tuple(replace(e, version=versions.get(e.dimension)) for e in self.enrich)
        return replace(self, enrich=enrich)

    def dimension_versions(self) -> dict[str, int | None]:
        """Dimension -> the version this definition is pinned to (None: not pinned)."""
        return {e.dimension: e.version for e in self.enrich}

    def to_dict(self) -> dict[str, Any]:
        """The definition as plain data (what the fingerprint hashes and lineage records).

        Measure params and transforms appear only when set, so a view without any keeps
        the fingerprint it had before they existed.
        """
        out = asdict(self)
        out["measures"] = [m.to_dict() for m in self.measures]
        for name in TRANSFORMS:
            if not out[name]:
                del out[name]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ViewDef:
        """The definition :meth:`to_dict` wrote (a deployed definition, a lineage record).

        Raises:
            DefinitionError: a field is missing or has the wrong shape, named.
        """
        try:
            measures = tuple(Measure.from_dict(m) for m in data["measures"])
            where = data.get("where")
            return cls(
                name=str(data["name"]),
                stream=str(data["stream"]),
                keys=tuple(str(k) for k in data["keys"]),
                bucket_s=int(data["bucket_s"]),
                measures=measures,
                description=str(data.get("description", "")),
                where=None if where is None else str(where),
                derive=tuple(
                    Derived(str(d["name"]), str(d["expr"])) for d in data.get("derive", [])
                ),
                enrich=tuple(_enrich_of(e) for e in data.get("enrich", ())),
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


def _enrich_of(data: dict[str, Any]) -> Enrich:
    version = data.get("version")
    fields = tuple(str(f) for f in data["fields"])
    on = str(data["on"])
    return Enrich(str(data["dimension"]), on, fields, None if version is None else int(version))


def key_part(value: Any) -> str:
    r"""One key field as text, so that distinct values never share a key.

    A missing value is ``NULL_KEY``; ints are decimal, bools ``true``/``false``
    (:func:`lambdalab.schema.value_text`), timestamps their normalised ISO text; floats
    never key a view (the JVM and Python print them differently). In a value, ``\`` is
    doubled and KEY_SEP becomes ``\u001f`` (so a multi-field key splits unambiguously),
    and a literal ``NULL_KEY`` gets a leading ``\`` (so it never merges with a missing
    value).
    """
    if value is None:
        return NULL_KEY
    text = value_text(value).replace(ESCAPE, ESCAPE * 2).replace(KEY_SEP, ESCAPE + "u001f")
    return ESCAPE + text if text == NULL_KEY else text


# --- the measure algebra by kind name (views.measures holds it; these serve old callers) --


def identity(kind: str) -> Any:
    """The neutral element of a measure kind."""
    return KINDS_BY_NAME[kind](Measure("_", kind)).identity()


def merge(kind: str, a: Any, b: Any) -> Any:
    """Combine two partial values of one measure kind with default params."""
    return KINDS_BY_NAME[kind](Measure("_", kind)).merge(a, b)


def _hll() -> Hll:
    return Hll(Measure("_", "hll"))


def hll_union(sketches: list[bytes]) -> bytes:
    """Union of serialized DataSketches HLL sketches (lg_k 12), as a compact HLL_4 sketch."""
    return union_of(sketches, HLL_LG_K)


hll_item = sketch_item


def hll_of(values: list[str]) -> bytes:
    """A compact HLL sketch of string values (``hll_item`` of each, hashed as UTF-8)."""
    from datasketches import hll_sketch

    sketch = hll_sketch(HLL_LG_K)
    for v in values:
        sketch.update(hll_item(v))
    return bytes(sketch.serialize_compact())


def hll_estimate(blob: bytes | None) -> float:
    """Estimated distinct count of a serialized sketch (0 for none)."""
    return float(_hll().render(blob))


def hll_rse() -> float:
    """Relative standard error of an HLL sketch with HLL_LG_K (≈ 1.04/sqrt(2^k))."""
    return _hll().rse()
