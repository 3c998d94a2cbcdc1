"""The drill table: written by the drill session, pasted into docs/reliability.md.

The session (``tests/drills/conftest.py``; ``tests/cluster/conftest.py`` for the cluster's
drills, mode ``cluster``) writes ``artifacts/drills/results-{mode}.json`` with the date, the
machine and one row per drill. ``python -m tests.drills.report [MODE]`` (the last step of
``make drills`` and ``make drills-cluster``) renders that mode's rows as a Markdown table and
replaces the block between the mode's two markers in ``docs/reliability.md``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "artifacts" / "drills"
DOC = REPO / "docs" / "reliability.md"
BEGIN, END = "<!-- drill-results:begin -->", "<!-- drill-results:end -->"
COLUMNS = (
    ("drill", "drill"),
    ("accepted", "events accepted"),
    ("lost", "lost"),
    ("doubled", "doubled"),
    ("recover_s", "seconds to recover"),
    ("cells", "cells checked"),
    ("answers", "answers sampled"),
    ("took_s", "drill took (s)"),
    ("result", "result"),
)
# The cluster's drills kill one node each: the table says which and when.
CLUSTER = "cluster"
CLUSTER_MARKERS = "<!-- cluster-drill-results:begin -->", "<!-- cluster-drill-results:end -->"
CLUSTER_COLUMNS = (
    ("drill", "drill"),
    ("killed", "what was killed (SIGKILL)"),
    ("when", "when"),
    ("accepted", "events acked"),
    ("lost", "lost"),
    ("doubled", "doubled"),
    ("recover_s", "seconds to recover"),
    ("cells", "cells checked"),
    ("took_s", "drill took (s)"),
    ("result", "result"),
)


def machine() -> dict[str, Any]:
    """Where the drills ran: ``uname -srm`` and the CPU count (``nproc``)."""
    uname = platform.uname()
    return {"uname": f"{uname.system} {uname.release} {uname.machine}", "nproc": os.cpu_count()}


def write(mode: str, rows: list[dict[str, Any]], total_s: float) -> Path:
    """Write one session's results; return the file."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"results-{mode}.json"
    body = {
        "mode": mode,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        **machine(),
        "total_s": round(total_s),
        "drills": rows,
    }
    path.write_text(json.dumps(body, indent=2))
    return path


def table(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...] = COLUMNS) -> str:
    """The rows as a Markdown table (notes below it, one line per drill that has any)."""
    lines = [
        "| " + " | ".join(title for _, title in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(str(row.get(k, "")) for k, _ in columns) + " |" for row in rows]
    notes = [f"- {row['drill']}: {row['notes']}" for row in rows if row.get("notes")]
    notes += [f"- {row['drill']}, FAIL: {p[:400]}" for row in rows for p in row.get("problems", [])]
    return "\n".join(lines + (["", *notes] if notes else []))


def render(results: dict[str, Any]) -> str:
    """The results block of the doc: when, where, how long, and the table."""
    head = (
        f"Measured {results['date']} on `{results['uname']}`, {results['nproc']} CPUs "
        f"(`nproc`), mode `{results['mode']}`: the whole session took "
        f"{results['total_s'] // 60} min {results['total_s'] % 60} s."
    )
    columns = CLUSTER_COLUMNS if results["mode"] == CLUSTER else COLUMNS
    return f"{head}\n\n{table(results['drills'], columns)}"


def update_doc(results: dict[str, Any], doc: Path = DOC) -> None:
    """Replace the results block of ``doc`` (between the mode's markers) with ``results``."""
    text = doc.read_text()
    begin, end_mark = CLUSTER_MARKERS if results["mode"] == CLUSTER else (BEGIN, END)
    start, end = text.index(begin) + len(begin), text.index(end_mark)
    doc.write_text(f"{text[:start]}\n{render(results)}\n{text[end:]}")


def main(mode: str = "full") -> None:
    """Put the newest results of ``mode`` into docs/reliability.md."""
    results = json.loads((RESULTS / f"results-{mode}.json").read_text())
    update_doc(results)
    print(render(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
