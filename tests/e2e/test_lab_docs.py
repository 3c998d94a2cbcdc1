"""The lab's pages run: every command shown in docs/lab/0*.md, its expected output checked.

A page's ``console`` blocks hold ``$ command`` lines, each followed by lines its output
must contain. One page runs as one bash script in the repository (so ``export``, ``&`` and
``$!`` carry from one command to the next, as in the reader's terminal), with ``.venv/bin``
on ``PATH``, a wide terminal and a private folder of deployed views. The namespace each
page exports is dropped before and after, so a page always starts from nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lambdalab.settings import Settings
from tests.namespaces import drop

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs" / "lab").glob("0*.md"))
MARK = "@@lab-docs-step"


def steps(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of every ``$`` line in the page's console blocks."""
    out: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                out.append((line[2:], []))
            elif line.strip() and out:
                out[-1][1].append(line.strip())
    return out


def script(found: list[tuple[str, list[str]]]) -> str:
    """The page as one bash script: a marker before each command, background jobs killed."""
    lines = ["exec 2>&1", "set -e", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    for i, (command, _expect) in enumerate(found):
        lines += [f"echo '{MARK} {i}'", command]
    lines.append(f"echo '{MARK} end'")
    return "\n".join(lines) + "\n"


def outputs(text: str, count: int) -> list[str]:
    """Each command's output, split at the markers."""
    parts = re.split(rf"^{MARK} (\d+|end)$", text, flags=re.M)
    found = {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}
    return [found.get(str(i), "") for i in range(count)]


def test_every_page_shows_commands_with_expected_output() -> None:
    assert len(PAGES) >= 7
    for page in PAGES:
        found = steps(page.read_text())
        assert found, f"{page.name} shows no command"
        assert any(expect for _c, expect in found), f"{page.name} expects no output"
        assert re.match(r"export LAMBDALAB_NAMESPACE=\w+ ", found[0][0]), page.name


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_the_page_runs_as_written(stack: Settings, page: Path, tmp_path: Path) -> None:
    found = steps(page.read_text())
    namespace = re.match(r"export LAMBDALAB_NAMESPACE=(\w+)", found[0][0])
    assert namespace, f"{page.name} must start by exporting its namespace"
    settings = stack.model_copy(update={"namespace": namespace[1]})
    venv = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{venv}{os.pathsep}{os.environ['PATH']}",
        "COLUMNS": "250",
        "LAMBDALAB_PATHS__DEPLOYED_DIR": str(tmp_path / "deployed"),
    }
    drop(settings)
    try:
        run = subprocess.run(
            ["bash", "-c", script(found)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    finally:
        drop(settings)
    text = run.stdout
    said = outputs(text, len(found))
    assert f"{MARK} end" in run.stdout, (
        f"{page.name} stopped early (exit {run.returncode}):\n{text[-3000:]}"
    )
    for (command, expect), output in zip(found, said, strict=True):
        for line in expect:
            assert line in output, (
                f"{page.name}: `{command}` did not print {line!r}:\n{output[-2000:]}"
            )
