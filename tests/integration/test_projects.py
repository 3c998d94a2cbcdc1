"""The CLI on a user project: `lambdalab init`, `project check`, and a broken project at start-up.

Runs the real entry point in a subprocess with LAMBDALAB_PROJECT set (needs no service).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LAMBDALAB_PROJECT": str(folder),
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "400",
    }
    return subprocess.run(
        [sys.executable, "-m", "lambdalab.cli", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip


def test_the_cli_starts_on_a_project_and_stops_on_a_broken_one_with_one_message(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "shop"
    made = _cli(folder, "init", str(folder))
    assert made.returncode == 0, made.stderr
    ok = _cli(folder, "project", "check")
    assert ok.returncode == 0, ok.stderr
    assert "stream orders" in ok.stdout and "view orders_by_shop_hourly" in ok.stdout
    view = folder / "views" / "orders_by_shop_hourly.py"
    view.write_text(view.read_text().replace('("shop",)', '("store",)'))
    broken = _cli(folder, "batch", "--help")
    assert broken.returncode == 1
    text = " ".join(broken.stderr.split())  # rich wraps long lines
    assert "Traceback" not in text
    assert f"error: {view}, line 5: view orders_by_shop_hourly: key 'store'" in text
