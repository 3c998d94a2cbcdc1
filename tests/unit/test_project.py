"""User projects: streams, views and dimensions loaded by path from LAMBDALAB_PROJECT."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambdalab import project, schema
from lambdalab.errors import ConfigError, DefinitionError
from lambdalab.scaffold import init_project
from views import registry

ROOT = Path(__file__).resolve().parents[2]


def test_without_the_setting_the_project_is_the_example(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAMBDALAB_PROJECT", raising=False)
    assert project.project_dir() == project.EXAMPLE
    assert set(project.load_streams(project.EXAMPLE)) == {"pageviews"}
    assert set(registry.load_views(project.EXAMPLE)) == set(registry.coded_views())


def test_an_initialised_project_loads_and_its_view_reads_its_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "shop"
    init_project(folder)
    streams = project.load_streams(folder)
    assert list(streams) == ["orders"]
    for name, stream in streams.items():
        monkeypatch.setitem(schema.STREAMS, name, stream)
    views = registry.load_views(folder)
    view = views["orders_by_shop_hourly"]
    event, why = streams["orders"].validate(
        {"order_id": "o1", "shop": "n", "items": 2, "amount": 3, "paid": True,
         "placed_at": 1767225600000}
    )  # fmt: skip
    assert why is None and event is not None
    assert (view.key_of(event), event["placed_at"]) == ("n", "2026-01-01T00:00:00.000Z")
    assert registry.dimensions(folder) == []
    with pytest.raises(ConfigError, match="is not empty"):
        init_project(folder)


def test_the_dimensions_hook_returns_the_declared_list(tmp_path: Path) -> None:
    (tmp_path / "dimensions.py").write_text("DIMENSIONS = [{'name': 'campaigns'}]\n")
    assert registry.dimensions(tmp_path) == [{"name": "campaigns"}]
    (tmp_path / "dimensions.py").write_text("DIMENSIONS = 3\n")
    with pytest.raises(DefinitionError, match=r"dimensions.py: must define DIMENSIONS = \[...\]"):
        registry.dimensions(tmp_path)


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("views/orders_by_shop_hourly.py", '("shop",)', '("store",)',
         r"views/orders_by_shop_hourly.py, line 5: view orders_by_shop_hourly: key 'store' "
         r"is not a field of stream orders"),
        ("views/orders_by_shop_hourly.py", '"sum", "items"', '"sum", "shop"',
         r"orders_by_shop_hourly.py, line 5: view orders_by_shop_hourly: measure 'items': "
         r"sum reads a field of type int or float; field 'shop' is string"),
        ("streams.py", '"amount", "float"', '"amount", "double"',
         r"streams.py, line 5: stream 'orders': field 'amount': unknown type 'double'"),
        ("streams.py", 'time_field="placed_at"', 'time_field="placed"',
         r"streams.py, line 5: stream 'orders': time_field 'placed' is not one of its fields"),
        ("streams.py", "STREAMS = [ORDERS]", "STREAMS = ORDERS",
         r"streams.py: must define STREAMS = \[...\] \(a list\), got Stream"),
        ("streams.py", "from lambdalab", "form lambdalab", r"streams.py, line 3: syntax error"),
    ],
)  # fmt: skip
def test_a_broken_declaration_names_the_file_the_line_and_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str, old: str, new: str, message: str
) -> None:
    folder = tmp_path / "shop"
    init_project(folder)
    path = folder / file
    path.write_text(path.read_text().replace(old, new))
    with pytest.raises(DefinitionError, match=message):
        for name, stream in project.load_streams(folder).items():
            monkeypatch.setitem(schema.STREAMS, name, stream)
        registry.load_views(folder)
