"""``when_imported``: ``after_import`` with the module handed to the hook.

Granian's and Daphne's hooks and the never-silently-off checks wait for the
server's or framework's own import (``daphne.server`` installs Twisted's
reactor as an import side effect; Granian would load its Rust extension in
every process that merely has it installed). One finder serves the whole kit:
``otel_asgi_kit.after_import``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType

from otel_asgi_kit.after_import import after_import

Hook = Callable[[ModuleType], None]


def when_imported(name: str, hook: Hook) -> None:
    """``hook(module)`` now if ``name`` is imported already, else right after its first import."""
    after_import(name, lambda: hook(sys.modules[name]))
