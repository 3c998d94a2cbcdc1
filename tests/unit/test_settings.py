"""Settings: defaults point at the local stack, bad values fail naming the field."""

from __future__ import annotations

import pytest

from lambdalab.errors import ConfigError
from lambdalab.settings import load_settings


def test_defaults_point_at_local_stack() -> None:
    s = load_settings()
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert (s.hdfs.rpc_port, s.hdfs.http_port, s.redis.port, s.trino.port) == (
        8020,
        9870,
        6379,
        8080,
    )
    assert s.spark.master == "local[*]"


def test_nested_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDALAB_KAFKA__BOOTSTRAP_SERVERS", "kafka:29092")
    monkeypatch.setenv("LAMBDALAB_SPARK__MASTER", "spark://master:7077")
    monkeypatch.setenv("LAMBDALAB_NAMESPACE", "prod")
    s = load_settings()
    assert s.kafka.bootstrap_servers == "kafka:29092"
    assert s.kafka.port == 29092
    assert s.spark.master == "spark://master:7077"
    assert s.topic_for("pageviews") == "prod.events.pageviews"
    assert s.redis_prefix == "ll:prod:"


@pytest.mark.parametrize(
    ("var", "value", "field"),
    [
        ("LAMBDALAB_KAFKA__PARTITIONS", "0", "kafka.partitions"),
        ("LAMBDALAB_HDFS__NAMENODE", "http://nn:8020", "hdfs.namenode"),
        ("LAMBDALAB_NAMESPACE", "Bad Name", "namespace"),
        ("LAMBDALAB_API__AVAILABILITY", "sometimes", "api.availability"),
        ("LAMBDALAB_BATCH__WINDOW_S", "abc", "batch.window_s"),
    ],
)
def test_invalid_settings_name_the_field(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, field: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=rf"invalid settings: .*{field}"):
        load_settings()
