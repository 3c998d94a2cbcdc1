"""The local stack's plumbing: supervisord config, port conflicts, fetch errors.

No service is started here and no JDK or Maven is run (their probes are faked); these
check the messages an operator sees. Maven's real failure: tests/integration/test_artifacts.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra import artifacts, services
from infra.artifacts import Dist, fetch
from infra.stack import Stack
from lambdalab.errors import StackError
from lambdalab.settings import Settings, load_settings
from tests.unit.conftest import Loopback


@pytest.fixture
def tmp_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings of a state dir of its own, with the JDKs found without running ``java``."""
    monkeypatch.setattr(services, "find_java17", lambda: tmp_path / "jdk17")
    monkeypatch.setattr(services, "find_java_for_trino", lambda: tmp_path / "jdk24")
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


def test_taken_port_gives_a_clear_message(tmp_settings: Settings, loopback: Loopback) -> None:
    port = loopback.listening()
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


def test_a_failed_maven_run_is_reported_with_its_last_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[list[str]] = []

    def mvn(cmd: list[str], **_kw: Any) -> subprocess.CompletedProcess[str]:
        ran.append(cmd)
        out = "".join(f"[INFO] line {i}\n" for i in range(30))
        err = "[ERROR] Could not find artifact io.trino:trino-server:tar.gz:0.0.404"
        return subprocess.CompletedProcess(cmd, 1, stdout=out, stderr=err)

    monkeypatch.setattr(artifacts.shutil, "which", lambda _name: "/usr/bin/mvn")
    monkeypatch.setattr(artifacts.subprocess, "run", mvn)
    dist = Dist(tmp_path / "cache")
    with pytest.raises(StackError) as failed:
        fetch(dist, ("trino",))
    text = str(failed.value)
    assert "fetching the 'trino' artifacts from Maven Central failed (mvn exit 1)" in text
    assert "trino-server:tar.gz:0.0.404" in text and "[INFO] line 16" in text
    assert "[INFO] line 15" not in text  # only Maven's last 15 lines
    assert ran[0][:2] == ["/usr/bin/mvn", "-B"] and "trino" in ran[0]
    assert not dist.stamp("trino").exists()
