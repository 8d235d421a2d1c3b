"""Run a hook right after a module is imported, without importing it ourselves.

Importing aiohttp at start-up would cost every process that merely has it
installed (an ASGI app using aiohttp's client) its import time, about 0.3 s
on a quiet machine. Instead a finder at the front of ``sys.meta_path`` waits
for the module's first import, lets the normal finders find it and runs the
hook once the module's code has run. A module already imported gets its hook
at once. Nothing is imported that the app would not import itself.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from otel_asgi_kit.failsafe import report_once

Hook = Callable[[], None]


class _AfterImport(MetaPathFinder):
    def __init__(self) -> None:
        self.hooks: dict[str, list[Hook]] = {}
        self.lock = threading.Lock()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        with self.lock:
            hooks = self.hooks.pop(fullname, None)
        if hooks is None:
            return None
        spec = _find_with_others(self, fullname, path, target)
        loader: Any = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec  # nothing to wrap (a namespace package, an old-style loader): the hook never runs
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            _run(fullname, hooks)

        loader.exec_module = exec_module  # this loader instance serves only this module
        return spec


def _find_with_others(
    me: MetaPathFinder, fullname: str, path: Sequence[str] | None, target: ModuleType | None
) -> ModuleSpec | None:
    for finder in sys.meta_path:
        if finder is me:
            continue
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        spec: ModuleSpec | None = find(fullname, path, target)
        if spec is not None:
            return spec
    return None


def _run(module: str, hooks: list[Hook]) -> None:
    for hook in hooks:
        try:
            hook()
        except Exception as exc:  # a hook must never break the app's import
            report_once(f"hooking {module}", exc)


_finder = _AfterImport()


def after_import(module: str, hook: Hook) -> None:
    """Call ``hook`` once ``module`` is imported: now if it already is, else right after its first import."""
    if module in sys.modules:
        _run(module, [hook])
        return
    with _finder.lock:
        _finder.hooks.setdefault(module, []).append(hook)
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
