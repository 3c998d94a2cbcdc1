"""Transforms on the real stack: where + derive + enrich, each layer against an oracle.

Events go through Kafka; a dimension file is loaded with ``lambdalab dim load``. The batch
version, the speed layer's part and the merged answer each equal a plain-Python oracle
that applies the transforms itself (urllib for the host, a dict for the dimension, the
filter and the integer division written out here; never ``views.expr`` nor
``views.transform``). Then the dimension file changes: a new dimension version, the next
batch cycle publishes a new version, the speed layer rebuilds with the new mapping, and
the merged answer uses it and says so in its provenance.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from batch.reader import BatchReader
from batch.tasks import run_cycle
from ingest.producer import EventProducer
from lambdalab.schema import PAGE_VIEWS, Field
from lambdalab.settings import Settings
from lambdalab.topics import ensure_topics
from serving.query import merged_query
from speed.consumer import catch_up
from speed.reader import SpeedReader
from tests import oracle
from tests.events import EventFactory
from tests.twoparts import HOUR, T0, registered, short_windows
from views.definition import Derived, Enrich, Measure, ViewDef
from views.dimension import DIMENSIONS, Dimension, declare

URLS = (
    "https://Shop.Example/cart?x=1",
    "https://shop.example/home",
    "http://news.example:8080/a",
    "https://user@blog.example/p/1",
    "https://unmapped.example/",
)
SPAN = (T0 - 24 * HOUR, T0 + 24 * HOUR)
FIRST = {URLS[0]: "spring", URLS[1]: "spring", URLS[2]: "news", URLS[3]: "blog"}
SECOND = {URLS[0]: "summer", URLS[1]: "spring", URLS[2]: "news"}  # blog dropped, cart moved


@pytest.fixture(scope="module")
def spark(stack: Settings) -> Iterator[Any]:
    from batch.spark import spark_session

    session = spark_session(stack, app_name="test-transforms")
    yield session
    session.stop()


@pytest.fixture
def dimension() -> Iterator[Dimension]:
    dim = declare(Dimension("tx_campaigns", Field("url", "string"), (Field("campaign", "string"),)))
    yield dim
    DIMENSIONS.pop(dim.name, None)


def _view() -> ViewDef:
    return ViewDef(
        name="tx_by_campaign",
        stream="pageviews",
        keys=("campaign", "host"),
        bucket_s=3600,
        measures=(Measure("n", "count"), Measure("kb", "sum", "kb"), Measure("top", "max", "kb")),
        enrich=(Enrich("tx_campaigns", on="url", fields=("campaign",)),),
        derive=(Derived("host", "lower(url_host(url))"), Derived("kb", "bytes // 1024")),
        where="referrer is not null and bytes > 100",
    )


def _events(seed: int, n: int) -> list[dict[str, Any]]:
    make = EventFactory(
        seed=seed, urls=URLS, referrers=(None, "g"), sizes=(1, 9000), id_prefix=f"t{seed}-"
    )
    return [make(at=T0 + (i * 7_919_000) % (3 * HOUR)) for i in range(n)]


def _oracle(events: list[dict[str, Any]], mapping: dict[str, str]) -> list[dict[str, Any]]:
    """The transformed events, by hand: enrich, derive, filter."""
    out = []
    for e in events:
        if e["referrer"] is None or e["bytes"] <= 100:
            continue
        host = urlsplit(e["url"]).hostname  # lower-cased, without user and port
        out.append({**e, "campaign": mapping.get(e["url"]), "host": host, "kb": e["bytes"] // 1024})
    return out


def _load(ns: Settings, tmp_path: Path, mapping: dict[str, str], monkeypatch: Any) -> str:
    from lambdalab import cli

    path = tmp_path / f"campaigns-{len(list(tmp_path.iterdir()))}.csv"
    path.write_text("url,campaign\n" + "".join(f"{u},{c}\n" for u, c in mapping.items()))
    monkeypatch.setattr("batch.dimcli.get_settings", lambda: ns)
    result = CliRunner().invoke(cli.app, ["dim", "load", "tx_campaigns", str(path)])
    assert result.exit_code == 0, result.output
    return result.output


def _send(ns: Settings, events: list[dict[str, Any]]) -> None:
    producer = EventProducer(ns, PAGE_VIEWS)
    try:
        producer.send_many(events)
    finally:
        producer.close()


def _plain(cells: dict[str, dict[int, dict[str, Any]]]) -> dict[tuple[str, int], dict]:
    return {
        (k, b): {m: int(v) for m, v in row.items()}
        for k, rows in cells.items()
        for b, row in rows.items()
    }


def _expected(view: ViewDef, events: list[dict[str, Any]]) -> dict[tuple[str, int], dict]:
    return {cell: dict(row) for cell, row in oracle.measures(view, events).items()}


def _merged(ns: Settings, view: ViewDef, keys: set[str]) -> tuple[dict, list[Any]]:
    batch, speed = BatchReader(ns), SpeedReader(ns)
    got, provs = {}, []
    for key in keys:
        ans = merged_query(ns, batch, speed, view, key, SPAN)
        provs.append(ans["dimensions"])
        for row in ans["merged"]:
            got[(key, row["bucket_ms"])] = {m.name: int(row[m.name]) for m in view.measures}
    return got, provs


def test_where_derive_enrich_on_the_stack(
    stack: Settings, spark: Any, dimension: Dimension, tmp_path: Path, monkeypatch: Any
) -> None:
    with short_windows(stack) as ns, registered(_view()) as view:
        ensure_topics(ns)
        assert "version 1 (loaded" in _load(ns, tmp_path, FIRST, monkeypatch)
        assert "version 1 (unchanged" in _load(ns, tmp_path, FIRST, monkeypatch)
        a, b, c = _events(1, 120), _events(2, 80), _events(3, 60)

        _send(ns, a)
        time.sleep(1.2)  # a 1 s window boundary passes: the cut covers `a`
        first = run_cycle(ns, trino=False, views=[view], spark=spark)
        assert first["ok"] and first["views"][view.name]["status"] == "published", first
        _send(ns, b)  # after the cut: only the speed layer has them
        catch_up(ns, PAGE_VIEWS, views={view.name: view})

        batch_cells = BatchReader(ns).cells(view.name, 1, *SPAN)
        assert _plain(batch_cells) == _expected(view, _oracle(a, FIRST))
        speed_cells = SpeedReader(ns).view_snapshot(view.name, first["cut_ms"], *SPAN).cells
        assert _plain(speed_cells) == _expected(view, _oracle(b, FIRST))
        truth = _expected(view, _oracle(a + b, FIRST))
        got, provs = _merged(ns, view, {k for k, _ in truth})
        assert got == truth
        assert provs[0] == {"batch": {"tx_campaigns": 1}, "realtime": {"tx_campaigns": 1}}
        assert any(k.startswith("(none)") for k, _ in truth)  # the unmapped url: a NULL key

        assert "version 2 (loaded" in _load(ns, tmp_path, SECOND, monkeypatch)
        time.sleep(1.2)
        second = run_cycle(ns, trino=False, views=[view], spark=spark)
        report = second["views"][view.name]
        assert report["status"] == "published" and report["version"] == 2, second
        assert report["fingerprint"] != first["views"][view.name]["fingerprint"]
        assert BatchReader(ns).current(view.name).lineage["dimensions"] == {"tx_campaigns": 2}
        _send(ns, c)
        catch_up(ns, PAGE_VIEWS, views={view.name: view})  # rebuilds: a new dimension version

        truth = _expected(view, _oracle(a + b + c, SECOND))
        got, provs = _merged(ns, view, {k for k, _ in truth} | {k for k, _ in got})
        assert got == truth
        assert all(
            p == {"batch": {"tx_campaigns": 2}, "realtime": {"tx_campaigns": 2}} for p in provs
        )
        speed_cells = SpeedReader(ns).view_snapshot(view.name, second["cut_ms"], *SPAN).cells
        assert _plain(speed_cells) == _expected(view, _oracle(c, SECOND))


def test_a_compacted_topic_loads_as_a_version(
    stack: Settings, dimension: Dimension, monkeypatch: Any
) -> None:
    """``dim load NAME --topic T``: the newest value per key of a compacted topic."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    from lambdalab import cli
    from lambdalab.hdfs import read_dimension, webhdfs

    with short_windows(stack) as ns:
        topic = f"{ns.namespace}.dim.tx_campaigns"
        admin = KafkaAdminClient(bootstrap_servers=ns.kafka.bootstrap_servers)
        try:
            policy = {"cleanup.policy": "compact"}
            admin.create_topics([NewTopic(topic, 2, 1, topic_configs=policy)])
        finally:
            admin.close()
        producer = KafkaProducer(bootstrap_servers=ns.kafka.bootstrap_servers)
        sent = [(URLS[0], "spring"), (URLS[1], "news"), (URLS[0], "summer"), (URLS[1], None)]
        for url, campaign in sent:
            value = None if campaign is None else f'{{"campaign": "{campaign}"}}'.encode()
            producer.send(topic, key=url.encode(), value=value)
        producer.send(topic, key=URLS[2].encode(), value=b'{"campaign": null}')
        producer.flush()
        producer.close()
        monkeypatch.setattr("batch.dimcli.get_settings", lambda: ns)
        args = ["dim", "load", "tx_campaigns", "--topic", topic]
        result = CliRunner().invoke(cli.app, args)
        assert result.exit_code == 0, result.output
        assert "version 1 (loaded, 2 rows" in result.output
        rows = read_dimension(webhdfs(ns), ns, "tx_campaigns", 1).to_pylist()
        assert sorted(rows, key=lambda r: r["url"]) == [
            {"url": URLS[2], "campaign": None},
            {"url": URLS[0], "campaign": "summer"},
        ]
