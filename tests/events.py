"""Pageview events for tests: one builder, seeded, overridable field by field.

Every test that needs pageviews builds them here, so the stream's fields are spelled once
for the whole suite. Tests take the ``make_event`` fixture (tests/conftest.py: a factory
seeded from the test's own name); module-scoped fixtures and module-level constants build
an :class:`EventFactory` or call :func:`pageview` directly. Events come out in the form
the edge accepts and the log keeps (event times normalised by ``format_ts``).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from lambdalab.schema import format_ts

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The one valid pageview that validation and wiring tests start from (then override).
BASE: dict[str, Any] = {
    "event_id": "e1",
    "url": "/a",
    "user_id": "u1",
    "referrer": None,
    "bytes": 10,
    "event_time": "2026-01-01T00:00:00.000Z",
}


def pageview(**overrides: Any) -> dict[str, Any]:
    """A fixed, valid pageview with ``overrides`` applied (no randomness)."""
    return {**BASE, **overrides}


def moment_of(at: datetime | int) -> datetime:
    """A datetime from a datetime or from milliseconds since the epoch (exact)."""
    return at if isinstance(at, datetime) else EPOCH + timedelta(milliseconds=at)


@dataclass
class EventFactory:
    """Random but reproducible pageviews: the same seed gives the same events.

    Each call draws url, user, referrer and size from the configured pools; with
    probability ``late_fraction`` the event time lies ``late_by_s`` before ``at`` (a late
    event). ``event_id`` is ``{id_prefix}{n}`` with a counter, so ids never repeat.
    """

    seed: int = 0
    urls: tuple[str, ...] = tuple(f"/page/{i}" for i in range(6))
    users: int = 100
    referrers: tuple[str | None, ...] = (None, "google", "news", "mail")
    sizes: tuple[int, int] = (1, 50_000)  # inclusive bounds of ``bytes``
    late_fraction: float = 0.0
    late_by_s: tuple[float, float] = (600.0, 3 * 3600.0)
    id_prefix: str = "e"
    rng: random.Random = field(init=False, repr=False)
    counter: itertools.count[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.counter = itertools.count()

    def configured(self, **changes: Any) -> EventFactory:
        """A new factory (same seed unless changed, fresh RNG) with other pools."""
        return replace(self, **changes)

    def __call__(self, at: datetime | int | None = None, **overrides: Any) -> dict[str, Any]:
        """One event at ``at`` (datetime or epoch ms; default now), late or not."""
        moment = datetime.now(UTC) if at is None else moment_of(at)
        if self.rng.random() < self.late_fraction:
            moment -= timedelta(seconds=self.rng.uniform(*self.late_by_s))
        event = {
            "event_id": f"{self.id_prefix}{next(self.counter)}",
            "url": self.rng.choice(self.urls),
            "user_id": f"u{self.rng.randrange(self.users)}",
            "referrer": self.rng.choice(self.referrers),
            "bytes": self.rng.randint(*self.sizes),
            "event_time": format_ts(moment),
        }
        return {**event, **overrides}

    def many(
        self, n: int, at: datetime | int | None = None, **overrides: Any
    ) -> list[dict[str, Any]]:
        """``n`` events at the same ``at`` (each late or not on its own)."""
        return [self(at, **overrides) for _ in range(n)]


def transactional_producer(settings: Any) -> Any:
    """A kafka-python producer with a fresh transactional id, transactions initialised.

    For tests that write committed and aborted transactions (what Kafka Streams, Flink or
    Connect with exactly-once leave in a log).
    """
    import uuid

    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        transactional_id=f"test-{uuid.uuid4().hex[:8]}",
        enable_idempotence=True,
        acks="all",
    )
    producer.init_transactions()
    return producer
