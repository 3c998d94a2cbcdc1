"""The event producer: the one door through which accepted events enter the Kafka log.

Every producer of the platform (HTTP ``POST /events``, the generator, ``ingest file``)
goes through :class:`EventProducer`. It is a kafka-python idempotent producer with
``acks="all"``: :meth:`EventProducer.send_many` returns only once the broker has
acknowledged every record, so an event the caller was told is accepted is in the log
(invariant 1 starts here). Records are keyed by event id, which spreads them over the
partitions and keeps a retried event on the same partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import RecordMetadata

from lambdalab.errors import ServiceUnavailable
from lambdalab.schema import Stream
from lambdalab.settings import Settings
from lambdalab.topics import ACK_TIMEOUT_S, ensure_topics, kafka_producer


class EventProducer:
    """Sends validated events of one stream to the stream's topic and waits for acks.

    Called by the HTTP router (from a worker thread), the generator and the file loader.
    Thread-safe. A failure raises :class:`ServiceUnavailable`: the caller must then treat
    the whole batch as not accepted (a retry may duplicate events already written,
    which their event ids make visible; the log itself never loses an acked record).
    """

    def __init__(self, settings: Settings, stream: Stream) -> None:
        self.settings = settings
        self.stream = stream
        self.topic = settings.topic_for(stream.name)
        self._producer: KafkaProducer | None = None

    def _ready(self) -> KafkaProducer:
        if self._producer is None:
            ensure_topics(self.settings)
            self._producer = kafka_producer(self.settings)
        return self._producer

    def send_many(self, events: Iterable[dict[str, Any]]) -> list[RecordMetadata]:
        """Encode and send validated events; return their metadata once all are acked."""
        pairs = [
            (str(e.get(self.stream.id_field, "")).encode(), self.stream.encode(e)) for e in events
        ]
        return self.send_raw(pairs)

    def send_raw(self, records: Sequence[tuple[bytes | None, bytes]]) -> list[RecordMetadata]:
        """Send (key, value) byte pairs as they are; return metadata once all are acked.

        Used for already-encoded events and, in tests and the lab, to write malformed
        records straight to the log (they end up in the dead-letter topic).
        """
        producer = self._ready()
        try:
            futures = [producer.send(self.topic, key=k, value=v) for k, v in records]
            producer.flush(timeout=ACK_TIMEOUT_S)
            return [f.get(timeout=ACK_TIMEOUT_S) for f in futures]
        except KafkaError as exc:
            msg = f"Kafka did not acknowledge records for {self.topic}: {exc}"
            raise ServiceUnavailable(msg) from exc

    def close(self) -> None:
        """Flush and close the underlying producer (idempotent)."""
        if self._producer is not None:
            self._producer.close(timeout=ACK_TIMEOUT_S)
            self._producer = None
