"""Run every benchmark against the local stack and keep the numbers.

``python -m bench [name ...]`` runs ``bench/bench_<name>.py``'s ``run(settings)`` for each
(all by default) in a namespace of its own, prints each result, and writes them all to
``bench/results/<UTC time>.json``. Every result holds the platform's number, the
same-run baseline and their ratio; timed assertions live nowhere in the test suite.
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

from bench.summary import rows, svg, table
from lambdalab.settings import load_settings

BENCHES = ("ingest", "batch", "speed", "serving", "queries")


def main(names: list[str]) -> int:
    """Run the named benchmarks (all when none), write the results; 1 if any failed.

    A failed benchmark is recorded with its error and does not stop the others.
    """
    base = load_settings()
    results: dict[str, Any] = {"started": datetime.now(UTC).isoformat(), "machine": _machine()}
    failed = []
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
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    summary = rows(results)
    path.with_suffix(".svg").write_text(svg(summary, f"lambda-lab bench {path.stem}"))
    print(table(summary))
    print(f"results written to {path} (and {path.with_suffix('.svg').name})")
    return 1 if failed else 0


def _machine() -> dict[str, Any]:
    import os
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "node": platform.node()}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
