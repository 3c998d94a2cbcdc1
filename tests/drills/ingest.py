"""The drill's continuous ingest and its ledger of accepted events.

:class:`Feed` produces pageviews at a fixed rate through ``ingest.producer.EventProducer``,
the platform's one door into the log, and records in a :class:`Ledger` every event Kafka
acknowledged, with the (partition, offset) of the returned metadata: the accepted events
every layer must hold exactly once at the end of the drill.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ingest.producer import EventProducer
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from tests.events import EventFactory

URLS = tuple(f"/page/{i}" for i in range(6))
REFERRERS: tuple[str | None, ...] = (None, "google", "news", "mail")
POISON = b'{"event_id": "poison", "url": '  # a record that does not decode: a dead letter
Coord = tuple[int, int]  # (partition, offset)


@dataclass(frozen=True)
class Accepted:
    """One event Kafka acknowledged: its coordinates, broker ingest time and the event."""

    partition: int
    offset: int
    ingest_ms: int
    event: dict[str, Any]


@dataclass
class Ledger:
    """Every event the feed sent: acknowledged (accepted), in doubt, or poison.

    An event is accepted when ``EventProducer.send_many`` returned its metadata. A batch
    whose send raised is *in doubt*: the producer may still have written some of it (its
    contract says so); the verification looks those up in the log by event id.
    """

    accepted: dict[Coord, Accepted] = field(default_factory=dict)
    doubtful: list[dict[str, Any]] = field(default_factory=list)
    poison: set[Coord] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    last_ack: float = 0.0  # monotonic time of the newest acknowledgement
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def accept(self, events: list[dict[str, Any]], metas: list[Any]) -> None:
        with self.lock:
            for event, meta in zip(events, metas, strict=True):
                coord = (meta.partition, meta.offset)
                self.accepted[coord] = Accepted(*coord, meta.timestamp, event)
            self.last_ack = time.monotonic()

    def doubt(self, events: list[dict[str, Any]], exc: BaseException) -> None:
        with self.lock:
            self.doubtful.extend(events)
            self.failures.append(f"{type(exc).__name__}: {exc}"[:300])

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)


class Feed:
    """Continuous ingest: ``rate`` events/s, in batches, through the platform's producer.

    About one batch in ``poison_every`` is followed by a record that does not decode
    (bad input is data: it must become a dead letter, never an event).
    """

    def __init__(self, settings: Settings, ledger: Ledger, seed: int, rate: float = 40.0) -> None:
        self.settings, self.ledger, self.rate = settings, ledger, rate
        self.make = EventFactory(
            seed=seed,
            urls=URLS,
            users=200,
            referrers=REFERRERS,
            late_fraction=0.1,
            late_by_s=(600.0, 3 * 3600.0),
            id_prefix=f"{settings.namespace}-",
        )
        self.batch, self.poison_every = 8, 25
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drill-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=120)

    def _run(self) -> None:
        producer = EventProducer(self.settings, PAGE_VIEWS)
        period, n = self.batch / self.rate, 0
        due = time.monotonic()
        while not self._stop.is_set():
            n += 1
            self._send(producer, self.make.many(self.batch), poison=n % self.poison_every == 0)
            due = max(due + period, time.monotonic() - period)
            self._stop.wait(max(0.0, due - time.monotonic()))
        try:
            producer.close()
        except Exception as exc:  # closing after an outage may time out; nothing to lose
            self.ledger.failures.append(f"close: {exc}")

    def _send(self, producer: EventProducer, events: list[dict[str, Any]], poison: bool) -> None:
        try:
            self.ledger.accept(events, producer.send_many(events))
        except Exception as exc:  # the producer's contract: the batch is in doubt, go on
            self.ledger.doubt(events, exc)
        if not poison:
            return
        try:
            meta = producer.send_raw([(None, POISON)])[0]
        except Exception as exc:  # a poison record in doubt is recognised by its bytes
            self.ledger.failures.append(f"poison: {type(exc).__name__}: {exc}"[:300])
            return
        with self.ledger.lock:
            self.ledger.poison.add((meta.partition, meta.offset))
