"""The compose cluster's files checked by running real programs (moved from the unit tests,
which start no process): Debian's ``docker-compose config`` reads docker-compose.yml, and the
apps' healthcheck script finds a real process by its command line. The static checks of the
same files are in tests/unit/test_compose.py."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType

import pytest

from lambdalab.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
HEALTHCHECK = ROOT / "infra" / "compose" / "healthcheck.py"


def _healthcheck_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compose_healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docker_compose_config_accepts_the_file() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose not found: `make deps` installs it (Debian package)")
    done = subprocess.run(
        [binary, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_app_healthcheck_sees_its_process_live_and_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hc = _healthcheck_module()
    token = uuid.uuid4().hex  # no other process on this machine runs with it
    monkeypatch.setitem(hc.PROCESSES, "batch", ("batch", "loop", token))
    monkeypatch.setattr(hc, "BACKENDS", {"batch": []})
    monkeypatch.setattr(hc, "load_settings", Settings)
    fake = tmp_path / "lambdalab"
    fake.symlink_to(sys.executable)
    script = "import time; time.sleep(60)"
    proc = subprocess.Popen([str(fake), "-c", script, "batch", "loop", token])
    try:
        assert hc.main(["healthcheck.py", "batch"]) == 0
        assert f"pid {proc.pid} runs lambdalab batch loop" in capsys.readouterr().out
    finally:
        proc.kill()
        proc.wait()
    assert hc.main(["healthcheck.py", "batch"]) == 1
    assert f"no running `lambdalab batch loop {token}` process" in capsys.readouterr().err
    assert hc.main(["healthcheck.py", "nope"]) == 2
