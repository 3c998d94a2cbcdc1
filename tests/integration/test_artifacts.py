"""Fetching the stack's JVM artifacts with the real Maven (moved from the unit tests: it
runs ``mvn`` against Maven Central). The message for a missing Maven and the wording of a
failed run are unit-tested with fakes in tests/unit/test_stack.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import artifacts
from infra.artifacts import Dist, fetch
from lambdalab.errors import StackError


def test_failed_download_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "pom.xml"
    bad.write_text(
        artifacts.POM.read_text().replace("<trino.version>476", "<trino.version>0.0.404")
    )
    monkeypatch.setattr(artifacts, "POM", bad)
    with pytest.raises(
        StackError, match=r"fetching the 'trino' artifacts from Maven Central failed"
    ):
        fetch(Dist(tmp_path / "cache"), ("trino",))
