"""Reading published batch view versions: the batch half of every serving-layer answer.

The serving layer asks :class:`BatchReader` for the current version of a view (its number
and cut, from one listing of ``versions/``) and then for rows of that same version only,
so one query never mixes two versions. A version is immutable once published, which is
why it is read from a local copy on this host (:mod:`batch.localcopy`): built once from
the version's Parquet on HDFS, then memory-mapped and searched by key, never loaded whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdfs import InsecureClient

from batch.localcopy import LocalCopies, LocalVersion
from batch.publish import VersionStore
from lambdalab.errors import NotFound
from lambdalab.hdfs import guarded
from lambdalab.settings import Settings

_LINEAGES_KEPT = 64


@dataclass(frozen=True)
class VersionInfo:
    """One published version of a view."""

    view: str
    version: int
    cut_ms: int
    path: str
    lineage: dict[str, Any]


class BatchReader:
    """Published versions and their rows, read over WebHDFS.

    Raises ServiceUnavailable from every method when HDFS does not answer.
    """

    def __init__(
        self,
        settings: Settings,
        client: InsecureClient | None = None,
        copies: LocalCopies | None = None,
    ) -> None:
        self.settings = settings
        self.store = VersionStore(settings, client)
        root = settings.paths.local_versions_dir / settings.namespace
        self.copies = copies or LocalCopies(root, settings.api.local_versions_kept)
        self._lineages: dict[tuple[str, int], dict[str, Any]] = {}  # immutable per version

    def versions(self, view: str) -> list[VersionInfo]:
        """Published versions of ``view``, newest first."""
        return [self._info(view, n) for n in self._guard(self.store.published, view)]

    def current(self, view: str) -> VersionInfo | None:
        """The newest published version of ``view``, or None before the first publication."""
        numbers = self._guard(self.store.published, view)
        return self._info(view, numbers[0]) if numbers else None

    def info(self, view: str, version: int) -> VersionInfo:
        """Version ``version`` of ``view`` (its cut and lineage).

        Raises:
            NotFound: it is not published (or was pruned).
        """
        return self._info(view, version)

    def ready(self, info: VersionInfo) -> bool:
        """Whether this host's local copy of the version is built (reads are fast)."""
        return self.copies.ready(info.view, info.version, info.lineage)

    def prepare(self, info: VersionInfo) -> None:
        """Build this host's local copy of the version (blocks; once per host)."""
        self._guard(self.copies.build, info.view, info.version, info.lineage, self._fetcher(info))

    def rows(
        self, view: str, version: int, key: str, bucket_from_ms: int, bucket_to_ms: int
    ) -> dict[int, dict[str, Any]]:
        """bucket_ms -> {measure: value} of one key, buckets in [from, to), as in Parquet."""
        return self._copy(view, version).rows(key, bucket_from_ms, bucket_to_ms)

    def cells(
        self,
        view: str,
        version: int,
        bucket_from_ms: int,
        bucket_to_ms: int,
        keep: Callable[[str], bool] | None = None,
    ) -> dict[str, dict[int, dict[str, Any]]]:
        """Per key ``keep`` accepts: bucket_ms -> {measure: value}, buckets in [from, to).

        The many-key form of :meth:`rows`, read from the same local copy.
        """
        return self._copy(view, version).cells(bucket_from_ms, bucket_to_ms, keep)

    def local(self, view: str, version: int) -> LocalVersion:
        """The memory-mapped local copy of a version (built first if needed)."""
        return self._copy(view, version)

    def _info(self, view: str, n: int) -> VersionInfo:
        lineage = self._guard(self.store.lineage, view, n)
        path = self.store.paths.version(view, n)
        return VersionInfo(view, n, int(lineage["cut_ms"]), path, lineage)

    def _copy(self, view: str, version: int) -> LocalVersion:
        lineage = self._lineages.get((view, version))
        if lineage is None:
            lineage = self._info(view, version).lineage
            if len(self._lineages) >= _LINEAGES_KEPT:
                self._lineages.pop(next(iter(self._lineages)))
            self._lineages[(view, version)] = lineage
        info = VersionInfo(view, version, int(lineage["cut_ms"]), "", lineage)
        copy: LocalVersion = self._guard(
            self.copies.open, view, version, lineage, self._fetcher(info)
        )
        return copy

    def _fetcher(self, info: VersionInfo) -> Callable[[Path], list[Path]]:
        def fetch(into: Path) -> list[Path]:
            return self.fetch(info.view, info.version, into)

        return fetch

    def fetch(self, view: str, version: int, into: Path) -> list[Path]:
        """Download the Parquet files of a version into ``into``; return their paths.

        Raises:
            NotFound: the version is not published (or was pruned meanwhile).
        """
        data = f"{self.store.paths.version(view, version)}/data"
        if not self.store.exists(data):
            msg = f"view {view}: version {version} is not published ({data})"
            raise NotFound(msg)
        out = []
        for name in sorted(self.store.client.list(data)):
            if name.startswith(("_", ".")) or not name.endswith(".parquet"):
                continue
            target = into / name
            with self.store.client.read(f"{data}/{name}") as reader, open(target, "wb") as f:
                while chunk := reader.read(1 << 20):
                    f.write(chunk)
            out.append(target)
        return out

    def _guard(self, func: Any, *args: Any) -> Any:
        return guarded(self.settings, f"view {args[0]}", func, *args)
