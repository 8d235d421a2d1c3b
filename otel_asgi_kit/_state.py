"""The one slot adapters read the process's instrumentation from.

``bootstrap`` writes it once configured; ``testing`` swaps it for a capture.
Adapters import this module, never ``bootstrap``: data flows settings →
bootstrap → slot → adapters, and nothing low reaches up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otel_asgi_kit.core.instrumentation import Instrumentation

_installed: Instrumentation | None = None
_override: Instrumentation | None = None


def current_instrumentation() -> Instrumentation | None:
    """What adapters record with: a test capture's, else this process's (``None`` before ``configure``)."""
    return _override if _override is not None else _installed


def install(instrumentation: Instrumentation | None) -> None:
    global _installed
    _installed = instrumentation


@contextmanager
def use_instrumentation(instrumentation: Instrumentation) -> Iterator[None]:
    """Make every adapter record with ``instrumentation`` (``otel_asgi_kit.testing`` uses it)."""
    global _override
    previous, _override = _override, instrumentation
    try:
        yield
    finally:
        _override = previous
