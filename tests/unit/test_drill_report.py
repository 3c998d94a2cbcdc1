"""The drill tables of docs/reliability.md: each mode's rows land between its own markers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.drills import report


def results(mode: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "mode": mode,
        "date": "2026-11-27 14:00 UTC",
        "uname": "Linux x",
        "nproc": 2,
        "total_s": 125,
        "drills": rows,
    }


def doc(tmp_path: Path) -> Path:
    path = tmp_path / "reliability.md"
    cb, ce = report.CLUSTER_MARKERS
    path.write_text(
        f"# R\n{report.BEGIN}\nold local\n{report.END}\n## C\n{cb}\nold cluster\n{ce}\n"
    )
    return path


def test_cluster_rows_go_to_the_cluster_block_with_what_was_killed(tmp_path: Path) -> None:
    path = doc(tmp_path)
    row = {
        "drill": "DataNode SIGKILL during a build",
        "killed": "datanode-1 (with its children)",
        "when": "+120 s",
        "accepted": 3000,
        "lost": 0,
        "doubled": 0,
        "recover_s": 61.5,
        "result": "pass",
        "notes": "rejoined 4.7 s after the kill",
    }
    report.update_doc(results(report.CLUSTER, [row]), path)
    text = path.read_text()
    local, cluster = text.split("## C")
    assert "old local" in local and "DataNode" not in local
    assert "old cluster" not in cluster
    assert "| what was killed (SIGKILL) | when | events acked |" in cluster
    assert "| datanode-1 (with its children) | +120 s | 3000 | 0 | 0 | 61.5 |" in cluster
    assert "- DataNode SIGKILL during a build: rejoined 4.7 s after the kill" in cluster
    assert "2 min 5 s" in cluster


def test_local_rows_keep_the_local_block_and_columns(tmp_path: Path) -> None:
    path = doc(tmp_path)
    row = {"drill": "speed SIGKILL x2", "accepted": 10, "result": "pass", "answers": 3}
    report.update_doc(results("full", [row]), path)
    local, cluster = path.read_text().split("## C")
    assert "old cluster" in cluster and "old local" not in local
    assert "| answers sampled |" in local and "what was killed" not in local
