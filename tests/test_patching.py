"""Every patch the kit applies to third-party code is listed in one place, and applied once."""

from __future__ import annotations

import importlib

import pytest

from otel_asgi_kit import bootstrap, patching
from otel_asgi_kit.asgi.frameworks import install_framework_hooks
from otel_asgi_kit.asgi.servers import install_server_hooks
from otel_asgi_kit.executor_context import install_executor_context


def test_every_applied_patch_is_known() -> None:
    """With every supported framework and server imported, each patch applied is listed in KNOWN."""
    for module in ("starlette.routing", "quart.ctx", "nexios.routing.router",
                   "litestar.middleware._internal.exceptions.middleware",
                   "django.core.handlers.base", "falcon.asgi", "blacksheep.server.application",
                   "aiohttp.web", "aiohttp.web_runner", "aiohttp.worker",
                   "granian.asgi", "granian.server.common"):  # fmt: skip
        try:
            importlib.import_module(module)
        except ImportError:
            continue  # a framework this Python cannot run: its hook stays off
    install_framework_hooks()
    install_server_hooks(lambda: None, lambda: None, bootstrap._OTHER_SERVERS)
    install_executor_context()
    applied = patching.applied()
    assert len(applied) >= 25
    assert sorted(set(applied) - set(patching.KNOWN)) == []


def test_a_second_patch_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patching the same target twice wraps it once, and is recorded once."""
    monkeypatch.setattr(patching, "_applied", [])

    class Owner:
        def method(self) -> int:
            return 1

    calls: list[int] = []

    def make(original: object) -> object:
        def method(self: Owner) -> int:
            calls.append(1)
            return original(self)  # type: ignore[operator, no-any-return]

        return method

    patching.patch(Owner, "method", make)
    patching.patch(Owner, "method", make)
    assert Owner().method() == 1
    assert calls == [1]
    assert patching.applied() == [f"{__name__}.{Owner.__qualname__}.method"]
