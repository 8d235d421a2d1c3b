"""What every hook on a framework's internals shares: check first, patch once, fail soft.

A hook names what it relies on with ``require``; when the installed version
lacks it, ``HookUnavailableError`` says what is missing and ``guarded`` turns it
into one stderr line: the app serves, its spans only lack what the hook
would have added.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from otel_asgi_kit import patching
from otel_asgi_kit.failsafe import report_once


class HookUnavailableError(Exception):
    """The framework version at hand lacks something a hook relies on."""


def require(owner: Any, name: str, params: tuple[str, ...] = ()) -> Any:
    """``owner.name``; it must exist and, if ``params`` are given, take them first and in this order."""
    where = f"{getattr(owner, '__module__', '?')}.{getattr(owner, '__qualname__', owner)}.{name}"
    try:
        attribute = inspect.getattr_static(owner, name)
    except AttributeError:
        raise HookUnavailableError(f"{where} is missing") from None
    if params:
        try:
            found = tuple(inspect.signature(getattr(owner, name)).parameters)
        except (TypeError, ValueError):
            raise HookUnavailableError(f"{where} has no readable signature") from None
        if found[: len(params)] != params:
            raise HookUnavailableError(f"{where} takes {found}, expected {params} first")
    return attribute


def patch(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    """Replace ``owner.name`` by ``make(original)``, once even if installed again (``otel_asgi_kit.patching``)."""
    patching.patch(owner, name, make)


def guarded(what: str, install: Callable[[], None]) -> None:
    """Run ``install``; any failure is one line on stderr naming ``what`` is lost, never an error."""
    try:
        install()
    except Exception as exc:
        report_once(what, exc)
