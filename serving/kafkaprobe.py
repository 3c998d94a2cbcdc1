"""What the serving layer reads from the log itself: end offsets and the dead letters.

The log is the source of truth for two health numbers: the speed layer's lag (end offset
of each partition of the events topic minus the next offset the speed layer committed)
and the dead letters (the compacted DLQ topic, counted once per key since the archiver and
the speed consumer may both report the same record).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from lambdalab.errors import ServiceUnavailable
from lambdalab.settings import Settings
from lambdalab.topics import end_offsets_of, kafka_consumer


class KafkaProbe:
    """End offsets of a topic and a running, key-deduplicated count of dead letters.

    One probe per app; calls are serialised by a lock (kafka-python consumers are not
    thread-safe). Nothing connects until the first call.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: KafkaConsumer | None = None
        self._lock = threading.Lock()
        self._dead: dict[bytes, str] = {}

    def _client(self) -> KafkaConsumer:
        if self._consumer is None:
            try:
                self._consumer = kafka_consumer(self.settings, request_timeout_ms=5_000)
            except KafkaError as exc:
                msg = f"Kafka at {self.settings.kafka.bootstrap_servers} did not answer: {exc}"
                raise ServiceUnavailable(msg) from exc
        return self._consumer

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Next offset to be written per partition of ``topic`` (empty if it does not exist)."""
        with self._lock:
            return self._end_offsets(topic)

    def _end_offsets(self, topic: str) -> dict[int, int]:
        consumer = self._client()
        try:
            parts = consumer.partitions_for_topic(topic) or set()
        except KafkaError as exc:
            msg = f"Kafka did not answer for the partitions of {topic}: {exc}"
            raise ServiceUnavailable(msg) from exc
        return end_offsets_of(consumer, [TopicPartition(topic, p) for p in sorted(parts)])

    def dead_letters(self) -> dict[str, Any]:
        """Dead letters so far: ``{"total": n, "by_reason": {reason: n}}`` (deduped by key)."""
        with self._lock:
            self._catch_up()
            reasons = Counter(self._dead.values())
        return {"total": len(self._dead), "by_reason": dict(reasons.most_common())}

    def _catch_up(self) -> None:
        topic = self.settings.dlq_topic
        ends = self._end_offsets(topic)
        if not ends or not any(ends.values()):
            return
        consumer = self._client()
        tps = [TopicPartition(topic, p) for p in ends]
        if set(consumer.assignment()) != set(tps):
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
        for _ in range(50):
            if all(consumer.position(tp) >= ends[tp.partition] for tp in tps):
                return
            for records in consumer.poll(timeout_ms=500, max_records=5_000).values():
                for rec in records:
                    self._dead[rec.key or b""] = _reason(rec.value)

    def close(self) -> None:
        """Close the Kafka connection, if one was opened."""
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


def _reason(value: bytes | None) -> str:
    try:
        return str(orjson.loads(value or b"{}").get("reason", "unknown"))[:80]
    except (orjson.JSONDecodeError, AttributeError):
        return "unreadable dead letter"
