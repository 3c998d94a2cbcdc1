"""The Spark session of the batch layer, configured from settings only.

``spark.master`` decides where the work runs (``local[*]``, ``spark://…``, ``yarn``,
``k8s://…``); the Kafka connector jars fetched from Maven Central are passed through
``spark.jars``; HDFS is the default file system. Spark runs on the JDK 17.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from lambdalab.errors import ConfigError
from lambdalab.runtime import find_java17, spark_jars
from lambdalab.settings import Settings

LOG4J = Path(__file__).with_name("spark-log4j2.properties")
CLOSE_RETRY_MS = "dfs.client.block.write.locateFollowingBlock.initial.delay.ms"
CLOSE_RETRIES = "dfs.client.block.write.locateFollowingBlock.retries"

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_session(settings: Settings, app_name: str = "lambdalab") -> SparkSession:
    """A SparkSession for the configured master, with HDFS and the Kafka connector.

    Raises:
        ConfigError: the Kafka connector jars have not been fetched (run ``make deps``).
    """
    os.environ["JAVA_HOME"] = str(find_java17())
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", os.environ.get("PYSPARK_PYTHON", "python3"))
    from pyspark.sql import SparkSession

    jars = spark_jars(settings.paths.cache_dir)
    if not jars:
        msg = "spark-sql-kafka jars not fetched: run `make deps` (lambdalab stack fetch)"
        raise ConfigError(msg)
    sp = settings.spark
    builder = (
        SparkSession.builder.appName(app_name)
        .master(sp.master)
        .config("spark.jars", ",".join(jars))
        .config("spark.driver.memory", sp.driver_memory)
        .config("spark.executor.memory", sp.executor_memory)  # on a spark:// cluster
        .config("spark.driver.extraJavaOptions", f"-Dlog4j.configurationFile={LOG4J}")
        .config("spark.sql.shuffle.partitions", str(sp.shuffle_partitions))
        .config("spark.sql.adaptive.enabled", "true")  # coalesces small shuffles
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.hadoop.fs.defaultFS", settings.hdfs.namenode)
        .config("spark.hadoop.dfs.client.use.datanode.hostname", "true")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.sources.partitionOverwriteMode", "static")
        # Closing an HDFS file waits until the NameNode has the block: ask again after 20 ms,
        # not after the default 400 ms (paid by every small file a cycle writes), and up to
        # 10 times, not 5: the delay doubles each time, so a close under load still gets
        # ~20 s in all (12.4 s by default) instead of 0.6 s before it fails.
        .config(f"spark.hadoop.{CLOSE_RETRY_MS}", "20")
        .config(f"spark.hadoop.{CLOSE_RETRIES}", "10")
        # Nothing reads _SUCCESS (a version is published by its rename): one file less.
        .config("spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
    )
    if settings.hdfs.replication is not None:  # e.g. 2 on the cluster profile's 2 DataNodes
        builder = builder.config("spark.hadoop.dfs.replication", str(settings.hdfs.replication))
    for key, value in sp.conf.items():  # the deployment's own properties win
        builder = builder.config(key, value)
    os.environ["HADOOP_USER_NAME"] = settings.hdfs.user
    return builder.getOrCreate()


def start_in_background(settings: Settings, app_name: str = "lambdalab") -> Future[SparkSession]:
    """Start the session in a thread, so a batch cycle lands while the JVM starts.

    Starting the JVM takes seconds (most of a small cycle's fixed cost); the session is
    ready, or nearly, by the time the landing and the planning are done. A thread is
    enough: the work is in the JVM, not in Python.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spark-start")
    future = pool.submit(spark_session, settings, app_name)
    pool.shutdown(wait=False)
    return future
