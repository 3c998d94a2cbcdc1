"""Dead letters: records that reached the log malformed are data, routed with their reason.

A layer that cannot decode a record of ``events`` (the archiver, the speed consumer)
reports it to ``settings.dlq_topic`` with the reason, the original bytes and its
coordinates, keyed by :func:`lambdalab.topics.dlq_key`. The topic is compacted, so a
record reported twice (after a crash, or by two layers) is kept once; counting readers
dedupe by key. Each report is counted in ``lambdalab_dead_letters_total{layer}``.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import Counter

from ingest.producer import ACK_TIMEOUT_S, kafka_producer
from lambdalab.settings import Settings
from lambdalab.topics import dlq_key

DEAD_LETTERS = Counter(
    "lambdalab_dead_letters_total",
    "Records routed to the dead-letter topic, by the layer that found them.",
    ["layer"],
)


def dead_letter(
    reason: str, topic: str, partition: int, offset: int, ingest_ms: int, value: bytes | None
) -> bytes:
    """The JSON value of one dead letter (shared format of every layer)."""
    raw = base64.b64encode(value).decode() if value is not None else None
    return orjson.dumps(
        {
            "reason": reason,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "ingest_ms": ingest_ms,
            "value_b64": raw,
        }
    )


class DeadLetters:
    """Reports dead letters of one layer; :meth:`flush` waits until the broker has them all.

    The archiver flushes before committing the master file of the range that held the
    records, so a committed range never has dead letters missing.
    """

    def __init__(self, settings: Settings, layer: str) -> None:
        self.settings = settings
        self.layer = layer
        self._producer: Any = None
        self._pending: list[Any] = []

    def report(
        self,
        reason: str,
        topic: str,
        partition: int,
        offset: int,
        ingest_ms: int,
        value: bytes | None,
    ) -> None:
        """Queue one dead letter (sent asynchronously until :meth:`flush`)."""
        if self._producer is None:
            self._producer = kafka_producer(self.settings)
        body = dead_letter(reason, topic, partition, offset, ingest_ms, value)
        future = self._producer.send(
            self.settings.dlq_topic,
            key=dlq_key(topic, partition, offset),
            value=body,
            headers=[("reason", reason.encode())],
        )
        self._pending.append(future)
        DEAD_LETTERS.labels(layer=self.layer).inc()

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


def read_dead_letters(settings: Settings, timeout_s: float = 10.0) -> dict[bytes, dict[str, Any]]:
    """Every dead letter of the namespace, deduplicated by key (latest wins).

    For tests, the lab and operators; reads the whole DLQ topic from the beginning.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False
    )
    try:
        parts = consumer.partitions_for_topic(settings.dlq_topic) or set()
        tps = [TopicPartition(settings.dlq_topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        found: dict[bytes, dict[str, Any]] = {}
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            batch = consumer.poll(timeout_ms=int(timeout_s * 1000))
            if not batch:
                break
            for records in batch.values():
                for r in records:
                    found[r.key] = {**orjson.loads(r.value), "headers": dict(r.headers)}
        return found
    finally:
        consumer.close()
