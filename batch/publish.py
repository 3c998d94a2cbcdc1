"""Publishing batch view versions: write aside, then one atomic HDFS rename.

A version is built under ``views/{view}/_staging/{fingerprint}-{run_id}/`` and becomes
visible only through ONE rename to ``views/{view}/versions/v{N:06d}`` (N = newest + 1;
a rename onto an existing name fails, and publishing retries with the next N). A run
killed at any point before that rename leaves what is served unchanged; its staging
directory is removed by the next run. Only view versions older than the last K are
ever deleted; the master dataset is never touched from here.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Collection
from typing import Any

from hdfs import InsecureClient
from hdfs.util import HdfsError

from lambdalab.errors import BatchError
from lambdalab.hdfs import LINEAGE, guarded, published_versions, read_lineage, webhdfs
from lambdalab.paths import HdfsPaths
from lambdalab.settings import Settings

log = logging.getLogger(__name__)
PAUSE_ENV = "LAMBDALAB_BATCH_PAUSE_AT"
PAUSE_SECONDS_ENV = "LAMBDALAB_BATCH_PAUSE_S"
MAX_ATTEMPTS = 5


def pause_point(name: str) -> None:
    """Test hook: sleep at the named point when ``LAMBDALAB_BATCH_PAUSE_AT`` names it.

    Crash tests set it to ``build`` or ``before-swap`` and SIGKILL the run once it has
    printed ``PAUSED <name>`` on stderr, which makes the kill point deterministic.
    """
    if os.environ.get(PAUSE_ENV) != name:
        return
    print(f"PAUSED {name}", file=sys.stderr, flush=True)
    time.sleep(float(os.environ.get(PAUSE_SECONDS_ENV, "3600")))


class VersionStore:
    """The published versions of every view of one namespace, on HDFS (WebHDFS)."""

    def __init__(self, settings: Settings, client: InsecureClient | None = None) -> None:
        self.settings = settings
        self.paths = HdfsPaths(settings)
        self.client = client or webhdfs(settings)

    def published(self, view: str) -> list[int]:
        """Version numbers of ``view``, newest first."""
        return published_versions(self.client, self.settings, view)

    def lineage(self, view: str, n: int) -> dict[str, Any]:
        """The lineage of version ``n`` of ``view``."""
        return read_lineage(self.client, self.settings, view, n)

    def staging_dir(self, view: str, fingerprint: str, run_id: str) -> str:
        """Where a run builds a version before publishing it."""
        return f"{self.paths.staging(view)}/{fingerprint}-{run_id}"

    def clean_staging(
        self, view: str, keep: str | None = None, busy: Collection[str] = ()
    ) -> list[str]:
        """Delete stale staging directories (left by killed or failed runs).

        Kept: ``keep``, and the directories of builds running now in other loops, named by
        their plan fingerprints in ``busy`` (a staging dir is ``{fingerprint}-{run_id}``):
        two loops at different cuts build different versions of one view side by side.
        """
        root = self.paths.staging(view)
        removed = []
        for name in self._list(root):
            path = f"{root}/{name}"
            if path != keep and name.split("-", 1)[0] not in busy:
                self.client.delete(path, recursive=True)
                removed.append(path)
        if removed:
            log.info("view %s: removed %d stale staging dir(s)", view, len(removed))
        return removed

    def publish(self, view: str, staged: str, lineage: dict[str, Any]) -> int:
        """Publish the staged version by one rename; return its number.

        Cuts never go back: a version whose cut is below the newest published one is
        refused (expiry has already dropped the realtime windows such a version would need).

        Raises:
            BatchError: the cut is below the newest version's, or the rename failed
                ``MAX_ATTEMPTS`` times (concurrent publishers).
        """
        self.client.makedirs(self.paths.versions(view))
        for _ in range(MAX_ATTEMPTS):
            newest = self.published(view)
            if newest and int(lineage["cut_ms"]) < (held := self._cut(view, newest[0])):
                msg = (
                    f"view {view}: refusing to publish cut {lineage['cut_ms']} below the cut "
                    f"{held} of the current version v{newest[0]:06d}: cuts never go back"
                )
                raise BatchError(msg)
            n = (newest or [0])[0] + 1
            lineage = {**lineage, "version": n}
            data = json.dumps(lineage, indent=2, sort_keys=True).encode()
            self.client.write(f"{staged}/{LINEAGE}", data=data, overwrite=True)
            pause_point("before-swap")
            if self._rename_new(staged, self.paths.version(view, n)):
                log.info("view %s: published v%06d from %s", view, n, staged)
                return n
        msg = f"view {view}: could not publish {staged} after {MAX_ATTEMPTS} attempts"
        raise BatchError(msg)

    def _cut(self, view: str, n: int) -> int:
        return int(self.lineage(view, n)["cut_ms"])

    def prune(self, view: str, keep: int) -> list[int]:
        """Delete all but the newest ``keep`` versions of ``view``; return those deleted."""
        old = self.published(view)[keep:]
        for n in old:
            self.client.delete(self.paths.version(view, n), recursive=True)
        return old

    def marker(self, view: str, fingerprint: str) -> str:
        """Path of the marker saying a version with ``fingerprint`` was published."""
        return f"{self.paths.view_root(view)}/_done/{fingerprint}"

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists on HDFS."""
        return guarded(self.settings, path, self.client.status, path, False) is not None

    def touch(self, path: str, text: str = "") -> None:
        """Write a small marker file."""
        self.client.write(path, data=text.encode(), overwrite=True)

    def _rename_new(self, src: str, dst: str) -> bool:
        """Rename ``src`` to ``dst``, failing (False) when ``dst`` exists: never moves into it."""
        try:
            self.client._rename(src, destination=self.client.resolve(dst), renameoptions="NONE")
        except HdfsError as exc:
            if "already exists" in str(exc):
                return False
            raise
        return True

    def _list(self, path: str) -> list[str]:
        if not self.exists(path):
            return []
        return list(self.client.list(path))
