"""The docker-compose cluster end to end, from the host, through its published ports only.

``make compose-test`` brings the cluster up (``infra/docker/cluster.sh``: images built here,
every service healthy) and runs this module; ``make test`` never selects it (marker
``compose``, not ``unit``, ``integration`` or ``e2e``). Nothing here imports a layer to
run it: events go in over ``POST /events``, one batch cycle runs inside the batch
container (``docker-compose exec batch lambdalab batch run``), the speed container keeps
the realtime views, and every merged answer of ``GET /views/{view}`` must equal the plain
Python oracle (tests/oracle.py) over the events this test sent. ``/sql`` must read the
version the answers name, the dashboard must serve its page, and a Kafka client on the
host must read the events back through the advertised host listener.

The cluster keeps its volumes between runs, so this test owns its keys: every url and
referrer carries a fresh token, and only those keys are asked for.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from batch.trino_tables import version_table
from lambdalab.boundary import seconds_until_cut_covers
from lambdalab.schema import PAGE_VIEWS
from lambdalab.settings import Settings
from lambdalab.topics import read_topic
from tests import oracle
from tests.events import EventFactory
from views.definition import ViewDef
from views.registry import all_views

pytestmark = pytest.mark.compose

ROOT = Path(__file__).resolve().parents[2]
READ = {"X-API-Key": "dev-read-key"}
WRITE = {"X-API-Key": "dev-write-key"}
NAMESPACE = "lab"  # LAMBDALAB_NAMESPACE of docker-compose.yml
UP_HINT = "bring the cluster up with `make compose-up` (infra/docker/cluster.sh up)"


def compose(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``docker-compose`` on the repository's file (DOCKER_HOST from the environment)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(f"docker-compose not found; {UP_HINT}", pytrace=False)
    return subprocess.run(
        [binary, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def published(service: str, port: int) -> str:
    """The host address (``127.0.0.1:NNNNN``) compose published for a container port."""
    done = compose("port", service, str(port))
    address = done.stdout.strip()
    if done.returncode != 0 or not address:
        pytest.fail(f"{service}:{port} is not published ({done.stderr.strip()}); {UP_HINT}")
    return address


@dataclass(frozen=True)
class Cluster:
    """Where the host reaches the cluster, and settings for host-side Kafka clients."""

    api: str
    settings: Settings


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    """The running cluster: every container healthy, the published API and Kafka ports."""
    ids = compose("ps", "-q").stdout.split()
    if not ids:
        pytest.fail(f"no container of docker-compose.yml runs; {UP_HINT}", pytrace=False)
    fmt = "{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}"
    states = subprocess.run(
        ["docker", "inspect", "--format", fmt, *ids], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    unhealthy = [s for s in states if s and not s.endswith(" healthy")]
    assert not unhealthy, f"{unhealthy}; {UP_HINT}"
    kafka = published("kafka", 9094)
    settings = Settings(namespace=NAMESPACE, kafka={"bootstrap_servers": kafka})  # type: ignore[arg-type]
    return Cluster(api=f"http://{published('api', 8000)}", settings=settings)


def post_events(client: httpx.Client, events: list[dict[str, Any]]) -> None:
    """POST the events in requests of 100; every one must be accepted."""
    for start in range(0, len(events), 100):
        chunk = events[start : start + 100]
        r = client.post("/events", content=orjson.dumps(chunk), headers=WRITE)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == len(chunk), r.text


def batch_cycle() -> str:
    """One batch cycle inside the batch container: land, cut, build, publish, register."""
    done = compose("exec", "-T", "batch", "lambdalab", "batch", "run", timeout=900)
    assert done.returncode == 0, f"batch run failed:\n{done.stdout}\n{done.stderr}"
    # one lander by design: the batch container waits for the archiver, it never lands
    assert "waited" in done.stdout and "for the archiver" in done.stdout, done.stdout
    return done.stdout


def wait_speed_caught_up(client: httpx.Client, timeout_s: float = 120) -> None:
    """Until the speed consumer's lag behind the topic's end offsets is 0."""
    deadline = time.monotonic() + timeout_s
    speed: dict[str, Any] = {}
    while time.monotonic() < deadline:
        pipeline = client.get("/pipeline", headers=READ).json()
        speed = pipeline["streams"][PAGE_VIEWS.name].get("speed", {})
        if speed.get("lag_total") == 0:
            return
        time.sleep(1)
    pytest.fail(f"speed layer still behind after {timeout_s} s: {speed}")


def query(client: httpx.Client, view: ViewDef, key: str) -> dict[str, Any]:
    """The merged answer of ``view`` for ``key`` over the two days around now."""
    now = datetime.now(UTC)
    span = {
        "key": key,
        "from": (now - timedelta(days=2)).strftime("%Y-%m-%dT00:00:00Z"),
        "to": (now + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z"),
    }
    r = client.get(f"/views/{view.name}", params=span, headers=READ)
    assert r.status_code == 200, r.text
    return dict(r.json())


def assert_equals_oracle(
    view: ViewDef, answer: dict[str, Any], events: list[dict[str, Any]]
) -> None:
    """Every merged bucket equals the oracle's (an HLL within its error, 3 %)."""
    lo, hi = oracle.ms_of(answer["from"]), oracle.ms_of(answer["to"])
    rows = oracle.by_bucket(oracle.measures(view, events), answer["key"])
    want = {bucket: row for bucket, row in rows.items() if lo <= bucket < hi}
    got = {row["bucket_ms"]: row for row in answer["merged"]}
    where = f"{view.name} key={answer['key']!r} v{answer['version']} cut={answer['cut']}"
    assert set(got) == set(want), f"{where}: buckets {sorted(got)} != {sorted(want)}"
    for bucket, row in want.items():
        for m in view.measures:
            if m.kind == "hll":
                assert got[bucket][m.name] == pytest.approx(len(row[m.name]), rel=0.03, abs=0.5)
            else:
                assert got[bucket][m.name] == row[m.name], f"{where} bucket {bucket} {m.name}"


def sql(client: httpx.Client, statement: str) -> list[list[Any]]:
    """Rows of one read-only statement through ``POST /sql``."""
    r = client.post("/sql", json={"sql": statement}, headers=READ)
    assert r.status_code == 200, r.text
    return list(r.json()["rows"])


def test_the_cluster_answers_like_the_oracle(cluster: Cluster) -> None:
    token = uuid.uuid4().hex[:12]
    make = EventFactory(
        seed=int(token, 16) % 2**32,
        urls=tuple(f"/compose/{token}/p{i}" for i in range(4)),
        referrers=tuple(f"https://{token}-{c}.example/" for c in "ab"),
        users=40,
        late_fraction=0.2,
        id_prefix=f"{token}-",
    )
    before_batch, after_batch = make.many(300), make.many(200)
    with httpx.Client(base_url=cluster.api, timeout=60) as client:
        post_events(client, before_batch)
        posted_ms = int(time.time() * 1000)
        # the cycle's cut (an ingest-window boundary before its snapshot) must pass them all
        time.sleep(seconds_until_cut_covers(cluster.settings, posted_ms, int(time.time() * 1000)))
        print(batch_cycle())
        post_events(client, after_batch)
        wait_speed_caught_up(client)

        events = before_batch + after_batch
        answers = []
        for view in all_views().values():
            for key in sorted({view.key_of(e) for e in events}):
                answer = query(client, view, key)
                assert answer["version"] is not None and answer["cut_ms"] > posted_ms, answer
                assert not answer["partial"], answer
                assert_equals_oracle(view, answer, events)
                answers.append((view, answer))
        assert all(a["batch"] for _, a in answers), "the batch part covers the first events"
        assert any(a["realtime"] for _, a in answers), "the speed part covers the later ones"

        # /sql reads the same batch version the merged answers used
        view, answer = next((v, a) for v, a in answers if v.name == "pageviews_by_url_hourly")
        table = version_table(view.name, answer["version"])
        rows = sql(client, f"SELECT sum(views) FROM {table} WHERE url = '{answer['key']}'")
        assert rows == [[sum(row["views"] for row in answer["batch"].values())]]

        page = client.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<html" in page.text.lower()

    # a Kafka client on the host reads the events back through the advertised listener
    records = read_topic(cluster.settings, cluster.settings.topic_for(PAGE_VIEWS.name))
    mine = [orjson.loads(r.value) for r in records if token.encode() in r.value]
    assert sorted(e["event_id"] for e in mine) == sorted(e["event_id"] for e in events)
