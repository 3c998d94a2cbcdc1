"""The local stack's plumbing: supervisord config, port conflicts, fetch errors.

No service is started here; these check the messages an operator sees.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from infra import artifacts
from infra.artifacts import Dist, fetch
from infra.stack import Stack
from lambdalab.errors import StackError
from lambdalab.settings import Settings, load_settings


@pytest.fixture
def tmp_settings(tmp_path: Path) -> Settings:
    return load_settings().model_copy(
        update={"paths": load_settings().paths.model_copy(update={"state_dir": tmp_path})}
    )


def test_supervisord_config_has_one_log_per_service(tmp_settings: Settings) -> None:
    stack = Stack(tmp_settings)
    services = stack.services(with_platform=True)
    stack.supervisor.render(services)
    conf = stack.supervisor.conf_path.read_text()
    for name in (
        "kafka",
        "namenode",
        "datanode",
        "redis",
        "trino",
        "speed-pageviews",
        "api",
        "archiver",
    ):
        assert f"[program:{name}]" in conf
        assert f"stdout_logfile={tmp_settings.paths.state_dir}/logs/{name}.log" in conf
    assert "[program:spark]" not in conf  # in-process, nothing to supervise
    assert f"file={tmp_settings.paths.state_dir}/supervisor.sock" in conf


def test_taken_port_gives_a_clear_message(tmp_settings: Settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        redis = tmp_settings.redis.model_copy(update={"url": f"redis://127.0.0.1:{port}/0"})
        stack = Stack(tmp_settings.model_copy(update={"redis": redis}))
        services = [s for s in stack.services() if s.name == "redis"]
        with pytest.raises(StackError, match=rf"port {port} \(redis\) is taken"):
            stack._check_ports(services)


def test_fetch_is_a_noop_once_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = Dist(tmp_path)
    dist.root.mkdir(parents=True)
    for profile in artifacts.PROFILES:
        dist.stamp(profile).touch()
    monkeypatch.setattr(artifacts.shutil, "which", lambda _name: None)  # mvn must not be needed
    assert fetch(dist) == []


def test_missing_maven_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts.shutil, "which", lambda _name: None)
    with pytest.raises(StackError, match=r"apt-get install maven"):
        fetch(Dist(tmp_path))


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
