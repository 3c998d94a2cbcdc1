"""The user's project: the streams, views and dimensions a deployment declares.

A project is a directory (setting ``LAMBDALAB_PROJECT``; docs/lab/adding-a-stream.md)::

    my_project/
      streams.py        STREAMS = [Stream(...), ...]            (required)
      views/*.py        VIEW = ViewDef(...), one view per file  (optional)
      dimensions.py     DIMENSIONS = [...]                      (optional)
      README.md

Each file is plain Python, loaded by path (:func:`load_module`) under the synthetic package
``lambdalab_project``: the project is not installed and needs no ``__init__.py``. The kernel
loads the streams (:mod:`lambdalab.schema` fills ``STREAMS`` from them); the views and the
dimensions are loaded by ``views.registry`` (the kernel never imports ``views``). A broken
declaration raises :class:`DefinitionError` with one message naming the file (and line), the
stream or view, and the field, when the process starts.

Without the setting, the project is the example shipped with the platform's source tree,
``examples/pageviews`` (next to the ``lambdalab`` package). An installed wheel carries no
examples: set ``LAMBDALAB_PROJECT`` (``lambdalab init DIR`` writes a starting point).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from lambdalab.errors import DefinitionError

PACKAGE = "lambdalab_project"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pageviews"
STREAMS_FILE = "streams.py"
VIEWS_DIR = "views"
DIMENSIONS_FILE = "dimensions.py"


def project_dir() -> Path:
    """The project directory: ``LAMBDALAB_PROJECT`` (env or ``.env``), else the example.

    Raises:
        DefinitionError: the directory does not exist or has no ``streams.py``.
    """
    from lambdalab.settings import load_settings

    chosen = load_settings().project
    path = (chosen or EXAMPLE).expanduser().resolve()
    if not (path / STREAMS_FILE).is_file():
        where = "LAMBDALAB_PROJECT" if chosen else "the example project (no LAMBDALAB_PROJECT)"
        msg = (
            f"project {path} ({where}) has no {STREAMS_FILE}; point LAMBDALAB_PROJECT at a "
            "project directory or create one with `lambdalab init DIR`"
        )
        raise DefinitionError(msg)
    return path


def load_module(path: Path, name: str) -> ModuleType:
    """Execute the project file ``path`` as module ``lambdalab_project.{name}``.

    Raises:
        DefinitionError: the file failed to load; the message names the file, the line in
            it, and the error (a :class:`DefinitionError` from a declaration names the
            stream or view and the field itself).
    """
    if PACKAGE not in sys.modules:  # the synthetic parent, so that dataclasses and pickles resolve
        parent = ModuleType(PACKAGE)
        parent.__path__ = []
        sys.modules[PACKAGE] = parent
    qualified = f"{PACKAGE}.{name}"
    spec = importlib.util.spec_from_file_location(qualified, path)
    if spec is None or spec.loader is None:
        msg = f"{path}: not a loadable Python file"
        raise DefinitionError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(qualified, None)
        msg = f"{_where(path, exc)}: {_message(exc)}"
        raise DefinitionError(msg) from exc
    return module


def declared(module: ModuleType, path: Path, attribute: str, kind: type | None) -> list[Any]:
    """The list ``attribute`` of a loaded project file, each item checked to be a ``kind``.

    Raises:
        DefinitionError: the attribute is missing, not a list or tuple, or holds another type.
    """
    items = getattr(module, attribute, None)
    if not isinstance(items, list | tuple):
        msg = f"{path}: must define {attribute} = [...] (a list), got {type(items).__name__}"
        raise DefinitionError(msg)
    for item in items:
        if kind is not None and not isinstance(item, kind):
            msg = f"{path}: {attribute} holds a {type(item).__name__}, not a {kind.__name__}"
            raise DefinitionError(msg)
    return list(items)


def load_streams(folder: Path) -> dict[str, Any]:
    """The streams of the project in ``folder``, by name.

    Raises:
        DefinitionError: named (file, line, stream, field), or two streams share a name.
    """
    from lambdalab.schema import Stream

    path = folder / STREAMS_FILE
    module = load_module(path, f"{_slug(folder)}.streams")
    found: dict[str, Any] = {}
    for stream in declared(module, path, "STREAMS", Stream):
        if stream.name in found:
            msg = f"{path}: stream {stream.name!r} is declared twice"
            raise DefinitionError(msg)
        found[stream.name] = stream
    return found


def view_files(folder: Path) -> list[Path]:
    """The view files of the project in ``folder`` (``views/*.py``, not ``_``-prefixed)."""
    views = folder / VIEWS_DIR
    if not views.is_dir():
        return []
    return sorted(p for p in views.glob("*.py") if not p.name.startswith("_"))


def _slug(folder: Path) -> str:
    """A module-name part for a project folder (two projects never share modules)."""
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:10]
    name = re.sub(r"\W", "_", folder.name)
    return f"{name}_{digest}"


def module_name(folder: Path, *parts: str) -> str:
    """The synthetic module name of a file of the project in ``folder``."""
    return ".".join((_slug(folder), *parts))


def _where(path: Path, exc: BaseException) -> str:
    """``path`` with the line of the innermost frame of the error inside it, if any."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            line = frame.lineno
    if line is None and isinstance(exc, SyntaxError):
        line = exc.lineno
    return f"{path}, line {line}" if line else str(path)


def _message(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"syntax error: {exc.msg}"
    if isinstance(exc, DefinitionError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
