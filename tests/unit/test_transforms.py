"""A view's transforms in the definition and in the speed layer's Python form.

The oracle applies the transforms itself, in plain Python written here (urllib for the
host, arithmetic by hand), never through ``views.expr`` or ``views.transform``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from lambdalab.errors import DefinitionError, NotFound, ValidationFailed
from lambdalab.schema import Field
from tests import oracle
from tests.events import EventFactory
from views.compute import aggregate
from views.definition import Derived, Enrich, Measure, ViewDef, key_part
from views.dimension import DIMENSIONS, Dimension, declare

HOUR = 3_600_000
URLS = tuple(
    f"https://{host}/p/{i}?q"
    for i, host in enumerate(("Shop.Example", "news.example", "a.b.example", "x.example"))
)
PLAIN = ViewDef(
    name="plain",
    stream="pageviews",
    keys=("url",),
    bucket_s=3600,
    measures=(Measure("n", "count"),),
)


def _view(**changes: object) -> ViewDef:
    base = {
        "name": "big_by_host",
        "stream": "pageviews",
        "keys": ("host", "big"),
        "bucket_s": 3600,
        "measures": (Measure("n", "count"), Measure("kb", "sum", "kb")),
        "where": "referrer is not null and bytes > 100",
        "derive": (
            Derived("host", "lower(url_host(url))"),
            Derived("big", "bytes >= 5000"),
            Derived("kb", "bytes // 1024"),
        ),
    }
    return ViewDef(**{**base, **changes})  # type: ignore[arg-type]


@pytest.fixture
def campaigns() -> Iterator[Dimension]:
    dim = declare(Dimension("campaigns_t", Field("url", "string"), (Field("campaign", "string"),)))
    yield dim
    DIMENSIONS.pop(dim.name, None)


def _events(make_event: EventFactory, n: int) -> list[tuple[int, dict[str, object]]]:
    make = make_event.configured(urls=URLS, referrers=(None, "g"), sizes=(1, 9000))
    base = 1_795_590_000_000
    return [(base + i * 997, make(at=base + i * 997 - 5000)) for i in range(n)]


def _oracle_event(e: dict[str, object]) -> dict[str, object] | None:
    if e["referrer"] is None or not int(e["bytes"]) > 100:  # type: ignore[call-overload]
        return None
    size = int(e["bytes"])  # type: ignore[call-overload]
    host = urlsplit(str(e["url"])).hostname  # lower-cased, port and user removed
    return {**e, "host": host, "big": size >= 5000, "kb": size // 1024}  # sizes are positive


def test_where_and_derive_equal_the_oracle(make_event: EventFactory) -> None:
    view = _view()
    timed = _events(make_event, 400)
    got = aggregate(view, timed, 60)
    expected = oracle.measures_by_window(
        view, [(t, o) for t, e in timed if (o := _oracle_event(e)) is not None], 60
    )
    assert got == expected
    keys = {cell[1] for cell in got}
    assert "shop.example\x1ftrue" in keys and "x.example\x1ffalse" in keys
    assert sum(row["n"] for row in got.values()) < len(timed)  # the filter dropped some


def test_enrich_is_a_left_join(make_event: EventFactory, campaigns: Dimension) -> None:
    view = _view(
        keys=("campaign",),
        enrich=(Enrich("campaigns_t", on="url", fields=("campaign",), version=3),),
        where="campaign is null or length(campaign) > 1",
        derive=(Derived("kb", "bytes // 1024"),),
    )
    table = {URLS[0]: ("c0",), URLS[1]: ("c1",), URLS[2]: (None,)}
    timed = _events(make_event, 200)
    got = aggregate(view, timed, 60, {"campaigns_t": table})
    mapping = {URLS[0]: "c0", URLS[1]: "c1"}
    expected_events = [
        (t, {**e, "campaign": mapping.get(str(e["url"])), "kb": int(e["bytes"]) // 1024})  # type: ignore[call-overload]
        for t, e in timed
    ]
    assert got == oracle.measures_by_window(view, expected_events, 60)
    with pytest.raises(DefinitionError, match="no version of it is loaded"):
        aggregate(view, timed, 60, {})


def test_definition_round_trips_and_fingerprints_transforms(campaigns: Dimension) -> None:
    view = _view(enrich=(Enrich("campaigns_t", on="url", fields=("campaign",)),))
    assert ViewDef.from_dict(view.to_dict()) == view
    pinned = view.pinned({"campaigns_t": 4})
    assert ViewDef.from_dict(pinned.to_dict()) == pinned
    assert pinned.dimension_versions() == {"campaigns_t": 4}
    prints = {
        view.fingerprint,
        pinned.fingerprint,
        view.pinned({"campaigns_t": 5}).fingerprint,
        _view(where="bytes > 101").fingerprint,
        _view(derive=(*_view().derive[:2], Derived("kb", "bytes // 1000"))).fingerprint,
    }
    assert len(prints) == 5
    assert set(PLAIN.to_dict()) == {"name", "stream", "keys", "bucket_s", "measures", "description"}
    types = view.field_types()
    assert types["campaign"] == "string" and types["big"] == "bool" and types["kb"] == "int"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"where": "bytes + 1"}, "where 'bytes \\+ 1' is a int, not a bool"),
        ({"where": "nope > 1"}, "view big_by_host: where 'nope > 1': unknown field 'nope'"),
        ({"derive": (Derived("host", "lower(bytes)"),)}, "derive 'host' = 'lower\\(bytes\\)'"),
        ({"derive": (Derived("url", "'x'"),)}, "'url' is already a field"),
        ({"derive": (Derived("key", "'x'"),)}, "not reserved"),
        ({"derive": (Derived("host", "null"),)}, "has no type"),
        ({"derive": (Derived("f", "bytes / 2"),), "keys": ("f",)}, "key 'f' is a float"),
        ({"keys": ("nope",)}, "key 'nope' is not a field"),
        ({"enrich": (Enrich("nodim", "url", ("c",)),)}, "unknown dimension 'nodim'"),
        ({"measures": (Measure("s", "sum", "host"),)}, "field 'host' is string"),
    ],
)
def test_bad_transforms_name_the_view_and_the_problem(changes: dict, problem: str) -> None:
    with pytest.raises(DefinitionError, match=problem):
        _view(**changes)


def test_enrich_errors_name_the_field(campaigns: Dimension) -> None:
    with pytest.raises(DefinitionError, match="'bytes' is a int, the dimension's key 'url'"):
        _view(enrich=(Enrich("campaigns_t", "bytes", ("campaign",)),))
    with pytest.raises(DefinitionError, match="'nope' is not a field of dimension"):
        _view(enrich=(Enrich("campaigns_t", "url", ("nope",)),))


def test_bool_keys_render_as_spark_casts_them() -> None:
    assert (key_part(True), key_part(False), key_part(1), key_part(0)) == (
        "true",
        "false",
        "1",
        "0",
    )


def test_dimension_files_are_validated(tmp_path: Path, campaigns: Dimension) -> None:
    dim = Dimension(
        "d", Field("id", "int"), (Field("name", "string"), Field("w", "float"), Field("on", "bool"))
    )
    good = tmp_path / "d.csv"
    good.write_text("id,name,w,on\n1,a,0.5,true\n-2,,,false\n")
    assert dim.read(good) == {1: ("a", 0.5, True), -2: (None, None, False)}
    lines = tmp_path / "d.jsonl"
    lines.write_text('{"id": 3, "name": "x", "w": 2, "on": null}\n\n')
    assert dim.read(lines) == {3: ("x", 2.0, None)}
    for text, problem in [
        ("id,name\n1,a\n1,b\n", "d.csv:3: duplicate key 1"),
        ("id,name\nx,a\n", "d.csv:2: column 'id' must be a int"),
        ("id,nope\n1,a\n", "unknown column"),
        ("id,on\n1,yes\n", "'on' must be a bool"),
        ("name\na\n", "key 'id' is missing"),
    ]:
        good.write_text(text)
        with pytest.raises(ValidationFailed, match=problem):
            dim.read(good)
    with pytest.raises(NotFound, match="campaigns_t"):
        from views.dimension import get_dimension

        get_dimension("nope")


def test_a_compacted_topic_gives_the_newest_value_per_key() -> None:
    from views.dimension import topic_rows

    dim = Dimension("d", Field("id", "int"), (Field("name", "string"),))
    records = [
        (0, 0, b"1", b'{"name": "old"}'),
        (1, 0, b"2", b'{"name": "two"}'),
        (0, 1, b"3", b'{"name": "gone"}'),
        (0, 2, b"1", b'{"name": "new"}'),
        (0, 3, b"3", None),  # a tombstone deletes key 3
        (1, 1, b"4", b'{"id": 4}'),  # no name: NULL
    ]
    assert topic_rows(dim, records) == {1: ("new",), 2: ("two",), 4: (None,)}
    with pytest.raises(ValidationFailed, match="partition 0 offset 7: value is not valid JSON"):
        topic_rows(dim, [(0, 7, b"1", b"{")])
    with pytest.raises(ValidationFailed, match="partition 2 offset 0: column 'id' must be a int"):
        topic_rows(dim, [(2, 0, b"x", b"{}")])
