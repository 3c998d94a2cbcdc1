"""Bad records are data: the one split of raw Kafka records and the one dead-letter writer.

Every layer that reads the log (the archiver, the speed consumer, the lab's Kappa replay)
turns its raw records into decoded events and dead letters with :func:`split`, and
reports the dead letters through :class:`DeadLetters`. There is one payload format
(:meth:`DeadLetter.payload`), one key (the source coordinates, :func:`dlq_key`) and one
counter, ``lambdalab_dead_letters_total{layer}``. The dead-letter topic is compacted, so a
record reported twice (after a crash, or by two layers) is kept once; counting readers
dedupe by key.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from lambdalab.schema import Stream
from lambdalab.settings import Settings
from lambdalab.topics import ACK_TIMEOUT_S, dlq_key, kafka_producer, read_topic

_COUNTERS: dict[int, Counter] = {}


def dead_letter_counter(registry: CollectorRegistry = REGISTRY) -> Counter:
    """``lambdalab_dead_letters_total{layer}`` in ``registry`` (created once per registry)."""
    counter = _COUNTERS.get(id(registry))
    if counter is None:
        counter = _COUNTERS[id(registry)] = Counter(
            "lambdalab_dead_letters",
            "Records routed to the dead-letter topic, by the layer that found them.",
            ["layer"],
            registry=registry,
        )
    return counter


class Decoded(NamedTuple):
    """A record that decoded into a valid event, with the coordinates a layer needs."""

    partition: int
    offset: int
    ingest_ms: int
    event: dict[str, Any]
    record: Any


@dataclass(frozen=True)
class DeadLetter:
    """A record no layer can process, with the reason and everything needed to replay it."""

    reason: str
    topic: str
    partition: int
    offset: int
    ingest_ms: int
    value: bytes | None

    @classmethod
    def of(cls, record: Any, reason: str) -> DeadLetter:
        """The dead letter of a kafka-python ``ConsumerRecord``."""
        return cls(
            reason, record.topic, record.partition, record.offset, record.timestamp, record.value
        )

    @property
    def key(self) -> bytes:
        """The compaction key: the source coordinates."""
        return dlq_key(self.topic, self.partition, self.offset)

    def payload(self) -> bytes:
        """The JSON value written to the dead-letter topic (a missing value is ``null``)."""
        raw = base64.b64encode(self.value).decode() if self.value is not None else None
        return orjson.dumps(
            {
                "reason": self.reason,
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
                "ingest_ms": self.ingest_ms,
                "value_b64": raw,
            }
        )


def split(stream: Stream, records: Iterable[Any]) -> tuple[list[Decoded], list[DeadLetter]]:
    """Decode raw Kafka records of ``stream``: (valid events, dead letters), in input order.

    Never raises on a record: whatever fails to decode or validate is a dead letter.
    """
    good: list[Decoded] = []
    dead: list[DeadLetter] = []
    for record in records:
        try:
            event, reason = stream.decode(record.value)
        except Exception as exc:  # a poison record never stops a layer: it is a dead letter
            event, reason = None, f"undecodable record ({type(exc).__name__}: {exc})"[:500]
        if event is None:
            dead.append(DeadLetter.of(record, reason or "invalid"))
        else:
            good.append(Decoded(record.partition, record.offset, record.timestamp, event, record))
    return good, dead


class DeadLetters:
    """Reports the dead letters of one layer; :meth:`flush` waits until the broker has them.

    Who calls it: the archiver flushes before committing the master file of the range that
    held the records, the speed consumer before the Redis transaction that moves its
    offsets past them, so a committed range never has dead letters missing. A failure to
    flush raises (kafka-python's error): the caller must not commit past the records.
    """

    def __init__(
        self, settings: Settings, layer: str, registry: CollectorRegistry = REGISTRY
    ) -> None:
        self.settings = settings
        self.layer = layer
        self.counted = dead_letter_counter(registry).labels(layer=layer)
        self._producer: Any = None
        self._pending: list[Any] = []

    def report(self, letters: Iterable[DeadLetter]) -> None:
        """Queue dead letters (sent asynchronously until :meth:`flush`)."""
        for letter in letters:
            if self._producer is None:
                self._producer = kafka_producer(self.settings)
            future = self._producer.send(
                self.settings.dlq_topic,
                key=letter.key,
                value=letter.payload(),
                headers=[("reason", letter.reason.encode())],
            )
            self._pending.append(future)
            self.counted.inc()

    def flush(self) -> int:
        """Wait until every queued dead letter is acknowledged; return how many there were."""
        if not self._pending:
            return 0
        self._producer.flush(timeout=ACK_TIMEOUT_S)
        for future in self._pending:
            future.get(timeout=ACK_TIMEOUT_S)
        done, self._pending = len(self._pending), []
        return done

    def close(self) -> None:
        """Flush and close."""
        self.flush()
        if self._producer is not None:
            self._producer.close(timeout=ACK_TIMEOUT_S)
            self._producer = None


def read_dead_letters(settings: Settings) -> dict[bytes, dict[str, Any]]:
    """Every dead letter of the namespace, deduplicated by key (latest wins).

    For tests, the lab and operators; reads the whole dead-letter topic up to its end.
    """
    found: dict[bytes, dict[str, Any]] = {}
    for record in read_topic(settings, settings.dlq_topic):
        found[record.key] = {**orjson.loads(record.value), "headers": dict(record.headers)}
    return found
