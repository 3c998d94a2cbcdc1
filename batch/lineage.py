"""Lineage of a batch view version: what it was computed from, up to which cut, by what code.

Every published version carries ``_lineage.json``. Its ``fingerprint`` hashes the view
definition, the code version and the sorted names of the master files it read: the same
inputs give the same fingerprint (nothing new is published), new data below the cut or a
changed definition gives a new one. :func:`describe` renders a lineage for people.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from lambdalab.paths import MasterFile


def fingerprint(view_fingerprint: str, code_version: str, inputs: list[str]) -> str:
    """Hash of (view definition, code version, sorted input file names)."""
    names = sorted(path.rsplit("/", 1)[-1] for path in inputs)
    blob = "\n".join([view_fingerprint, code_version, *names])
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def offsets_of(files: list[MasterFile]) -> dict[str, int]:
    """Per partition, the next offset after the last one the inputs cover."""
    out: dict[int, int] = {}
    for mf in files:
        out[mf.partition] = max(out.get(mf.partition, 0), mf.last_offset + 1)
    return {str(p): n for p, n in sorted(out.items())}


def ranges_of(files: list[MasterFile]) -> dict[str, list[int]]:
    """Per partition, the [first, last] offsets the inputs cover."""
    out: dict[int, list[int]] = {}
    for mf in files:
        lo, hi = out.get(mf.partition, [mf.first_offset, mf.last_offset])
        out[mf.partition] = [min(lo, mf.first_offset), max(hi, mf.last_offset)]
    return {str(p): r for p, r in sorted(out.items())}


def utc(ms: int | None) -> str:
    """A moment in ms since the epoch as readable UTC text."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def describe(lineage: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) lines of a lineage, for people."""
    offsets = lineage.get("offsets", {})
    ranges = lineage.get("ranges", {})
    parts = ", ".join(
        f"p{p}: {ranges.get(p, ['?', '?'])[0]}..{int(n) - 1}" for p, n in offsets.items()
    )
    return [
        ("view", f"{lineage['view']} v{lineage['version']}"),
        ("cut (ingest time)", f"{utc(lineage['cut_ms'])}  (records ingested before it)"),
        ("inputs", f"{len(lineage.get('inputs', []))} master files"),
        ("landing manifests", str(len(lineage.get("manifests", [])))),
        ("offsets covered", parts or "none"),
        ("rows", str(lineage.get("rows"))),
        ("started", utc(lineage.get("started_ms"))),
        ("finished", utc(lineage.get("finished_ms"))),
        ("duration", f"{lineage.get('duration_s', 0):.1f} s"),
        ("fingerprint", str(lineage.get("fingerprint"))),
        ("view fingerprint", str(lineage.get("view_fingerprint"))),
        ("code version", str(lineage.get("code_version"))),
        ("run id", str(lineage.get("run_id"))),
    ]
