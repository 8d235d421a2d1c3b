"""Zero code for aiohttp.web: the places every aiohttp server passes through, patched once on import.

Every request of every aiohttp server — ``web.run_app``, an
``AppRunner``/``TCPSite`` set-up, ``python -m aiohttp.web``, gunicorn's
``GunicornWebWorker`` — runs in ``RequestHandler._handle_request``, and every
response goes through ``StreamResponse._start``/``write``/``write_eof``.
Those are patched on their classes, so applications created before the kit
was loaded are traced too (nothing depends on which ``web.Application`` class
the app was built from). ``BaseRunner.setup`` starts the loop monitor inside
the server's loop; the ends of ``run_app`` and of the gunicorn worker flush
the kit before the process exits. Nothing is imported at start-up: each
patch is applied when the app itself imports the module (``after_import``).

What is relied on is checked first: if this aiohttp release lacks it, one
warning says so and aiohttp runs untouched (WebSocket message counting is
checked on its own: without it connections still get their span).

Patched (all in aiohttp): ``web_protocol.RequestHandler._handle_request`` and ``handle_error``,
``web_response.StreamResponse._start``/``write``/``write_eof``,
``web_ws.WebSocketResponse.receive``/``send_str``/``send_bytes``/``send_frame``,
``web_runner.BaseRunner.setup``, ``web._run_app``, ``worker.GunicornWebWorker._run``.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable
from typing import Any

from otel_asgi_kit.after_import import after_import
from otel_asgi_kit.failsafe import warn
from otel_asgi_kit.logs.handlers import route_to_root
from otel_asgi_kit.loop_health import ensure_loop_monitor
from otel_asgi_kit.patching import patch

_HANDLE_REQUEST_PARAMS = ["self", "request", "start_time", "request_handler"]
_HANDLE_ERROR_PARAMS = ["self", "request", "status", "exc", "message"]


_on_server_exit: Callable[[], None] = lambda: None  # noqa: E731 - replaced at install
_watching = False


def install_aiohttp_hooks(on_server_exit: Callable[[], None]) -> None:
    """Patch aiohttp (if installed) once its modules are imported: an app without aiohttp.web pays nothing."""
    global _on_server_exit, _watching
    _on_server_exit = on_server_exit
    if _watching or importlib.util.find_spec("aiohttp") is None:
        return
    _watching = True
    # web_runner: imported by every server path (aiohttp.web, python -m aiohttp.web, the gunicorn worker),
    # after the request, response and application modules it builds on.
    after_import("aiohttp.web_runner", _install_request_hooks)
    after_import("aiohttp.web", _hook_run_app)
    after_import("aiohttp.worker", _hook_gunicorn_worker)


def _install_request_hooks() -> None:
    try:
        problem = _missing()
    except Exception as exc:  # an aiohttp whose modules are not laid out as expected
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        warn(f"aiohttp {_version()}: {problem}; aiohttp requests are not traced")
        return
    _hook_requests()
    websocket_problem = _websocket_missing()
    if websocket_problem:
        warn(f"aiohttp {_version()}: {websocket_problem}; WebSocket messages are not counted")
    else:
        _hook_websockets()
    from aiohttp.web_runner import BaseRunner

    patch(BaseRunner, "setup", _make_setup)


def _version() -> str:
    try:
        import aiohttp

        return str(aiohttp.__version__)
    except Exception:
        return "?"


def _missing() -> str | None:
    from aiohttp import web_protocol, web_response

    handler = web_protocol.RequestHandler
    method = getattr(handler, "_handle_request", None)
    if method is None:
        return "RequestHandler._handle_request not found"
    params = list(inspect.signature(getattr(method, "__wrapped__", method)).parameters)
    if params != _HANDLE_REQUEST_PARAMS:
        return f"RequestHandler._handle_request takes {params}, expected {_HANDLE_REQUEST_PARAMS}"
    if "_request_handler" not in getattr(handler, "__slots__", ()):
        return "RequestHandler._request_handler not found"
    code = getattr(getattr(method, "__wrapped__", method), "__code__", None)
    if code is None or not {"_current_request", "handle_error"} <= set(code.co_names):
        return "RequestHandler._handle_request does not mark its request (_current_request) or call handle_error"
    error = getattr(handler, "handle_error", None)
    params = list(inspect.signature(error).parameters) if callable(error) else []
    if params != _HANDLE_ERROR_PARAMS or inspect.iscoroutinefunction(error):
        return f"RequestHandler.handle_error takes {params}, expected {_HANDLE_ERROR_PARAMS}"
    for name in ("_start", "write", "write_eof"):
        if not inspect.iscoroutinefunction(getattr(web_response.StreamResponse, name, None)):
            return f"StreamResponse.{name} not found"
    return None


def _websocket_missing() -> str | None:
    from aiohttp import web_ws

    for name in ("receive", "send_str", "send_bytes", "send_frame"):
        if not inspect.iscoroutinefunction(getattr(web_ws.WebSocketResponse, name, None)):
            return f"WebSocketResponse.{name} not found"
    return None


def _through(via: Callable[..., Any]) -> Callable[[Any], Any]:
    """A method that hands its original and its arguments to ``via``."""

    def make(original: Any) -> Any:
        async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            return await via(original, self, *args, **kwargs)

        return method

    return make


def _hook_requests() -> None:
    from aiohttp.web_protocol import RequestHandler
    from aiohttp.web_response import StreamResponse

    from otel_asgi_kit.aiohttp import middleware

    # Each replacement is at most one coroutine around the original (no second layer per call: these run
    # for every request); ``_start`` and ``handle_error`` add none.
    patch(RequestHandler, "_handle_request", middleware.handle_request_of)
    patch(RequestHandler, "handle_error", middleware.handle_error_of)
    patch(StreamResponse, "_start", middleware.response_start_of)
    patch(StreamResponse, "write", middleware.response_write_of)
    patch(StreamResponse, "write_eof", middleware.response_write_eof_of)


def _hook_websockets() -> None:
    from aiohttp.web_ws import WebSocketResponse

    from otel_asgi_kit.aiohttp import websocket

    setattr(WebSocketResponse, websocket.CONNECTION_ATTR, None)  # responses the kit never accepted
    patch(WebSocketResponse, "receive", _through(websocket.receive))
    patch(WebSocketResponse, "send_str", _through(websocket.send_data))
    patch(WebSocketResponse, "send_bytes", _through(websocket.send_data))
    patch(WebSocketResponse, "send_frame", _through(websocket.send_frame))


def _make_setup(original: Any) -> Any:
    async def setup(self: Any, *args: Any, **kwargs: Any) -> Any:
        ensure_loop_monitor()  # inside the server's loop, before it serves anything
        return await original(self, *args, **kwargs)

    return setup


def _make_exit(original: Any) -> Any:
    async def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return await original(*args, **kwargs)
        finally:
            # After the runner's cleanup (in-flight requests done), before the process exits:
            # gunicorn's worker leaves through sys.exit in a forked child, run_app after a signal.
            _on_server_exit()

    return run


def _hook_run_app() -> None:
    from aiohttp import web

    patch(web, "_run_app", _make_exit)


def _hook_gunicorn_worker() -> None:
    from aiohttp.worker import GunicornWebWorker

    def make_route_access_log(original: Any) -> Any:
        async def run(self: Any) -> Any:
            if self.cfg.accesslog:  # the worker logs access on gunicorn.access: JSON like every other line
                route_to_root(self.log.access_log.name)
            return await original(self)

        return run

    patch(GunicornWebWorker, "_run", lambda original: _make_exit(make_route_access_log(original)))
