"""The registry of views: every ``VIEW`` in the project's ``views/*.py``, and deployed replacements.

Adding a view is one small file in the project's ``views/`` folder (see
docs/lab/adding-a-view.md; the project is ``LAMBDALAB_PROJECT``, :mod:`lambdalab.project`).
The project's ``dimensions.py`` (``DIMENSIONS = [...]``) is read here too: :func:`dimensions`.

A *deployed* definition replaces a view's code-defined one for every process that shares
the state directory (``{paths.state_dir}/deployed/{view}.json`` by default, written by
:func:`deploy`, removed by :func:`undeploy`). The lab uses it to put a buggy version of a
view into production and take it back out (``lambdalab lab deploy``). Every layer asks
this registry, so a deployed definition is what the API merges with from its next request,
what the next batch cycle builds (its fingerprint differs: a new version), and what a speed
consumer started after the deploy keeps (its fingerprint differs: a rebuild).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lambdalab import project
from lambdalab.errors import DefinitionError, NotFound
from views.definition import ViewDef

_deployed_cache: tuple[tuple[object, ...], dict[str, ViewDef]] | None = None
_coded_cache: tuple[tuple[object, ...], dict[str, ViewDef]] | None = None


def coded_views() -> dict[str, ViewDef]:
    """Every view declared in the project's ``views/*.py``, by name (what the code says).

    The folder is scanned once per change of it (one ``os.stat`` per call, a file added
    or removed changes it): every query asks the registry for its view, and a scan per
    call (~40 µs) was a measurable share of a point query.

    Raises:
        DefinitionError: a view file is broken, named (file, line, view, field), or two
            files declare the same view.
    """
    global _coded_cache
    folder = project_folder()
    views = folder / project.VIEWS_DIR
    try:
        stamp: tuple[object, ...] = (str(views), os.stat(views).st_mtime_ns)
    except FileNotFoundError:
        stamp = (str(views), None)
    if _coded_cache is None or _coded_cache[0] != stamp:
        _coded_cache = (stamp, load_views(folder))
    return dict(_coded_cache[1])


def load_views(folder: Path) -> dict[str, ViewDef]:
    """The views of the project in ``folder``, by name, each file loaded by path.

    Raises:
        DefinitionError: named (file, line, view, field), or a view declared twice.
    """
    declare_dimensions(folder)  # views check their enrichments against them when built
    found: dict[str, ViewDef] = {}
    where: dict[str, Path] = {}
    for path in project.view_files(folder):
        module = project.load_module(path, project.module_name(folder, "views", path.stem))
        view = getattr(module, "VIEW", None)
        if not isinstance(view, ViewDef):
            msg = f"{path}: must define VIEW = ViewDef(...), got {type(view).__name__}"
            raise DefinitionError(msg)
        if view.name in found:
            msg = f"{path}: view {view.name!r} is declared in {where[view.name]} too"
            raise DefinitionError(msg)
        found[view.name], where[view.name] = view, path
    return found


def dimensions(folder: Path | None = None) -> list[Any]:
    """The project's ``DIMENSIONS`` (``dimensions.py``; empty when the file is absent).

    The hook for dimension tables (``views.transforms``): items are returned as declared.

    Raises:
        DefinitionError: the file is broken or ``DIMENSIONS`` is not a list, named.
    """
    folder = folder or project_folder()
    path = folder / project.DIMENSIONS_FILE
    if not path.is_file():
        return []
    module = project.load_module(path, project.module_name(folder, "dimensions"))
    return project.declared(module, path, "DIMENSIONS", None)


def declare_dimensions(folder: Path | None = None) -> dict[str, Any]:
    """Declare the project's dimensions (``views.dimension.declare``); return them by name.

    Raises:
        DefinitionError: ``dimensions.py`` is broken, holds something other than
            ``Dimension(...)``, or declares a name twice differently (named).
    """
    from views.dimension import Dimension, declare

    folder = folder or project_folder()
    out: dict[str, Any] = {}
    for dim in dimensions(folder):
        if not isinstance(dim, Dimension):
            path = folder / project.DIMENSIONS_FILE
            msg = f"{path}: DIMENSIONS must hold Dimension(...), got {type(dim).__name__}"
            raise DefinitionError(msg)
        out[dim.name] = declare(dim)
    return out


_project: Path | None = None


def project_folder() -> Path:
    """The project folder of this process (``LAMBDALAB_PROJECT``), resolved once."""
    global _project
    if _project is None:
        _project = project.project_dir()
    return _project


def all_views() -> dict[str, ViewDef]:
    """Every registered view by name, in name order (deployed definitions win)."""
    found = coded_views()
    found.update({n: v for n, v in deployed().items() if n in found})
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


def deployed_dir() -> Path:
    """Where deployed definitions live: ``paths.deployed`` of this process's settings."""
    from lambdalab.settings import get_settings

    return get_settings().paths.deployed


def deployed() -> dict[str, ViewDef]:
    """The deployed definitions by view name (re-read only when a file changes).

    A deploy replaces its file (a new inode), so one scan of the folder tells whether
    anything changed since the last call.

    Raises:
        DefinitionError: a deployed file does not hold a valid definition (named).
    """
    global _deployed_cache
    folder = deployed_dir()
    try:
        with os.scandir(folder) as entries:
            files = sorted(
                (e.name, e.inode(), e.stat().st_mtime_ns)
                for e in entries
                if e.name.endswith(".json") and not e.name.startswith(".")
            )
        stamp = (str(folder), *files)
    except FileNotFoundError:
        return {}
    if _deployed_cache is not None and _deployed_cache[0] == stamp:
        return _deployed_cache[1]
    found: dict[str, ViewDef] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            view = ViewDef.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, DefinitionError) as exc:
            msg = f"deployed view definition {path}: {exc}"
            raise DefinitionError(msg) from exc
        found[view.name] = view
    _deployed_cache = (stamp, found)
    return found


def deploy(view: ViewDef) -> Path:
    """Deploy ``view`` in place of the coded definition of the same name (atomically).

    Raises:
        NotFound: no coded view has that name.
    """
    if view.name not in coded_views():
        msg = f"no view {view.name!r} to replace; known: {', '.join(sorted(coded_views()))}"
        raise NotFound(msg)
    folder = deployed_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{view.name}.json"
    tmp = folder / f".{view.name}.json.tmp"
    tmp.write_text(json.dumps(view.to_dict(), indent=2))
    os.replace(tmp, path)
    return path


def undeploy(name: str) -> bool:
    """Go back to the coded definition of ``name``; False if none was deployed."""
    path = deployed_dir() / f"{name}.json"
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
