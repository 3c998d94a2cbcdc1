"""Shared fixtures: settings with a namespace of their own, and the real stack.

Integration and e2e tests talk to the real services of the local stack. A missing
service fails the test with a message saying what to start; nothing is skipped. Each
test's namespace is removed from the stack at its teardown (tests/namespaces.py).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.health import port_open
from lambdalab.settings import Settings, load_settings
from tests.events import EventFactory
from tests.namespaces import namespace, new_name

START_HINT = "start the local stack with `make up` (or `.venv/bin/lambdalab stack up`)"
# Tests use the development API keys, which the API accepts only in demo mode
# (tests/unit/test_auth.py checks the refusal outside it).
os.environ.setdefault("LAMBDALAB_DEMO", "true")


def _require(settings: Settings, services: list[str]) -> None:
    ports = {
        "kafka": ("127.0.0.1", settings.kafka.port),
        "hdfs": ("127.0.0.1", settings.hdfs.http_port),
        "datanode": ("127.0.0.1", settings.hdfs.datanode_port),
        "redis": ("127.0.0.1", settings.redis.port),
        "trino": (settings.trino.host, settings.trino.port),
        "luigid": (settings.luigi.host, settings.luigi.port),
    }
    missing = [
        f"{s} ({h}:{p})" for s, (h, p) in ports.items() if s in services and not port_open(h, p)
    ]
    if missing:
        pytest.fail(f"service(s) not reachable: {', '.join(missing)}; {START_HINT}", pytrace=False)


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return load_settings()


@pytest.fixture
def settings(base_settings: Settings, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings with a fresh namespace: own topics, HDFS root, Redis keys, Trino schema.

    For integration and e2e tests all four are dropped at teardown (a part that cannot be
    dropped is a warning, not an error); a unit test's namespace never reaches the stack.
    """
    if not _uses_stack(request.node):
        yield base_settings.model_copy(update={"namespace": new_name()})
        return
    with namespace(base_settings) as fresh:
        yield fresh


@pytest.fixture
def make_event(request: pytest.FixtureRequest) -> EventFactory:
    """Builds pageviews, ``make_event(at=..., **overrides)``; seeded by the test's id.

    The same test gets the same events on every run; ``make_event.configured(...)`` gives
    other pools (urls, users, late fraction, ...) from the same seed (tests/events.py).
    """
    return EventFactory(seed=zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="session")
def stack(base_settings: Settings) -> Iterator[Settings]:
    """The whole real stack; fails with what to start if any service is down."""
    needed = ["kafka", "hdfs", "datanode", "redis", "trino"]
    _require(base_settings, needed if base_settings.luigi.local_scheduler else [*needed, "luigid"])
    yield base_settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test carries exactly one kind marker, from its folder."""
    for item in items:
        path = str(item.fspath)
        for kind in ("unit", "integration", "e2e"):
            if f"/tests/{kind}/" in path:
                item.add_marker(getattr(pytest.mark, kind))


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """``-m unit`` imports only tests/unit: the kind marker comes from the folder, so no
    other folder holds a unit test, and the unit suite never pays for importing Spark,
    Kafka or Playwright test modules it would deselect anyway."""
    here = Path(__file__).parent
    if config.option.markexpr.strip() != "unit" or collection_path.parent != here:
        return None
    return True if collection_path.is_dir() and collection_path.name != "unit" else None


def _uses_stack(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(kind) for kind in ("integration", "e2e"))


@pytest.fixture(autouse=True)
def _real_services_for_integration(request: pytest.FixtureRequest) -> None:
    """Every integration and e2e test needs the real stack: fail, naming what to start."""
    if _uses_stack(request.node):
        request.getfixturevalue("stack")
