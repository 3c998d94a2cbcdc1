"""The ingest CLI as a user runs it: ``ingest file`` and ``land --follow`` (real stack)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from batch.master import list_files
from ingest.generator import GeneratorConfig, generate
from lambdalab.hdfs import webhdfs
from lambdalab.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _cli(settings: Settings, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LAMBDALAB_NAMESPACE": settings.namespace}
    return subprocess.Popen(
        [sys.executable, "-m", "lambdalab.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _landed_values(settings: Settings) -> list[bytes]:
    hdfs = webhdfs(settings)
    values: list[bytes] = []
    for path, _mf in list_files(hdfs, settings, "pageviews"):
        with hdfs.read(path) as reader:
            values += pq.read_table(io.BytesIO(reader.read()))["value"].to_pylist()
    return values


def test_file_sends_good_lines_reports_bad_ones_then_follow_lands_them(
    stack: Settings, settings: Settings, tmp_path: Path
) -> None:
    events = [p.event for p in generate(GeneratorConfig(seed=4), datetime.now(UTC), 30)]
    lines = [orjson.dumps(e) for e in events]
    lines.insert(3, b"{not json")  # line 4
    lines.insert(10, orjson.dumps({**events[0], "bytes": "x"}))  # line 11
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")

    out, errors = _cli(settings, "ingest", "file", str(path)).communicate(timeout=120)
    assert f"{path}:4: rejected: not valid JSON" in errors.decode()
    assert f"{path}:11: rejected: field 'bytes'" in errors.decode()
    assert "sent 30 events, rejected 2 lines" in out.decode()

    follower = _cli(settings, "land", "--follow")
    deadline = time.monotonic() + 60
    while len(_landed_values(settings)) < 30 and time.monotonic() < deadline:
        time.sleep(0.5)
    follower.send_signal(signal.SIGTERM)
    _out, errors = follower.communicate(timeout=30)
    assert follower.returncode == 0, errors.decode()
    assert sorted(_landed_values(settings)) == sorted(orjson.dumps(e) for e in events)
