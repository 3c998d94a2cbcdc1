"""Deployed view definitions: the registry's replacement of a coded view (the lab's bad deploy)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.baddeploy import buggy, deploy_buggy, fix
from lab.report import code_lines
from lambdalab.errors import DefinitionError, NotFound
from lambdalab.settings import get_settings
from views.definition import ViewDef
from views.registry import all_views, coded_views, deploy, get_view


@pytest.fixture(autouse=True)
def deployed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "deployed"
    monkeypatch.setenv("LAMBDALAB_PATHS__DEPLOYED_DIR", str(folder))
    get_settings.cache_clear()
    yield folder
    get_settings.cache_clear()


def test_a_definition_survives_its_dict() -> None:
    for view in coded_views().values():
        assert ViewDef.from_dict(view.to_dict()) == view


def test_deploy_replaces_and_fix_restores() -> None:
    coded = get_view("pageviews_by_url_hourly")
    bad = deploy_buggy("pageviews_by_url_hourly")
    assert get_view("pageviews_by_url_hourly") == bad != coded
    assert [m.kind for m in bad.measures] == ["count", "max", "max"]
    assert all_views()["bytes_by_referrer_daily"] == coded_views()["bytes_by_referrer_daily"]
    deploy_buggy("pageviews_by_url_hourly")  # twice in a row: seen again, not a stale cache
    assert fix("pageviews_by_url_hourly")
    assert get_view("pageviews_by_url_hourly") == coded
    assert not fix("pageviews_by_url_hourly")


def test_a_broken_deployed_file_names_itself(deployed: Path) -> None:
    deployed.mkdir()
    (deployed / "pageviews_by_url_hourly.json").write_text('{"name": "pageviews_by_url_hourly"}')
    with pytest.raises(DefinitionError, match=r"pageviews_by_url_hourly\.json"):
        all_views()


def test_only_a_coded_view_can_be_replaced() -> None:
    view = coded_views()["pageviews_by_url_hourly"]
    with pytest.raises(NotFound, match="no view 'nope'"):
        deploy(ViewDef("nope", view.stream, view.keys, view.bucket_s, view.measures))


def test_the_bug_needs_a_min_measure() -> None:
    with pytest.raises(DefinitionError, match="no min measure"):
        buggy(coded_views()["bytes_by_referrer_daily"])


def test_code_lines_skip_docstrings_comments_and_blanks(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        '"""Doc.\n\nMore."""\n\n# comment\nx = 1\n\n\ndef f():\n    """D."""\n    return x\n'
    )
    assert code_lines(source) == 3
