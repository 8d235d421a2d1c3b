"""Granian (``granian --interface asgi|asginl``): the app, the access log and the final flush.

Granian loads the app in each worker and hands it to
``granian.asgi._callback_wrapper(callback, scope_opts, state, access_log_fmt)``,
which only ASGI workers call (RSGI and WSGI apps never pass here), in every
runner: processes (``server.mp``), threads on free-threaded builds
(``server.mt``) and the embedded server. Its callback is wrapped there. The
hook is set when ``granian.asgi`` is imported, before those modules bind the
name. ``Granian.serve`` says once at start when the interface is RSGI or WSGI,
which the kit cannot trace.

The access log is written by Granian after the app returned, when the
request's span context is gone. The middleware leaves the span in the scope,
and Granian's access-log function gets that scope: the patched
``_build_access_logger`` attaches the span around the log call, so the line
carries the request's trace id. Nothing of this runs when the access log is off.

Workers are ``multiprocessing`` children that end with ``os._exit`` after a
fork: ``atexit`` never runs there, so the final flush is registered as a
``multiprocessing`` finalizer, which the child runs on its way out.
"""

from __future__ import annotations

import inspect
import multiprocessing
import multiprocessing.util
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from opentelemetry import context, trace

from otel_asgi_kit.asgi import unhooked
from otel_asgi_kit.asgi.import_hooks import when_imported
from otel_asgi_kit.asgi.keys import SPAN_KEY
from otel_asgi_kit.failsafe import warn_once as warn
from otel_asgi_kit.patching import patch

_RUNNERS = ("granian.server.mp", "granian.server.mt", "granian.server.embed")
CALLBACK_PARAMS = ("callback", "scope_opts", "state", "access_log_fmt")
ACCESS_LOGGER_PARAMS = ("fmt",)
# multiprocessing runs finalizers by descending priority at the worker's exit; any value >= 0 runs.
_FLUSH_PRIORITY = 10


def install(
    after_logging_config: Callable[[], None],
    *,
    wrap_app: Callable[[Any], Any],
    on_server_exit: Callable[[], None],
) -> None:
    """Hook Granian when (or if) it is imported; nothing is imported here."""
    del after_logging_config  # Granian configures logging with dictConfig, which the kit already follows
    when_imported("granian.asgi", lambda module: _hook(module, wrap_app, on_server_exit))
    when_imported("granian.server.common", _check_interface)


def _check_interface(module: ModuleType) -> None:
    """``Granian(...).serve()`` with an RSGI or WSGI app: said once, in the main process, at start."""
    server = getattr(module, "AbstractServer", None)
    if not isinstance(server, type) or not callable(getattr(server, "serve", None)):
        return  # nothing to check with: the servers still run, traced through the callback hook

    def make(serve: Any) -> Any:
        def checked_serve(self: Any, *args: Any, **kwargs: Any) -> Any:
            interface = str(getattr(self.interface, "value", self.interface))
            if interface not in ("asgi", "asginl"):
                unhooked.report(f"Granian with --interface {interface}", unhooked.NOT_ASGI)
            return serve(self, *args, **kwargs)

        return checked_serve

    patch(server, "serve", make)


def _params(function: Any) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)


def _hook(module: ModuleType, wrap_app: Callable[[Any], Any], on_server_exit: Callable[[], None]) -> None:
    callback_wrapper = getattr(module, "_callback_wrapper", None)
    if callback_wrapper is None or _params(callback_wrapper) != CALLBACK_PARAMS:
        found = _params(callback_wrapper) if callback_wrapper is not None else "nothing"
        warn(
            f"granian.asgi._callback_wrapper{CALLBACK_PARAMS} was not found (found {found}): requests served by "
            "this Granian are not traced; wrap the app with otel_asgi_kit.instrument(app)"
        )
        return
    original = callback_wrapper

    def make(original: Any) -> Any:
        def callback_wrapper(callback: Any, scope_opts: Any, state: Any, access_log_fmt: Any = None) -> Any:
            _flush_at_worker_exit(on_server_exit)
            return original(wrap_app(callback), scope_opts, state, access_log_fmt)

        return callback_wrapper

    patch(module, "_callback_wrapper", make)
    # Runners imported before the hook (a programmatic start) bound the original under another name.
    for name in _RUNNERS:
        runner = sys.modules.get(name)
        if runner is not None and getattr(runner, "_asgi_call_wrap", None) is original:
            runner._asgi_call_wrap = module._callback_wrapper  # type: ignore[attr-defined]
    _link_access_log(module)


def _link_access_log(module: ModuleType) -> None:
    build = getattr(module, "_build_access_logger", None)
    if build is None or _params(build) != ACCESS_LOGGER_PARAMS:
        warn(
            "granian.asgi._build_access_logger(fmt) was not found: Granian's access-log lines "
            "are exported without the request's trace id"
        )
        return

    def make(build: Any) -> Any:
        def build_linked(fmt: Any) -> Any:
            access_log = build(fmt)

            def linked(rt: Any, mt: Any, scope: Any, resp_code: Any) -> Any:
                span = scope.get(SPAN_KEY)
                if span is None:
                    return access_log(rt, mt, scope, resp_code)
                token = context.attach(trace.set_span_in_context(span))
                try:
                    return access_log(rt, mt, scope, resp_code)
                finally:
                    context.detach(token)

            return linked

        return build_linked

    patch(module, "_build_access_logger", make)


_flush_registered = False


def _flush_at_worker_exit(on_server_exit: Callable[[], None]) -> None:
    """In a worker process: flush when ``multiprocessing`` ends it (``atexit`` does not run there)."""
    global _flush_registered
    if _flush_registered or multiprocessing.parent_process() is None:
        return  # the main process (threads runner, embedded server) flushes at exit as usual
    _flush_registered = True
    multiprocessing.util.Finalize(None, on_server_exit, exitpriority=_FLUSH_PRIORITY)
