"""The layers stay apart: every import edge of the platform's packages, read with ``ast``.

From the bottom: the kernel ``lambdalab`` < ``views`` < ``ingest``, ``batch``, ``speed``
< ``serving`` < ``lab``. A package imports only packages below it (``batch`` and ``speed``
never import each other, nor ``ingest``). ``infra`` (the local stack) sits beside them:
it imports the kernel and ``views``, and only the CLI entry point and health checks
import it. Imports inside functions count as much as those at module level.
docs/architecture.md draws the same picture.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RANK = {"lambdalab": 0, "views": 1, "ingest": 2, "batch": 2, "speed": 2, "serving": 3, "lab": 4}
INFRA_MAY_IMPORT = {"lambdalab", "views"}
# The entry point assembles the command from every layer and starts the stack.
ENTRY_POINTS = {"lambdalab/cli.py"}
# Exceptions, each with its reason (docs/architecture.md lists them too).
ALLOWED = {
    # the Spark health check starts the batch layer's own session, configured as it runs
    ("infra/health.py", "batch"),
}


@dataclass(frozen=True)
class Edge:
    """One import: the importing file (relative to the root), the module, the line."""

    path: str
    module: str
    line: int


def imports(root: Path, path: Path) -> list[Edge]:
    """Every absolute import of ``path`` (module level and inside functions)."""
    rel = path.relative_to(root).as_posix()
    package = rel.rsplit("/", 1)[0].replace("/", ".")
    found: list[Edge] = []
    for node in ast.walk(ast.parse(path.read_text(), rel)):
        if isinstance(node, ast.Import):
            found += [Edge(rel, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                name = ".".join(p for p in (base, node.module) if p)
            else:
                name = node.module or ""
            found.append(Edge(rel, name, node.lineno))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append(Edge(rel, str(node.args[0].value), node.lineno))
    return found


def violation(edge: Edge) -> str | None:
    """Why ``edge`` breaks the layering, or None when it is allowed."""
    here = edge.path.split("/", 1)[0]
    there = edge.module.split(".", 1)[0]
    known = set(RANK) | {"infra"}
    if there not in known or there == here or edge.path in ENTRY_POINTS:
        return None
    if (edge.path, there) in ALLOWED:
        return None
    if there == "infra":
        if Path(edge.path).name == "health.py":
            return None
        return "only the CLI entry point and health checks may import infra"
    if here == "infra":
        return None if there in INFRA_MAY_IMPORT else "infra imports only the kernel and views"
    if RANK[there] > RANK[here]:
        return f"{here} (layer {RANK[here]}) may not import {there}, a layer above it"
    if RANK[there] == RANK[here]:
        return f"{here} and {there} are one layer: they never import each other"
    return None


def violations(root: Path) -> list[str]:
    """Every forbidden edge under ``root``, as ``file:line imports module: why``."""
    out = []
    for package in sorted(set(RANK) | {"infra"}):
        for path in sorted((root / package).rglob("*.py")):
            for edge in imports(root, path):
                why = violation(edge)
                if why:
                    out.append(f"{edge.path}:{edge.line} imports {edge.module}: {why}")
    return out


def test_no_layer_imports_one_above_it_or_beside_it() -> None:
    assert violations(ROOT) == []


@pytest.mark.parametrize(
    ("file", "source", "why"),
    [
        ("speed/expiry.py", "from batch.master import list_files", "one layer"),
        ("views/kappa.py", "def f():\n    from serving.query import merged_query", "above"),
        ("lambdalab/auth.py", "import fastapi\nfrom serving import deps", "above"),
        ("batch/spark.py", "from infra.artifacts import Dist", "infra"),
        ("infra/services.py", "from speed.consumer import SpeedConsumer", "infra imports"),
        ("batch/x.py", "import importlib\nimportlib.import_module('ingest.http')", "one layer"),
        ("serving/sub/x.py", "from ...lab import kappa", "above"),
    ],
)
def test_an_added_forbidden_edge_is_named(tmp_path: Path, file: str, source: str, why: str) -> None:
    target = tmp_path / file
    target.parent.mkdir(parents=True)
    target.write_text(source + "\n")
    found = violations(tmp_path)
    assert len(found) == 1, found
    assert found[0].startswith(f"{file}:") and why in found[0]


def test_every_package_says_what_it_is_and_exports_a_few_names() -> None:
    import importlib

    for package in sorted(set(RANK) | {"infra"}):
        module = importlib.import_module(package)
        assert (module.__doc__ or "").strip(), f"{package}/__init__.py has no docstring"
        names = list(getattr(module, "__all__", []))
        assert 1 <= len(names) <= 15, f"{package}.__all__ = {names}"
        for name in names:
            assert getattr(module, name) is not None, f"{package}.{name}"
