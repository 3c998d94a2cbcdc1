"""``ingest file``: loads an NDJSON file of events into the log, rejecting bad lines.

Each line is parsed and validated on its own; a rejected line is reported with its
1-based line number and reason and is NOT sent (unlike HTTP, a file is not all or
nothing: the good lines go, the report says exactly which ones did not).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ingest.producer import EventProducer
from ingest.validation import loads
from lambdalab.schema import Stream

SEND_BATCH = 1000


@dataclass
class FileReport:
    """Outcome of loading one file."""

    sent: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


def read_events(path: Path, stream: Stream) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(line number, validated event or None, reason) for each non-empty line."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = loads(line)
            except orjson.JSONDecodeError as exc:
                yield number, None, f"not valid JSON: {exc}"
                continue
            event, reason = stream.validate(obj)
            yield number, event, reason or ""


def ingest_file(producer: EventProducer, path: Path) -> FileReport:
    """Send every valid line of ``path`` (in batches, each acked); report the rejected ones."""
    report = FileReport()
    batch: list[dict[str, Any]] = []
    for number, event, reason in read_events(path, producer.stream):
        if event is None:
            report.rejected.append((number, reason))
            continue
        batch.append(event)
        if len(batch) >= SEND_BATCH:
            report.sent += len(producer.send_many(batch))
            batch = []
    if batch:
        report.sent += len(producer.send_many(batch))
    return report
