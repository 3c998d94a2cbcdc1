"""The registry of views: every ``VIEW`` in ``views/defs/*.py``.

Adding a view is one small file in ``views/defs`` (see docs/lab/adding-a-view.md).
The package is scanned once per change of its folder (one ``os.stat`` per call, not a
re-import of every module): every query asks the registry for its view, so a scan per
call (~40 µs) was a measurable share of a point query.
"""

from __future__ import annotations

import importlib
import os
import pkgutil

from lambdalab.errors import NotFound
from views import defs
from views.definition import ViewDef

_scanned: tuple[tuple[int, ...], dict[str, ViewDef]] | None = None


def _stamp() -> tuple[int, ...]:
    """The modification times of the defs folders: a file added or removed changes them."""
    return tuple(os.stat(path).st_mtime_ns for path in defs.__path__)


def _package_views() -> dict[str, ViewDef]:
    global _scanned
    stamp = _stamp()
    if _scanned is None or _scanned[0] != stamp:
        found: dict[str, ViewDef] = {}
        for info in pkgutil.iter_modules(defs.__path__):
            module = importlib.import_module(f"{defs.__name__}.{info.name}")
            view = getattr(module, "VIEW", None)
            if isinstance(view, ViewDef):
                found[view.name] = view
        _scanned = (stamp, dict(sorted(found.items())))
    return _scanned[1]


def all_views() -> dict[str, ViewDef]:
    """Every registered view by name, in name order (a new dict: callers may change it)."""
    return dict(_package_views())


def views_of(stream: str) -> dict[str, ViewDef]:
    """The registered views that read ``stream``."""
    return {n: v for n, v in all_views().items() if v.stream == stream}


def get_view(name: str) -> ViewDef:
    """The view registered under ``name``.

    Raises:
        NotFound: no such view, listing the known ones.
    """
    views = all_views()
    if name not in views:
        msg = f"unknown view {name!r}; known: {', '.join(views)}"
        raise NotFound(msg)
    return views[name]
