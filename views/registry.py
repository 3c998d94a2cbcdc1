"""The registry of views: every ``VIEW`` in ``views/defs/*.py``.

Adding a view is one small file in ``views/defs`` (see docs/lab/adding-a-view.md).
"""

from __future__ import annotations

import importlib
import pkgutil

from lambdalab.errors import NotFound
from views import defs
from views.definition import ViewDef


def all_views() -> dict[str, ViewDef]:
    """Every registered view by name, in name order."""
    found: dict[str, ViewDef] = {}
    for info in pkgutil.iter_modules(defs.__path__):
        module = importlib.import_module(f"{defs.__name__}.{info.name}")
        view = getattr(module, "VIEW", None)
        if isinstance(view, ViewDef):
            found[view.name] = view
    return dict(sorted(found.items()))


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
