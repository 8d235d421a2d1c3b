"""Run a hook right after a module is imported, without importing it ourselves.

Some servers must not be imported early: ``daphne.server`` installs Twisted's
asyncio reactor as an import side effect, and importing Granian in every
process that merely has it installed would load its Rust extension for
nothing. So their hooks wait for the server's own import: a finder on
``sys.meta_path`` answers only for the watched names, lets the other finders
locate the module, and runs the hooks once the module's code has run —
before the importer binds any name from it. The cost is one dict lookup per
import statement that reaches the finders; requests never pass here.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from otel_asgi_kit.failsafe import report_once

Hook = Callable[[ModuleType], None]

_lock = threading.Lock()
_pending: dict[str, list[Hook]] = {}


def when_imported(name: str, hook: Hook) -> None:
    """``hook(module)`` now if ``name`` is imported already, else right after its import."""
    module = sys.modules.get(name)
    if module is not None:
        _run(name, [hook], module)
        return
    with _lock:
        _pending.setdefault(name, []).append(hook)
        if not any(isinstance(f, _Watcher) for f in sys.meta_path):
            sys.meta_path.insert(0, _Watcher())


def _run(name: str, hooks: Sequence[Hook], module: ModuleType) -> None:
    for hook in hooks:
        try:
            hook(module)
        except Exception as exc:  # a hook must never break the import of the server
            report_once(f"hooking {name}", exc)


class _Watcher(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _pending:
            return None
        spec = _find_elsewhere(self, fullname, path, target)
        loader: Any = spec.loader if spec is not None else None
        if loader is None or isinstance(loader, type) or not hasattr(loader, "exec_module"):
            return spec  # no per-module loader instance to hook (never the case for the servers watched)
        exec_module = loader.exec_module

        def exec_then_hook(module: ModuleType) -> None:
            exec_module(module)
            with _lock:
                hooks = _pending.pop(fullname, [])
            _run(fullname, hooks, module)

        # On this module's own loader instance only: its spec and __loader__ stay the real ones.
        loader.exec_module = exec_then_hook
        return spec


def _find_elsewhere(
    me: _Watcher, fullname: str, path: Sequence[str] | None, target: ModuleType | None
) -> importlib.machinery.ModuleSpec | None:
    for finder in sys.meta_path:
        if finder is me:
            continue
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        spec: importlib.machinery.ModuleSpec | None = find(fullname, path, target)
        if spec is not None:
            return spec
    return None
