"""The opaque cursor of a paged merged query: where the next page starts, and what it saw.

Paging is keyset paging over the query's total order (:mod:`serving.selection`): a cursor
holds the position of the last row returned, not an offset, so a row whose position does
not change between two pages is on exactly one of them. It also pins what the first page
used -- the resolved range [from, to) (so a default ``to`` of "now" does not move between
pages), the batch version and a digest of the realtime snapshot's offsets -- so that every
later page can say what changed since the first one, and a fingerprint of the query's
parameters, so that a cursor is never applied to another query.

The text is base64url of compact JSON: opaque to clients, but neither secret nor signed.
Whatever a client sends is checked before use (:func:`decode`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_CHARS = 4096  # the documented maxLength of a cursor: a position of a few values


class InvalidCursor(ValueError):
    """A cursor that this API did not issue, or issued for another query."""


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts, and what the first page of the listing used.

    Attributes:
        query: fingerprint of the query's parameters (:func:`fingerprint`).
        after: position of the last item returned.
        span: the resolved [from, to) in ms, reused by every later page.
        version: the batch version the first page read (None: none was published).
        snapshot: digest of the realtime snapshot's offsets the first page read.
    """

    query: str
    after: list[Any]
    span: tuple[int, int]
    version: int | None
    snapshot: str

    def encode(self) -> str:
        """The cursor's text, as sent to clients (base64url, no padding)."""
        body = {
            "q": self.query,
            "a": self.after,
            "s": list(self.span),
            "v": self.version,
            "o": self.snapshot,
        }
        raw = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(text: str, query: str) -> Cursor:
    """The cursor ``text`` stands for, checked against the fingerprint of this ``query``.

    Raises:
        InvalidCursor: not a cursor of this API, or one of another query; the message
            says which.
    """
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError) as exc:
        msg = "not a cursor this API issued; pass next_cursor from the previous page as is"
        raise InvalidCursor(msg) from exc
    if not isinstance(body, dict) or not _shaped(body):
        msg = "not a cursor this API issued; pass next_cursor from the previous page as is"
        raise InvalidCursor(msg)
    if body["q"] != query:
        msg = (
            "the cursor belongs to a query with other parameters: keep every parameter but "
            "limit and cursor as on the first page, or start again without a cursor"
        )
        raise InvalidCursor(msg)
    lo, hi = body["s"]
    return Cursor(body["q"], body["a"], (lo, hi), body["v"], body["o"])


def _shaped(body: Mapping[str, Any]) -> bool:
    span = body.get("s")
    return (
        isinstance(body.get("q"), str)
        and isinstance(body.get("a"), list)
        and isinstance(span, list)
        and len(span) == 2
        and all(_integer(v) for v in span)
        and span[0] < span[1]
        and (body.get("v") is None or _integer(body.get("v")))
        and isinstance(body.get("o"), str)
    )


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def fingerprint(view: str, operation: str, params: Mapping[str, Any]) -> str:
    """A short hash of a query's parameters: a cursor only continues the query it came from."""
    canonical = json.dumps([view, operation, params], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def snapshot_digest(offsets: Mapping[int, int] | None) -> str:
    """A short digest of a realtime snapshot's offsets ("" when the realtime part is missing)."""
    if offsets is None:
        return ""
    canonical = json.dumps(sorted(offsets.items()), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def changed(first: Cursor | None, version: int | None, snapshot: str) -> list[str]:
    """What differs from the first page: ``version`` and/or ``realtime`` (empty: nothing)."""
    if first is None:
        return []
    return [
        part
        for part, differs in (
            ("version", first.version != version),
            ("realtime", first.snapshot != snapshot),
        )
        if differs
    ]
