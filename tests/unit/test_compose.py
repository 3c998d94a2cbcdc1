"""Static checks of the docker-compose cluster: the same stack as the local one, as containers.

No Docker engine runs here and no program is started, so the compose file is read and
checked against the local stack's own sources of truth: the settings defaults (ports,
field names), the shared config files under ``infra/conf`` (mounts, the ``${lambdalab.*}``
and ``${ENV:...}`` placeholders they need), and the packages pyproject.toml installs.
Debian's ``docker-compose config`` and the healthcheck against a live process run in
tests/integration/test_compose_tools.py.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from infra.artifacts import CONF
from lambdalab.settings import (
    ApiSettings,
    HdfsSettings,
    KafkaSettings,
    RedisSettings,
    TrinoSettings,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "infra" / "Dockerfile"
HADOOP_ENV = ROOT / "infra" / "compose" / "hadoop.env"
HEALTHCHECK = ROOT / "infra" / "compose" / "healthcheck.py"

BACKENDS = {"kafka", "namenode", "datanode", "redis", "trino"}
APPS = {"api", "speed", "archiver", "batch"}
# What each platform service cannot work without (its layer of the architecture).
NEEDS = {
    "archiver": {"kafka", "namenode", "datanode"},
    "speed": {"kafka", "redis"},
    "batch": {"namenode", "datanode", "trino"},
    "api": {"kafka", "redis", "namenode", "datanode", "trino"},
}
# Config files the local stack reads (infra/services.py), by the service that mounts them.
SHARED_CONF = {
    "kafka": ["kafka/server.properties"],
    "namenode": ["hadoop/core-site.xml", "hadoop/hdfs-site.xml", "hadoop/log4j.properties"],
    "datanode": ["hadoop/core-site.xml", "hadoop/hdfs-site.xml", "hadoop/log4j.properties"],
    "redis": ["redis/redis.conf"],
    "trino": [str(p.relative_to(CONF)) for p in sorted((CONF / "trino").rglob("*")) if p.is_file()],
}
# Values of server.properties that the local stack overrides per host (infra/services.py).
# LAMBDALAB_* variables that are no settings field: read by lambdalab.runtime.find_java17.
NOT_SETTINGS = {"LAMBDALAB_JAVA17_HOME"}
KAFKA_HOST_KEYS = {"log.dirs", "listeners", "advertised.listeners", "controller.quorum.voters"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _env_file(path: Path) -> dict[str, str]:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return dict(ln.split("=", 1) for ln in lines)


def _bind_mounts(service: dict[str, Any]) -> dict[Path, str]:
    mounts = {}
    for spec in service.get("volumes", []):
        source, target = spec.split(":")[:2]
        if source.startswith("."):
            mounts[(ROOT / source).resolve()] = target
    return mounts


def test_the_cluster_has_the_stack_and_the_platform(services: dict[str, Any]) -> None:
    assert set(services) == BACKENDS | APPS
    images = {name: services[name]["image"].split(":")[0] for name in BACKENDS}
    assert images == {
        "kafka": "apache/kafka",
        "namenode": "apache/hadoop",
        "datanode": "apache/hadoop",
        "redis": "redis",
        "trino": "trinodb/trino",
    }
    for name in APPS:
        assert services[name]["build"]["dockerfile"] == "infra/Dockerfile"
        assert services[name]["command"][0] == "lambdalab"


def test_every_service_has_a_real_healthcheck(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        check = svc.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable"), name
        test = check["test"]
        assert test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1, f"{name}: {test}"


def test_depends_on_waits_for_healthy_services(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on must name conditions"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert spec == {"condition": "service_healthy"}, f"{name} -> {dep}: {spec}"
    for app, needed in NEEDS.items():
        assert needed <= set(services[app]["depends_on"]), app


def test_published_ports_are_the_local_stacks(services: dict[str, Any]) -> None:
    kafka, hdfs, redis = KafkaSettings(), HdfsSettings(), RedisSettings()
    expected = {
        "kafka": {kafka.port},
        "namenode": {hdfs.rpc_port, hdfs.http_port},
        "datanode": {hdfs.datanode_port, hdfs.datanode_http_port, hdfs.datanode_ipc_port},
        "redis": {redis.port},
        "trino": {TrinoSettings().port},
        "api": {ApiSettings().port},
    }
    published: dict[str, set[int]] = {}
    for name, svc in services.items():
        for spec in svc.get("ports", []):
            host, container = (int(p) for p in str(spec).split(":")[-2:])
            assert host == container, f"{name}: {spec} (same port inside and out)"
            published.setdefault(name, set()).add(host)
    assert published == expected
    assert {6379, 8020, 8000, 8080, 9092, 9870} <= set().union(*published.values())


def test_mounted_config_is_the_local_stacks(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for source in _bind_mounts(svc):
            assert source.is_file(), f"{name} mounts missing {source}"
            assert source.is_relative_to(CONF), f"{name} mounts {source}, not infra/conf"
    for name, files in SHARED_CONF.items():
        mounted = {p.relative_to(CONF).as_posix() for p in _bind_mounts(services[name])}
        assert mounted == set(files), name


def test_hadoop_gets_every_property_its_xml_needs(services: dict[str, Any]) -> None:
    needed = set()
    for xml in (CONF / "hadoop").glob("*-site.xml"):
        needed |= set(re.findall(r"\$\{(lambdalab\.[a-z.]+)\}", xml.read_text()))
    assert needed, "the shared hadoop xml no longer uses ${lambdalab.*}"
    opts = _env_file(HADOOP_ENV)["HADOOP_OPTS"]
    given = dict(re.findall(r"-D(lambdalab\.[a-z.]+)=(\S+)", opts))
    assert set(given) == needed
    assert given["lambdalab.hdfs.host"] == "namenode"
    assert given["lambdalab.datanode.host"] == "datanode"
    for name in ("namenode", "datanode"):
        assert services[name]["env_file"] in (
            "infra/compose/hadoop.env",
            ["infra/compose/hadoop.env"],
        )


def test_trino_gets_every_env_its_config_needs(services: dict[str, Any]) -> None:
    needed = set()
    for path in (CONF / "trino").rglob("*.properties"):
        needed |= set(re.findall(r"\$\{ENV:([A-Z0-9_]+)\}", path.read_text()))
    env = _env(services["trino"])
    assert needed <= set(env), needed - set(env)
    assert env["LAMBDALAB_TRINO_PLUGIN_DIR"] == "/usr/lib/trino/plugin"
    assert env["LAMBDALAB_TRINO_PORT"] == str(TrinoSettings().port)
    assert env["LAMBDALAB_TRINO_WAREHOUSE"].startswith("hdfs://namenode:")


def _kafka_key(env_name: str) -> str:
    """The apache/kafka image's rule: ``___`` -> ``-``, ``__`` -> ``_``, ``_`` -> ``.``."""
    body = env_name.removeprefix("KAFKA_").lower()
    return (
        body.replace("___", "\0").replace("__", "\1").replace("_", ".").translate({0: "-", 1: "_"})
    )


def test_kafka_env_overrides_known_properties(services: dict[str, Any]) -> None:
    text = (CONF / "kafka" / "server.properties").read_text()
    keys = {ln.split("=", 1)[0] for ln in text.splitlines() if "=" in ln and ln[0] != "#"}
    env = _env(services["kafka"])
    overridden = {_kafka_key(k) for k in env if k.startswith("KAFKA_")}
    assert overridden <= keys | KAFKA_HOST_KEYS, overridden - keys - KAFKA_HOST_KEYS
    assert overridden >= KAFKA_HOST_KEYS
    assert "CLUSTER_ID" in env
    targets = _bind_mounts(services["kafka"]).values()
    assert "/mnt/shared/config/server.properties" in targets


def _field(settings: BaseModel, env_name: str) -> Any:
    value: Any = settings
    for part in env_name.removeprefix("LAMBDALAB_").lower().split("__"):
        assert part in type(value).model_fields, f"{env_name}: no settings field {part!r}"
        value = getattr(value, part)
    return value


def _dockerfile_env() -> dict[str, str]:
    """The image's LAMBDALAB_* settings (minus the JDK path, which infra.artifacts reads)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    pairs = dict(re.findall(r"\b(LAMBDALAB_[A-Z0-9_]+)=(\S+)", text))
    for name in NOT_SETTINGS:
        assert name in (ROOT / "lambdalab" / "runtime.py").read_text(), name
        pairs.pop(name, None)
    return pairs


def test_lambdalab_env_are_settings_fields(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file of the developer
    envs = [_env(services[app]) for app in sorted(APPS)] + [_dockerfile_env()]
    for env in envs:
        settings_env = {k: v for k, v in env.items() if k.startswith("LAMBDALAB_")}
        assert settings_env
        with monkeypatch.context() as m:
            for name, value in settings_env.items():
                m.setenv(name, value)
            settings = load_settings()
            for name, value in settings_env.items():
                got = _field(settings, name)
                want = Path(value) if isinstance(got, Path) else type(got)(value)
                assert got == want, f"{name}={value!r} gave {got!r}"


def test_platform_settings_point_at_compose_services(services: dict[str, Any]) -> None:
    env = _env(services["api"])
    assert {_env(services[app])["LAMBDALAB_NAMESPACE"] for app in APPS} == {"lab"}
    assert all(_env(services[app]) == env for app in APPS), "one settings block for all"
    hosts = {
        "LAMBDALAB_KAFKA__BOOTSTRAP_SERVERS": env["LAMBDALAB_KAFKA__BOOTSTRAP_SERVERS"],
        "LAMBDALAB_HDFS__NAMENODE": env["LAMBDALAB_HDFS__NAMENODE"],
        "LAMBDALAB_HDFS__WEBHDFS_URL": env["LAMBDALAB_HDFS__WEBHDFS_URL"],
        "LAMBDALAB_REDIS__URL": env["LAMBDALAB_REDIS__URL"],
    }
    for name, url in hosts.items():
        host = url.split("://")[-1].split("/")[0].rsplit(":", 1)[0]
        assert host in services, f"{name}={url}: {host} is no compose service"
    assert env["LAMBDALAB_TRINO__HOST"] in services
    assert env["LAMBDALAB_HDFS__DATANODE_HOST"] in services
    advertised = _env(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    assert env["LAMBDALAB_KAFKA__BOOTSTRAP_SERVERS"] in advertised


def test_dockerfile_installs_the_project() -> None:
    text = DOCKERFILE.read_text()
    joined = text.replace("\\\n", " ")
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"apt-get install [^&]*openjdk-17", joined)
    copied = {src for line in re.findall(r"^COPY (.+)$", text, re.M) for src in line.split()[:-1]}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert packages | {"pyproject.toml", "README.md"} <= copied, packages - copied
    assert re.search(r"^RUN pip install \.(\s|$)", text, re.M)
    assert "'spark-kafka'" in joined, "the Kafka connector jars for spark.jars"


def _healthcheck_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compose_healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_app_healthchecks_watch_the_commands_compose_runs(services: dict[str, Any]) -> None:
    hc = _healthcheck_module()
    assert set(hc.PROCESSES) == APPS
    assert (
        "COPY infra/compose/healthcheck.py /opt/lambdalab/healthcheck.py" in DOCKERFILE.read_text()
    )
    for app in APPS:
        command = services[app]["command"]
        assert hc._contains(command, hc.PROCESSES[app]), f"{app}: {command}"
        assert services[app]["healthcheck"]["test"][-2:] == ["/opt/lambdalab/healthcheck.py", app]
