"""``/views/{view}/rows`` and ``/views/{view}/keys`` with their readers swapped for fakes.

No services: the batch and speed readers are replaced through ``app.dependency_overrides``
(as in test_serving_api.py). What is checked here is the HTTP contract around the pure
logic of tests/unit/test_selection.py: one version and one realtime snapshot per request,
parameters as the OpenAPI document names them, paging with the cursor, every refusal a
422 naming its parameter, and the availability modes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lambdalab.errors import ServiceUnavailable
from lambdalab.settings import Settings, load_settings
from serving.app import create_app
from serving.deps import get_batch, get_speed
from views import registry
from views.definition import Measure, ViewDef

HOUR = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
READ = {"X-API-Key": "dev-read-key"}
VIEW = ViewDef(
    name="by_url_referrer",
    stream="pageviews",
    keys=("url", "referrer"),
    bucket_s=3600,
    measures=(Measure("views", "count"), Measure("top", "max", "bytes")),
)
SPAN = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T06:00:00Z"}
Cells = dict[str, dict[int, dict[str, Any]]]


def key(url: str, referrer: str) -> str:
    return f"{url}\x1f{referrer}"


BATCH: Cells = {
    key("/a", "g"): {T0: {"views": 3, "top": 10}, T0 + HOUR: {"views": 1, "top": 4}},
    key("/ab", "(none)"): {T0: {"views": 2, "top": 7}},
    key("/b", "g"): {T0 + 2 * HOUR: {"views": 5, "top": 1}},
}
REALTIME: Cells = {
    key("/a", "g"): {T0 + HOUR: {"views": 2, "top": 9}},
    key("/a", "news"): {T0 + 3 * HOUR: {"views": 4, "top": None}},
    key("/c", "(none)"): {T0 + 9 * HOUR: {"views": 1, "top": 1}},  # outside SPAN
}


@dataclass
class Info:
    view: str
    version: int
    cut_ms: int
    path: str = "/x"
    lineage: dict[str, Any] = field(default_factory=dict)


class FakeBatch:
    def __init__(self, info: Info | None, cells: Cells, down: bool = False) -> None:
        self.info, self._cells, self.down = info, cells, down
        self.calls: list[tuple[Any, ...]] = []

    def current(self, view: str) -> Info | None:
        if self.down:
            msg = "HDFS (fake) did not answer"
            raise ServiceUnavailable(msg)
        self.calls.append(("current", view))
        return self.info

    def cells(self, view: str, version: int, lo: int, hi: int, keep: Any = None) -> Cells:
        self.calls.append(("cells", view, version, lo, hi))
        return _within(self._cells, lo, hi, keep)


class FakeSpeed:
    def __init__(self, cells: Cells, down: bool = False, offsets: dict[int, int] | None = None):
        self._cells, self.down, self.offsets = cells, down, offsets or {0: 5}
        self.calls: list[tuple[Any, ...]] = []

    def view_snapshot(self, view: str, since: int, lo: int, hi: int, keep: Any = None) -> Any:
        if self.down:
            msg = "Redis (fake) did not answer"
            raise ServiceUnavailable(msg)
        self.calls.append(("view_snapshot", view, since, lo, hi))
        cells = _within(self._cells, lo, hi, keep)
        return SimpleNamespace(cells=cells, freshness_ms=T0 + 4 * HOUR, offsets=dict(self.offsets))


def _within(cells: Cells, lo: int, hi: int, keep: Any) -> Cells:
    out = {
        k: {b: dict(r) for b, r in rows.items() if lo <= b < hi}
        for k, rows in cells.items()
        if keep is None or keep(k)
    }
    return {k: rows for k, rows in out.items() if rows}


@pytest.fixture
def view(monkeypatch: pytest.MonkeyPatch) -> ViewDef:
    known = registry.all_views()
    monkeypatch.setattr(registry, "all_views", lambda: {**known, VIEW.name: VIEW})
    return VIEW


def _settings(availability: str = "consistent") -> Settings:
    base = load_settings()
    return base.model_copy(
        update={"api": base.api.model_copy(update={"availability": availability})}
    )


def _client(batch: Any, speed: Any, availability: str = "consistent") -> TestClient:
    app = create_app(_settings(availability))
    app.dependency_overrides[get_batch] = lambda: batch
    app.dependency_overrides[get_speed] = lambda: speed
    return TestClient(app, raise_server_exceptions=False)


def _get(client: TestClient, path: str, params: Any) -> Any:
    return client.get(f"/views/{VIEW.name}/{path}", params=params, headers=READ)


def test_rows_read_one_version_and_one_snapshot_since_its_cut(view: ViewDef) -> None:
    batch, speed = FakeBatch(Info(VIEW.name, 7, T0 + HOUR), BATCH), FakeSpeed(REALTIME)
    r = _get(_client(batch, speed), "rows", {**SPAN, "group_by": "url"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c[0] for c in batch.calls] == ["current", "cells"]
    assert speed.calls == [("view_snapshot", VIEW.name, T0 + HOUR, T0, T0 + 6 * HOUR)]
    assert (body["version"], body["cut_ms"], body["speed_offsets"]) == (7, T0 + HOUR, {"0": 5})
    assert (body["freshness_ms"], body["partial"], body["missing"]) == (T0 + 4 * HOUR, False, [])
    got = [(r["key"]["url"], r["bucket_ms"], r["views"], r["top"]) for r in body["rows"]]
    assert got == [
        ("/a", T0, 3, 10),
        ("/a", T0 + HOUR, 3, 9),  # batch 1 ⊕ realtime 2; max(4, 9)
        ("/a", T0 + 3 * HOUR, 4, None),
        ("/ab", T0, 2, 7),
        ("/b", T0 + 2 * HOUR, 5, 1),
    ]
    assert body["next_cursor"] is None and body["changed_since_first_page"] == []


@pytest.mark.parametrize(
    ("params", "rows"),
    [
        ({"url": "/a"}, [({}, T0, 3), ({}, T0 + HOUR, 3), ({}, T0 + 3 * HOUR, 4)]),
        ({"url": ["/ab", "/b"]}, [({}, T0, 2), ({}, T0 + 2 * HOUR, 5)]),
        ({"url.prefix": "/a", "rollup": "all"}, [({}, T0, 12)]),
        ({"referrer": "(none)", "rollup": "all"}, [({}, T0, 2)]),
        (
            {"url.prefix": "/a", "group_by": ["referrer", "url"], "rollup": "1d"},
            [
                ({"referrer": "(none)", "url": "/ab"}, T0, 2),
                ({"referrer": "g", "url": "/a"}, T0, 6),
                ({"referrer": "news", "url": "/a"}, T0, 4),
            ],
        ),
        ({"rollup": "2h"}, [({}, T0, 8), ({}, T0 + 2 * HOUR, 9)]),  # from 00:00, 2 h each
        (
            {"group_by": "url", "rollup": "all", "order_by": "-views", "limit": 2},
            [({"url": "/a"}, T0, 10), ({"url": "/b"}, T0, 5)],
        ),
        (
            {"group_by": "referrer", "order_by": ["top", "-bucket"], "rollup": "all"},
            [
                ({"referrer": "(none)"}, T0, 2),
                ({"referrer": "g"}, T0, 11),
                ({"referrer": "news"}, T0, 4),
            ],
        ),
    ],
)
def test_each_query_form(view: ViewDef, params: dict[str, Any], rows: list[Any]) -> None:
    client = _client(FakeBatch(Info(VIEW.name, 7, T0 + HOUR), BATCH), FakeSpeed(REALTIME))
    body = _get(client, "rows", {**SPAN, **params}).json()
    assert [(r["key"], r["bucket_ms"], r["views"]) for r in body["rows"]] == rows, body


def test_paging_continues_with_the_cursor_and_says_what_changed(view: ViewDef) -> None:
    batch, speed = FakeBatch(Info(VIEW.name, 7, T0 + HOUR), BATCH), FakeSpeed(REALTIME)
    client = _client(batch, speed)
    query = {"group_by": ["url", "referrer"], "order_by": "-views", "to": SPAN["to"]}
    whole = _get(client, "rows", {**query, "limit": 100}).json()["rows"]
    seen, cursor, changes = [], None, []
    for n in range(10):
        if n == 2:  # a new version and new realtime offsets between two pages
            batch.info, speed.offsets = Info(VIEW.name, 8, T0 + HOUR), {0: 9}
        params = {**query, "limit": 2, **({"cursor": cursor} if cursor else {})}
        body = _get(client, "rows", params).json()
        seen += body["rows"]
        changes.append(body["changed_since_first_page"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == whole and len(whole) == 5
    assert changes == [[], [], ["version", "realtime"]]


def test_a_cursor_keeps_the_first_pages_range(view: ViewDef) -> None:
    client = _client(FakeBatch(None, {}), FakeSpeed(REALTIME))
    first = _get(client, "rows", {**SPAN, "group_by": "url", "limit": 1}).json()
    second = _get(
        client, "rows", {**SPAN, "group_by": "url", "limit": 1, "cursor": first["next_cursor"]}
    )
    assert (second.json()["from"], second.json()["to"]) == (first["from"], first["to"])


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"urll": "/a"}, "'urll'"),
        ({"user_id": "u1"}, "'user_id'"),
        ({"group_by": "user_id"}, "'group_by'"),
        ({"order_by": "url"}, "'order_by'"),
        ({"order_by": "-"}, "'order_by'"),
        ({"rollup": "30m"}, "'rollup'"),
        ({"rollup": "0h"}, "'rollup'"),
        ({"cursor": "not-a-cursor"}, "'cursor'"),
        ({"cursor": "W1td"}, "'cursor'"),  # base64 of [[]]: JSON, but no cursor
        ({"limit": "0"}, "limit"),
        ({"limit": "10001"}, "limit"),
        ({"from": "2026-01-01T05:00:00Z", "to": "2026-01-01T01:00:00Z"}, "'to'"),
    ],
)
def test_bad_input_is_a_422_naming_the_parameter(
    view: ViewDef, params: dict[str, Any], named: str
) -> None:
    client = _client(FakeBatch(None, {}), FakeSpeed({}))
    r = _get(client, "rows", {**SPAN, **params})
    assert r.status_code == 422, r.text
    assert named in r.json()["detail"]


def test_a_cursor_of_another_query_is_refused(view: ViewDef) -> None:
    client = _client(FakeBatch(Info(VIEW.name, 7, T0), BATCH), FakeSpeed({}))
    cursor = _get(client, "rows", {**SPAN, "group_by": "url", "limit": 1}).json()["next_cursor"]
    r = _get(client, "rows", {**SPAN, "group_by": "referrer", "cursor": cursor})
    assert r.status_code == 422 and "query with other parameters" in r.json()["detail"]
    r = _get(client, "keys", {"cursor": cursor})
    assert r.status_code == 422 and "'cursor'" in r.json()["detail"]


def test_keys_are_listed_by_prefix_from_both_parts_and_paged(view: ViewDef) -> None:
    client = _client(FakeBatch(Info(VIEW.name, 7, T0 + HOUR), BATCH), FakeSpeed(REALTIME))
    body = _get(client, "keys", {"prefix": "/a"}).json()
    listed = [(k["key"], k["fields"]) for k in body["keys"]]
    assert listed == [
        (key("/a", "g"), {"url": "/a", "referrer": "g"}),
        (key("/a", "news"), {"url": "/a", "referrer": "news"}),
        (key("/ab", "(none)"), {"url": "/ab", "referrer": "(none)"}),
    ]
    assert body["version"] == 7
    every, cursor = [], None
    for _ in range(10):
        page = _get(client, "keys", {"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        every += [k["key"] for k in page["keys"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert every == sorted({*BATCH, *REALTIME})
    only = _get(client, "keys", {"referrer": "(none)", **SPAN}).json()["keys"]
    assert [k["key"] for k in only] == [key("/ab", "(none)")]  # /c's bucket is out of range


@pytest.mark.parametrize("down", ["batch", "realtime"])
def test_consistent_mode_answers_503_and_available_mode_a_partial_answer(
    view: ViewDef, down: str
) -> None:
    def parts() -> tuple[FakeBatch, FakeSpeed]:
        batch = FakeBatch(Info(VIEW.name, 7, T0 + HOUR), BATCH, down=down == "batch")
        return batch, FakeSpeed(REALTIME, down=down == "realtime")

    for path in ("rows", "keys"):
        r = _get(_client(*parts()), path, SPAN)
        assert r.status_code == 503 and down in r.json()["detail"]
        body = _get(_client(*parts(), availability="available"), path, SPAN).json()
        assert (body["partial"], body["missing"]) == (True, [down])


def test_a_cursor_near_the_start_of_the_accepted_range_continues(view: ViewDef) -> None:
    early = -2_208_988_800_000  # 1900-01-01T00:00:00Z
    cells = {key(f"/{i}", "g"): {early - HOUR: {"views": 1, "top": 1}} for i in range(3)}
    client = _client(FakeBatch(None, {}), FakeSpeed(cells))
    params = {"to": "1900-01-01T00:00:00Z", "group_by": "url", "limit": 2}
    first = _get(client, "rows", params).json()
    assert first["from"] == "1899-12-31T00:00:00.000Z" and len(first["rows"]) == 2
    second = _get(client, "rows", {**params, "cursor": first["next_cursor"]})
    assert second.status_code == 200, second.text
    assert [r["key"]["url"] for r in second.json()["rows"]] == ["/2"]


def test_a_forged_cursor_is_a_422_never_a_500(view: ViewDef) -> None:
    import base64
    import json

    from serving.cursor import decode, fingerprint

    asked = {
        "filters": {"equals": {}, "prefixes": {}, "key_prefix": ""},
        "group_by": ["url"],
        "rollup": None,
        "order_by": ["-views"],
        "from": SPAN["from"],
        "to": SPAN["to"],
        "sketches": False,
    }
    query = fingerprint(VIEW.name, "rows", asked)
    client = _client(FakeBatch(Info(VIEW.name, 7, T0), BATCH), FakeSpeed(REALTIME))
    params = {**SPAN, "group_by": "url", "order_by": "-views", "limit": 1}
    issued = _get(client, "rows", params).json()["next_cursor"]
    assert issued is not None and decode(issued, query).query == query  # the same query
    for after in (
        [None, 3, T0],
        ["x", "/a", T0],
        [1, "/a"],
        [1.5, 2, T0],
        [float("nan"), "/a", T0],
    ):
        body = {"q": query, "a": after, "s": [T0, T0 + 6 * HOUR], "v": 7, "o": ""}
        text = base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
        r = _get(client, "rows", {**params, "cursor": text})
        assert r.status_code == 422, (after, r.text)
        assert "not a cursor this API issued" in r.json()["detail"]
