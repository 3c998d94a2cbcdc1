"""Typed settings for every backend of the Lambda architecture.

One section per backend. Defaults point at the local stack on loopback; the compose
cluster and real clusters change settings only (environment variables such as
``LAMBDALAB_KAFKA__BOOTSTRAP_SERVERS`` or a ``.env`` file), never code. Library code takes
a ``Settings`` argument; only entry points call :func:`get_settings`.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lambdalab.errors import ConfigError

_NAMESPACE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


class KafkaSettings(BaseModel):
    """Where the log lives and how its topics are made."""

    bootstrap_servers: str = "127.0.0.1:9092"
    controller_port: int = Field(9093, ge=1, le=65535)
    partitions: int = Field(4, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1)
    min_insync_replicas: int | None = Field(
        None, ge=1, description="topics' min.insync.replicas (None: the brokers' default)"
    )
    retention_ms: int = Field(-1, description="-1 keeps the log forever (Kappa replay source)")

    @property
    def port(self) -> int:
        """The broker port of the first bootstrap server (the stack's port checks use it)."""
        return int(self.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])


class HdfsSettings(BaseModel):
    """The HDFS NameNode (RPC for Spark/Trino, WebHDFS for Python) and the DataNode ports."""

    namenode: str = "hdfs://127.0.0.1:8020"
    webhdfs_url: str = "http://127.0.0.1:9870"
    user: str = "lambdalab"
    datanode_host: str = "127.0.0.1"
    datanode_port: int = 9866
    datanode_http_port: int = 9864
    datanode_ipc_port: int = 9867
    replication: int | None = Field(
        None, ge=1, description="dfs.replication of the files Spark writes (None: the cluster's)"
    )

    @field_validator("namenode")
    @classmethod
    def _hdfs_scheme(cls, value: str) -> str:
        if not value.startswith("hdfs://"):
            msg = f"must start with hdfs://, got {value!r}"
            raise ValueError(msg)
        return value.rstrip("/")

    @property
    def rpc_port(self) -> int:
        """The NameNode RPC port of ``namenode`` (Spark and Trino read through it)."""
        return int(self.namenode.rsplit(":", 1)[1])

    @property
    def http_port(self) -> int:
        """The NameNode HTTP port of ``webhdfs_url`` (Python reads and writes through it)."""
        return int(self.webhdfs_url.rsplit(":", 1)[1].split("/")[0])


class RedisSettings(BaseModel):
    """The speed layer's store."""

    url: str = "redis://127.0.0.1:6379/0"
    # True: ``url`` is a seed node of a Redis Cluster (the speed layer's keys are laid out
    # so that each of its transactions stays in one hash slot: ``lambdalab.paths``).
    cluster: bool = False

    @property
    def port(self) -> int:
        """The port of ``url`` (6379 when the URL names none)."""
        tail = self.url.split("://", 1)[1].split("/", 1)[0]
        return int(tail.rsplit(":", 1)[1]) if ":" in tail else 6379


class TrinoSettings(BaseModel):
    """The SQL engine over the master dataset and the batch views."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    catalog: str = "hive"
    user: str = "lambdalab"
    heap: str = "2G"


class SparkSettings(BaseModel):
    """Spark for the batch layer: a master URL is all that changes on a cluster."""

    master: str = "local[*]"
    driver_memory: str = "2g"
    executor_memory: str = Field("1g", description="per executor on a spark:// cluster")
    conf: dict[str, str] = Field(
        default_factory=dict,
        description="more Spark properties, applied last (JSON in LAMBDALAB_SPARK__CONF), "
        "e.g. dynamic allocation so long-lived batch loops share a standalone cluster",
    )
    shuffle_partitions: int = Field(4, ge=1)


class ApiSettings(BaseModel):
    """The serving layer's HTTP service."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    write_keys: list[str] = ["dev-write-key"]
    read_keys: list[str] = ["dev-read-key", "dev-write-key"]  # scopes are explicit: the dev
    # write key is listed here too, so it may also read
    max_body_bytes: int = Field(5_000_000, ge=1)
    max_events_per_request: int = Field(10_000, ge=1)
    availability: Literal["consistent", "available"] = "consistent"
    sql_row_limit: int = Field(1000, ge=1)
    sql_timeout_s: float = Field(30.0, gt=0)
    sql_memory: str = Field("1GB", description="DuckDB memory limit of one POST /sql/merged")
    local_versions_kept: int = Field(4, ge=2, description="local batch version copies per view")
    history_interval_s: float = Field(
        5.0, ge=0, description="pipeline history sampling period per API process (0: off)"
    )
    history_points: int = Field(
        180, ge=2, le=100_000, description="samples kept (180 at 5 s: the last 15 minutes)"
    )
    trino_user: str = Field(
        "lambdalab_reader",
        description="Trino user of /sql: read-only in Trino itself (infra/conf/trino/rules.json)",
    )


class BatchSettings(BaseModel):
    """The time boundary and the batch cycle."""

    window_s: int = Field(60, ge=1, description="ingest window width W")
    clock_skew_s: int = Field(5, ge=0, description="allowed skew between broker and batch clocks")
    keep_versions: int = Field(3, ge=2)
    loop_every_s: int = Field(300, ge=1, description="batch loop period of the supervised service")
    landing: Literal["self", "wait"] = Field(
        "self",
        description=(
            "how a cycle gets the log landed up to its end offsets: land itself (fenced in "
            "HDFS, so any number of landers is safe), or wait for the one continuous lander"
        ),
    )
    landing_wait_s: float = Field(
        300.0, gt=0, description="how long a cycle waits for the lander (landing=wait)"
    )
    smtp_host: str | None = None
    smtp_port: int = 25
    notify_to: list[str] = []
    notify_from: str = "lambdalab@localhost"


class LuigiSettings(BaseModel):
    """The batch layer's Luigi scheduler: the central one (``luigid``) unless told otherwise."""

    scheduler_url: str = Field(
        "http://127.0.0.1:8082",
        description="luigid: coordinates every batch loop, keeps task history; serves the UI",
    )
    ui_url: str | None = Field(
        None, description="the Luigi UI as a browser reaches it (default: scheduler_url)"
    )
    local_scheduler: bool = Field(
        False, description="Luigi's in-process scheduler instead: one loop only, no UI"
    )

    @field_validator("scheduler_url", "ui_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            msg = f"must start with http:// or https://, got {value!r}"
            raise ValueError(msg)
        return value.rstrip("/") if value else value

    @property
    def host(self) -> str:
        """The host of ``scheduler_url`` (luigid listens there on the local stack)."""
        return self.scheduler_url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        """The port of ``scheduler_url`` (8082, Luigi's own default, when it names none)."""
        netloc = self.scheduler_url.split("://", 1)[1].split("/", 1)[0]
        return int(netloc.rsplit(":", 1)[1]) if ":" in netloc else 8082

    @property
    def ui(self) -> str:
        """Where people open the Luigi UI (the dashboard links to it)."""
        return self.ui_url or self.scheduler_url


class PathSettings(BaseModel):
    """Local directories: the stack's state (data, logs) and the download cache."""

    model_config = ConfigDict(validate_default=True)

    state_dir: Path = Path(".lambdalab")
    cache_dir: Path = Path("~/.cache/lambdalab").expanduser()
    local_versions_dir: Path = Field(
        Path("~/.cache/lambdalab/versions").expanduser(),
        description="this host's local copies of batch versions, shared by its API workers",
    )
    deployed_dir: Path | None = Field(
        None,
        description="deployed view definitions (`lambdalab lab deploy`); {state_dir}/deployed",
    )

    @field_validator("state_dir", "cache_dir", "local_versions_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def deployed(self) -> Path:
        """The folder of deployed view definitions (see ``views.registry``)."""
        if self.deployed_dir is not None:
            return self.deployed_dir.expanduser().resolve()
        return self.state_dir / "deployed"


class Settings(BaseSettings):
    """All settings of lambda-lab, from ``LAMBDALAB_*`` environment variables or ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix="LAMBDALAB_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    namespace: str = Field(
        "lab",
        description="prefix of topics, HDFS root, Redis keys and Trino schema; tests use their own",
    )
    demo: bool = Field(
        False, description="demo mode: the development API keys (dev-write-key, ...) work"
    )
    default_stream: str | None = Field(
        None,
        description="the stream of POST /events, `ingest file` and `speed run` when none is "
        "named; unset: the project's first declared stream",
    )
    project: Path | None = Field(
        None,
        description=(
            "the project directory: streams.py, views/*.py, dimensions.py "
            "(docs/lab/adding-a-stream.md); unset: the source tree's examples/pageviews"
        ),
    )
    kafka: KafkaSettings = KafkaSettings()
    hdfs: HdfsSettings = HdfsSettings()
    redis: RedisSettings = RedisSettings()
    trino: TrinoSettings = TrinoSettings()
    spark: SparkSettings = SparkSettings()
    api: ApiSettings = ApiSettings()
    batch: BatchSettings = BatchSettings()
    luigi: LuigiSettings = LuigiSettings()
    paths: PathSettings = PathSettings()

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _NAMESPACE.match(value):
            msg = f"must match {_NAMESPACE.pattern} (lowercase, used in topic and table names)"
            raise ValueError(msg)
        return value

    def topic_for(self, stream: str) -> str:
        """The Kafka topic of a declared stream: ``{ns}.events.{stream}``."""
        return f"{self.namespace}.events.{stream}"

    @property
    def dlq_topic(self) -> str:
        """The namespace's dead-letter topic, shared by every stream (compacted)."""
        return f"{self.namespace}.events.dlq"

    @property
    def hdfs_root(self) -> str:
        """The namespace's HDFS root: master dataset and batch views live below it."""
        return f"/lambdalab/{self.namespace}"

    @property
    def redis_prefix(self) -> str:
        """The prefix of every Redis key of the namespace (see ``lambdalab.paths.RedisKeys``)."""
        return f"ll:{self.namespace}:"

    @property
    def trino_schema(self) -> str:
        """The Trino schema holding the namespace's tables: the namespace itself."""
        return self.namespace


PROFILES = Path(__file__).with_name("profiles")


def profile_file(name: str) -> Path:
    """The settings file of a named profile (``lambdalab/profiles/{name}.env``).

    Raises:
        ConfigError: no such profile, naming the ones there are.
    """
    path = PROFILES / f"{name}.env"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILES.glob("*.env"))
        msg = f"LAMBDALAB_PROFILE: unknown profile {name!r} (known: {', '.join(known)})"
        raise ConfigError(msg)
    return path


def load_settings(*, profile: str | None = None, **overrides: object) -> Settings:
    """Build settings, turning a validation error into a ConfigError naming each field.

    ``profile`` (default: the ``LAMBDALAB_PROFILE`` environment variable) names a settings
    file under ``lambdalab/profiles``, e.g. ``cluster`` for the multi-node stack on
    loopback. It is read after ``.env`` (so it wins over it); environment variables still
    win over both.
    """
    name = profile or os.environ.get("LAMBDALAB_PROFILE") or None
    files: tuple[Path | str, ...] = (".env",) if name is None else (".env", profile_file(name))
    try:
        return Settings(_env_file=files, **overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        msg = f"invalid settings: {problems}"
        raise ConfigError(msg) from exc


@lru_cache
def get_settings() -> Settings:
    """The settings of this process, read once at an entry point."""
    return load_settings()
