"""Never silently off: one stderr line when HTTP is served where the kit records nothing.

Three cheap signals, none on the request path:

- Servers the kit cannot trace say so when they *start* (not when they are
  merely imported): WSGI servers (werkzeug's ``make_server`` behind Flask's
  ``run``, waitress, wsgiref) and Tornado's and Twisted Web's HTTP servers.
  Their start functions are wrapped once their module is imported.
- Hooked servers started in a mode the kit cannot trace report it from their
  own hooks (``report``): Granian with ``--interface rsgi|wsgi``, uvicorn
  with ``--interface wsgi``, gunicorn with a worker class that is not uvicorn's.
- An ASGI server the kit does not know: the framework's app class checks its
  first HTTP request for the middleware's mark and puts its own ``__call__``
  back at once, so the check costs one request, once. The mark is looked for
  after the request, so a middleware added inside the app counts too.
  Requests the kit excludes (``OTEL_PYTHON_ASGI_EXCLUDED_URLS``) carry no
  mark and are skipped.

Every finding is said once per process, with what to do.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

from otel_asgi_kit.asgi.import_hooks import when_imported
from otel_asgi_kit.asgi.keys import SPAN_KEY
from otel_asgi_kit.failsafe import warn
from otel_asgi_kit.patching import patch
from otel_asgi_kit.types import Receive, Scope, Send

INSTRUMENT = "wrap the app with app = otel_asgi_kit.instrument(app)"
NOT_ASGI = (
    "the kit traces ASGI apps only; serve an ASGI app with uvicorn, hypercorn, "
    "gunicorn -k uvicorn.workers.UvicornWorker, granian --interface asgi or daphne"
)

# (module, attribute path of the start function, what it is, what to do)
UNTRACEABLE_SERVERS = (
    ("werkzeug.serving", "make_server", "werkzeug's WSGI development server (Flask's app.run)", NOT_ASGI),
    ("waitress.server", "create_server", "the waitress WSGI server", NOT_ASGI),
    ("wsgiref.simple_server", "make_server", "wsgiref's WSGI server", NOT_ASGI),
    ("tornado.httpserver", "HTTPServer.initialize", "Tornado's HTTPServer", NOT_ASGI),
    ("twisted.web.server", "Site.__init__", "Twisted Web's Site", NOT_ASGI),
)
# (module, app class, framework): the first request they get without the middleware is reported.
FRAMEWORK_APPS = (
    ("starlette.applications", "Starlette", "Starlette"),
    ("litestar.app", "Litestar", "Litestar"),
    ("quart.app", "Quart", "Quart"),
    ("nexios.application", "NexiosApp", "Nexios"),
    ("django.core.handlers.asgi", "ASGIHandler", "Django"),
    ("falcon.asgi.app", "App", "Falcon"),
    ("blacksheep.server.application", "Application", "BlackSheep"),
)

_said: set[str] = set()
_excluded: Callable[[str], object] = lambda path: None  # noqa: E731 - replaced at install


def report(found: str, advice: str) -> None:
    """``found`` serves HTTP here and the kit records nothing of it: said once, with ``advice``."""
    if found in _said:
        return
    _said.add(found)
    warn(f"{found}; its requests are not traced: {advice}")


def install(excluded: re.Pattern[str] | None) -> None:
    """Watch for untraceable servers and unwrapped framework apps; imports nothing.

    ``excluded``: the paths the middleware lets through untraced (they carry no mark)."""
    global _excluded
    if excluded is not None:
        _excluded = excluded.search
    for module_name, path, what, advice in UNTRACEABLE_SERVERS:
        when_imported(module_name, functools.partial(_watch_start, path=path, what=what, advice=advice))
    for module_name, class_name, framework in FRAMEWORK_APPS:
        when_imported(module_name, functools.partial(_check_first_request, name=class_name, framework=framework))


def _resolve(module: ModuleType, path: str) -> tuple[Any, str] | None:
    owner: Any = module
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part, None)
    if owner is None or not callable(getattr(owner, name, None)):
        return None  # another release: nothing to detect with, and nothing is broken
    return owner, name


def _watch_start(module: ModuleType, *, path: str, what: str, advice: str) -> None:
    found = _resolve(module, path)
    if found is None:
        return
    owner, name = found

    def make(original: Any) -> Any:
        def start(*args: Any, **kwargs: Any) -> Any:
            report(what, advice)
            return original(*args, **kwargs)

        return start

    patch(owner, name, make)


def _check_first_request(module: ModuleType, *, name: str, framework: str) -> None:
    cls = getattr(module, name, None)
    if not isinstance(cls, type) or getattr(cls, "__call__", None) is None:  # noqa: B004 - the ASGI entry
        return

    def make(original: Any) -> Any:
        async def first_call(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
            if scope.get("type") != "http" or _excluded(scope.get("path", "")):
                await original(self, scope, receive, send)
                return
            if cls.__dict__.get("__call__") is first_call:
                cls.__call__ = original  # type: ignore[method-assign] # checked once: later requests go straight in
            try:
                await original(self, scope, receive, send)
            finally:
                # Looked at afterwards: the middleware may sit inside the app (``app.add_middleware``).
                if SPAN_KEY not in scope:
                    report(f"{framework} gets requests from a server the kit does not hook", INSTRUMENT)

        return first_call

    patch(cls, "__call__", make)
