"""Old module paths that keep working for one release, with a DeprecationWarning.

A module that moved leaves a two-line file at its old path::

    from s2s_media._deprecated import moved
    __getattr__ = moved(__name__, "s2s_media.inference.transcriber", "s2s_media.decoding.timing")

Importing the old path warns once; every name is then looked up in the new modules, in order.
README.md ("Moved modules") lists the old and new paths.
"""
from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Any, Callable


def moved(old: str, *new: str) -> Callable[[str], Any]:
    """The ``__getattr__`` of the shim module ``old``, whose names now live in the modules ``new``."""
    modules: list[ModuleType] = [importlib.import_module(n) for n in new]
    warnings.warn(f"{old} has moved to {' and '.join(new)}; the old path will be removed in the next release",
                  DeprecationWarning, stacklevel=3)

    def __getattr__(name: str) -> Any:
        for m in modules:
            if hasattr(m, name):
                return getattr(m, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r} (it moved to {', '.join(new)})")
    return __getattr__
