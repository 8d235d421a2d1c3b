"""Zero-code wrapping: the app each ASGI server loads goes through ``wrap_app``.

uvicorn (also under gunicorn's ``UvicornWorker``) builds its app in
``Config.load``; hypercorn in ``hypercorn.utils.wrap_app``. Both are patched
once at start-up, before the server imports the user's app. The same hooks
put the server's loggers back on the kit's handlers after the server has
applied its own logging config, and run the kit's final flush when
uvicorn's ``Server._serve`` ends.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

from otel_asgi_kit.asgi import daphne, granian, unhooked
from otel_asgi_kit.asgi.frameworks import install_framework_hooks
from otel_asgi_kit.asgi.middleware import KitMiddleware
from otel_asgi_kit.failsafe import report_once
from otel_asgi_kit.loop_health import ensure_loop_monitor
from otel_asgi_kit.patching import patch
from otel_asgi_kit.types import ASGIApp

_TRACED_GUNICORN_WORKERS = ("uvicorn", "aiohttp")
_GUNICORN_ADVICE = (
    "the kit traces ASGI apps through uvicorn's worker (gunicorn -k uvicorn.workers.UvicornWorker) "
    "and aiohttp.web apps through aiohttp.GunicornWebWorker"
)
_on_server_exit: Callable[[], None] = lambda: None  # noqa: E731 - replaced at install


def wrap_app(app: ASGIApp) -> ASGIApp:
    """``app`` inside the kit's middleware, once; framework hooks installed."""
    install_framework_hooks()
    if isinstance(app, KitMiddleware):
        return app
    return KitMiddleware(app)


def install_server_hooks(
    after_logging_config: Callable[[], None],
    on_server_exit: Callable[[], None],
    others: Sequence[tuple[str, Callable[[Callable[[], None]], None]]] = (),
) -> None:
    """The ASGI servers' hooks, and ``others`` (name, install(after_logging_config)): servers of another
    adapter (aiohttp's, given by ``bootstrap``), each installed only when its package is there."""
    global _on_server_exit
    _on_server_exit = on_server_exit
    servers: list[tuple[str, Callable[[Callable[[], None]], None]]] = [
        ("uvicorn", _hook_uvicorn),
        ("hypercorn", _hook_hypercorn),
        ("gunicorn", _hook_gunicorn),
        ("granian", functools.partial(granian.install, wrap_app=wrap_app, on_server_exit=on_server_exit)),
        ("daphne", functools.partial(daphne.install, wrap_app=wrap_app, on_server_exit=on_server_exit)),
        *others,
    ]
    for name, install in servers:
        if importlib.util.find_spec(name) is None:
            continue
        try:
            install(after_logging_config)
        except Exception as exc:  # an unknown server version must not stop the app
            report_once(f"hooking {name}", exc)


def _hook_uvicorn(after_logging_config: Callable[[], None]) -> None:
    from uvicorn.config import Config

    def make_load(original: Any) -> Any:
        def load(self: Any) -> None:
            original(self)
            if self.interface != "wsgi":
                self.loaded_app = wrap_app(self.loaded_app)
            else:
                unhooked.report("uvicorn with --interface wsgi", unhooked.NOT_ASGI)

        return load

    def make_configure_logging(original: Any) -> Any:
        def configure_logging(self: Any) -> None:
            original(self)
            after_logging_config()

        return configure_logging

    def make_serve(original: Any) -> Any:
        async def _serve(self: Any, *args: Any, **kwargs: Any) -> None:
            ensure_loop_monitor()  # inside the server's loop, before it serves anything
            try:
                await original(self, *args, **kwargs)
            finally:
                # Inside ``serve``'s capture_signals block: before uvicorn re-raises
                # the signal that stopped it (the process dies then, without atexit).
                _on_server_exit()

        return _serve

    from uvicorn.server import Server

    patch(Config, "load", make_load)
    patch(Config, "configure_logging", make_configure_logging)
    patch(Server, "_serve", make_serve)


def _hook_hypercorn(after_logging_config: Callable[[], None]) -> None:
    import hypercorn.logging
    import hypercorn.utils

    def make_wrap(original: Any) -> Any:
        def wrap(app: Any, wsgi_max_body_size: int, mode: Any) -> Any:
            if mode is None:
                mode = "asgi" if hypercorn.utils.is_asgi(app) else "wsgi"
            if mode == "asgi":
                app = wrap_app(app)
            return original(app, wsgi_max_body_size, mode)

        return wrap

    def make_logger_init(original: Any) -> Any:
        def init(self: Any, config: Any) -> None:
            original(self, config)
            after_logging_config()

        return init

    patch(hypercorn.utils, "wrap_app", make_wrap)
    patch(hypercorn.logging.Logger, "__init__", make_logger_init)


def _hook_gunicorn(after_logging_config: Callable[[], None]) -> None:
    from gunicorn.glogging import Logger

    def make_setup(original: Any) -> Any:
        def setup(self: Any, cfg: Any) -> None:
            original(self, cfg)
            after_logging_config()
            worker = str(getattr(cfg, "worker_class_str", "uvicorn"))
            # uvicorn's worker runs ASGI apps, aiohttp's runs aiohttp.web apps: the kit traces both.
            if not any(traced in worker.lower() for traced in _TRACED_GUNICORN_WORKERS):
                unhooked.report(f"gunicorn with worker class {worker!r}", _GUNICORN_ADVICE)

        return setup

    patch(Logger, "setup", make_setup)
