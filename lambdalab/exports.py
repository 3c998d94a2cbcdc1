"""Lazy package exports: ``import batch`` stays cheap, ``batch.run_cycle`` still works.

Each package's ``__init__`` names its handful of public names and the module each lives
in; the module is imported on first access (PEP 562), so a CLI command never pays for
Spark, FastAPI or Kafka clients it does not use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy(package: str, homes: Mapping[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """``(__all__, __getattr__)`` for ``package`` exporting ``name`` from ``homes[name]``.

    Args:
        package: the package's ``__name__``.
        homes: public name -> the module (absolute name) that defines it.
    """

    def __getattr__(name: str) -> Any:
        if name not in homes:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        return getattr(importlib.import_module(homes[name]), name)

    return sorted(homes), __getattr__
