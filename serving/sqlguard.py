"""The read-only gate in front of Trino: one SELECT-like statement, nothing that writes.

Trino can write to the same Hive catalog that holds the master dataset, so ``POST /sql``
must never pass a statement that changes data or schema (invariant 1: raw data is
sacred). The check is lexical: comments, string literals and quoted identifiers are
removed, then the statement must be single, start with an allowed keyword, and contain no
keyword that writes or changes session state anywhere (e.g. ``EXPLAIN ANALYZE INSERT``).
"""

from __future__ import annotations

import re

from lambdalab.errors import ValidationFailed

ALLOWED_FIRST = ("SELECT", "WITH", "SHOW", "DESCRIBE", "EXPLAIN", "VALUES", "TABLE")
FORBIDDEN = frozenset(
    [
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE",
        "CREATE",
        "DROP",
        "ALTER",
        "TRUNCATE",
        "GRANT",
        "REVOKE",
        "DENY",
        "CALL",
        "SET",
        "RESET",
        "COMMENT",
        "REFRESH",
        "EXECUTE",
        "PREPARE",
        "DEALLOCATE",
        "USE",
        "START",
        "COMMIT",
        "ROLLBACK",
        "ANALYZE",
    ]
)
_NOISE = re.compile(r"""--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`""", re.DOTALL)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def strip_noise(sql: str) -> str:
    """The statement without comments, string literals and quoted identifiers."""
    return _NOISE.sub(" ", sql)


def check_read_only(sql: str) -> str:
    """Return the statement (trailing ``;`` removed) if it is one read-only query.

    Raises:
        ValidationFailed: empty, several statements, or a statement that is not a query
            (the message names the offending keyword).
    """
    bare = strip_noise(sql).strip()
    if bare.endswith(";"):
        bare = bare[:-1].rstrip()
    if not bare:
        msg = "empty SQL statement"
        raise ValidationFailed(msg)
    if ";" in bare:
        msg = "only a single statement is allowed (found ';' inside)"
        raise ValidationFailed(msg)
    words = [w.upper() for w in _WORD.findall(bare)]
    if not words or words[0] not in ALLOWED_FIRST:
        first = words[0] if words else bare[:20]
        msg = f"read-only SQL only: {', '.join(ALLOWED_FIRST)} are allowed, not {first}"
        raise ValidationFailed(msg)
    bad = sorted(FORBIDDEN.intersection(words))
    if bad:
        msg = (
            f"read-only SQL only: keyword {bad[0]} is not allowed (writes, DDL and session "
            "changes are refused; quote an identifier with that name)"
        )
        raise ValidationFailed(msg)
    return sql.strip().rstrip(";").rstrip()
