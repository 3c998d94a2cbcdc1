"""luigid in the local stack and the batch layer's choice of Luigi scheduler.

The service definition (command, port, state and history under the state dir) and what a
batch cycle does when the configured luigid is down: fail naming its URL and `make up`,
never fall back silently. The real luigid runs in tests/integration/test_luigid.py.
"""

from __future__ import annotations

from pathlib import Path

import luigi
import luigi.configuration
import pytest

from batch import scheduler
from infra import health, services
from infra.services import Layout
from infra.stack import Stack
from lambdalab.errors import BatchError, ConfigError
from lambdalab.settings import Settings, load_settings
from tests.unit.conftest import Loopback


@pytest.fixture
def tmp_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings of a state dir of its own, with the JDKs found without running ``java``."""
    monkeypatch.setattr(services, "find_java17", lambda: tmp_path / "jdk17")
    monkeypatch.setattr(services, "find_java_for_trino", lambda: tmp_path / "jdk24")
    paths = load_settings().paths.model_copy(update={"state_dir": tmp_path})
    return load_settings().model_copy(update={"paths": paths})


def with_luigi(settings: Settings, **luigi_fields: object) -> Settings:
    return settings.model_copy(update={"luigi": settings.luigi.model_copy(update=luigi_fields)})


def test_luigi_settings_default_to_a_loopback_luigid(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.luigi.scheduler_url == "http://127.0.0.1:8082"
    assert (s.luigi.host, s.luigi.port, s.luigi.ui, s.luigi.local_scheduler) == (
        "127.0.0.1",
        8082,
        "http://127.0.0.1:8082",
        False,
    )
    monkeypatch.setenv("LAMBDALAB_LUIGI__SCHEDULER_URL", "http://luigid:8082/")
    monkeypatch.setenv("LAMBDALAB_LUIGI__UI_URL", "http://127.0.0.1:18082")
    s = load_settings()
    assert (s.luigi.scheduler_url, s.luigi.host, s.luigi.ui) == (
        "http://luigid:8082",
        "luigid",
        "http://127.0.0.1:18082",
    )
    monkeypatch.setenv("LAMBDALAB_LUIGI__SCHEDULER_URL", "luigid:8082")
    with pytest.raises(ConfigError, match=r"luigi\.scheduler_url: .*http://"):
        load_settings()


def test_luigid_is_a_supervised_service_with_its_state_under_the_state_dir(
    tmp_settings: Settings,
) -> None:
    settings = with_luigi(tmp_settings, scheduler_url="http://127.0.0.1:18082")
    svc = services.luigid(settings, Layout(settings))
    assert svc.supervised and svc.ports == [18082]
    assert svc.command[svc.command.index("--port") + 1] == "18082"
    assert svc.command[svc.command.index("--address") + 1] == "127.0.0.1"
    data = tmp_settings.paths.state_dir / "data" / "luigid"
    assert svc.env["LAMBDALAB_LUIGID_DATA"] == str(data) and data.is_dir()
    config = luigi.configuration.LuigiConfigParser()  # as luigid reads it, env interpolated
    config.read([svc.env["LUIGI_CONFIG_PATH"]])
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LAMBDALAB_LUIGID_DATA", svc.env["LAMBDALAB_LUIGID_DATA"])
        assert config.get("scheduler", "state_path") == f"{data}/state.pickle"
        assert config.getboolean("scheduler", "record_task_history")
        assert config.get("task_history", "db_connection") == f"sqlite:///{data}/task-history.db"
    stack = Stack(settings)
    names = [s.name for s in stack.services()]
    assert "luigid" in names and names.index("luigid") < names.index("spark")
    stack.supervisor.render(stack.services())
    rendered = stack.supervisor.conf_path.read_text()
    assert "[program:luigid]" in rendered
    assert f'LUIGI_CONFIG_PATH="{svc.env["LUIGI_CONFIG_PATH"]}"' in rendered


def test_a_down_luigid_is_unhealthy_naming_its_url(
    tmp_settings: Settings, loopback: Loopback
) -> None:
    settings = with_luigi(tmp_settings, scheduler_url=f"http://127.0.0.1:{loopback.refusing()}")
    with pytest.raises(BatchError, match=r"127\.0\.0\.1:\d+ does not answer.*`make up`"):
        health.check_for("luigid")(settings)


class Marked(luigi.Task):
    """Writes one file: whether it ran is whether the file exists."""

    path = luigi.Parameter()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(self.path))

    def run(self) -> None:
        with self.output().open("w") as out:
            out.write("ran")


def test_a_configured_luigid_that_is_down_fails_the_run_and_runs_nothing(
    tmp_settings: Settings, loopback: Loopback
) -> None:
    url = f"http://127.0.0.1:{loopback.refusing()}"
    task = Marked(path=str(tmp_settings.paths.state_dir / "out"))
    with pytest.raises(BatchError) as err:
        scheduler.build([task], with_luigi(tmp_settings, scheduler_url=url))
    assert url in str(err.value) and "`make up`" in str(err.value)
    assert "LAMBDALAB_LUIGI__LOCAL_SCHEDULER=true" in str(err.value)
    assert not task.complete(), "no silent fall back to the in-process scheduler"


def test_the_in_process_scheduler_only_when_told(tmp_settings: Settings) -> None:
    task = Marked(path=str(tmp_settings.paths.state_dir / "out"))
    settings = with_luigi(tmp_settings, scheduler_url="http://127.0.0.1:1", local_scheduler=True)
    result = scheduler.build([task], settings)
    assert scheduler.outcome(result, [task], settings)["ok"]
    assert task.complete()


def test_the_dashboard_links_to_the_luigi_ui() -> None:
    from fastapi.testclient import TestClient

    from serving.app import create_app

    ui = "http://127.0.0.1:18082/?a=1&b=2"  # escaped into the attribute
    app = create_app(with_luigi(load_settings(), ui_url=ui))
    page = TestClient(app).get("/dashboard")
    assert page.status_code == 200
    assert '<a id="luigi-ui" href="http://127.0.0.1:18082/?a=1&amp;b=2"' in page.text
    assert "{{" not in page.text
    default = TestClient(create_app(load_settings())).get("/dashboard").text
    assert 'href="http://127.0.0.1:8082"' in default


def test_a_cycle_checks_luigid_before_it_lands_anything(
    tmp_settings: Settings, loopback: Loopback
) -> None:
    from batch.tasks import run_cycle

    settings = with_luigi(tmp_settings, scheduler_url=f"http://127.0.0.1:{loopback.refusing()}")
    with pytest.raises(BatchError, match=r"does not answer.*`make up`"):
        run_cycle(settings)  # the guard fails the test on any Kafka or HDFS connection
