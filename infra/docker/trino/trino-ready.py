#!/usr/bin/env python3
"""Health check of the Trino container: ``SELECT 1`` answers and the catalog is loaded.

The same check as the local stack's (``infra.health.check_trino``), over Trino's HTTP
protocol with the standard library only (the image has no Trino client). Exit 0 when
healthy, 1 with the reason on stderr otherwise.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from typing import Any

SERVER = "http://localhost:8080"
USER = "lambdalab"


def statement(sql: str) -> list[list[Any]]:
    """Run ``sql``, following ``nextUri`` until the query ends; return its rows."""
    request = urllib.request.Request(
        f"{SERVER}/v1/statement", data=sql.encode(), headers={"X-Trino-User": USER}
    )
    rows: list[list[Any]] = []
    while True:
        with urllib.request.urlopen(request, timeout=10) as resp:
            page = json.load(resp)
        if "error" in page:
            msg = f"{sql!r} failed: {page['error'].get('message')}"
            raise RuntimeError(msg)
        rows += page.get("data", [])
        if "nextUri" not in page:
            return rows
        request = urllib.request.Request(page["nextUri"], headers={"X-Trino-User": USER})


def main(argv: list[str]) -> int:
    """Check ``SELECT 1`` and that the catalog named in ``argv`` (default hive) exists."""
    catalog = argv[1] if len(argv) > 1 else "hive"
    try:
        if statement("SELECT 1") != [[1]]:
            msg = "SELECT 1 did not return 1"
            raise RuntimeError(msg)
        catalogs = sorted(row[0] for row in statement("SHOW CATALOGS"))
        if catalog not in catalogs:
            msg = f"catalog {catalog!r} missing (have {catalogs})"
            raise RuntimeError(msg)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"trino unhealthy: {exc}", file=sys.stderr)
        return 1
    print(f"trino healthy: SELECT 1 ok, catalog {catalog}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
