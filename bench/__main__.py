"""Run every benchmark against the local stack and keep the numbers.

``python -m bench [name ...]`` runs ``bench/bench_<name>.py``'s ``run(settings)`` for each
(all by default) in a namespace of its own, prints the figures, writes the raw results to
``bench/results/<UTC time>.json`` (not committed) and the page that lasts, docs/bench.md
with its plot docs/bench.svg (committed). Each bench returns figures in the format of
:mod:`bench.summary`: the platform's number, the same-run baseline, their ratio, the
target and the spread over repeated runs. Timed assertions live nowhere in the test suite.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.summary import figures, notes_of, page, svg, table
from lambdalab.settings import load_settings

BENCHES = ("ingest", "batch", "speed", "scaling", "freshness", "serving", "queries")
DOCS = Path(__file__).parent.parent / "docs"


def main(names: list[str], earlier: Path | None = None) -> int:
    """Run the named benchmarks (all when none), write the results; 1 if any failed.

    A failed benchmark is recorded with its error and does not stop the others. With
    ``earlier`` (a results file of a previous run, ``--with FILE``), the benches of that
    run that this one does not repeat are carried into the page, each marked with the
    date and load of the run that measured it.
    """
    base = load_settings()
    results: dict[str, Any] = {"started": datetime.now(UTC).isoformat(), "machine": _machine()}
    failed = []
    names = [n for n in names if n]
    for name in names or list(BENCHES):
        module = importlib.import_module(f"bench.bench_{name}")
        settings = base.model_copy(update={"namespace": f"bench{uuid.uuid4().hex[:8]}"})
        print(f"== bench {name} (namespace {settings.namespace})", flush=True)
        started = time.perf_counter()
        try:
            results[name] = module.run(settings)
        except Exception as exc:  # one failed bench must not hide the others' numbers
            failed.append(name)
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[name]["wall_s"] = round(time.perf_counter() - started, 1)
    if earlier is not None:
        results = {**results, **carried(json.loads(earlier.read_text()), results)}
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    figs = figures(results)
    picture = svg(figs, f"lambda-lab bench {path.stem}: ratio to the same-run baseline")
    path.with_suffix(".svg").write_text(picture)
    (DOCS / "bench.svg").write_text(picture)
    doc = DOCS / "bench.md"
    notes = notes_of(doc.read_text()) if doc.exists() else ""
    doc.write_text(page(results, "bench.svg", notes))
    print(table(figs))
    print(f"results written to {path}; docs/bench.md and docs/bench.svg rewritten")
    return 1 if failed else 0


def carried(previous: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """The benches of ``previous`` missing from ``now``, each noting the run it came from."""
    run = {
        "started": previous.get("started", "?"),
        "loadavg": previous.get("machine", {}).get("loadavg", "?"),
    }
    return {
        name: {**result, "carried_from": run}
        for name, result in previous.items()
        if name in BENCHES and name not in now and isinstance(result, dict)
    }


def _machine() -> dict[str, Any]:
    import os
    import platform

    model = "?"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        model = names[0] if names else model
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "node": platform.node(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _args(argv: list[str]) -> tuple[list[str], Path | None]:
    """``[--with FILE] [name ...]``."""
    if argv[:1] == ["--with"] and len(argv) >= 2:
        return argv[2:], Path(argv[1])
    return argv, None


if __name__ == "__main__":
    sys.exit(main(*_args(sys.argv[1:])))
