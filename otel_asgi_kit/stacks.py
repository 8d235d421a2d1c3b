"""What the kit knows about frameworks and servers, for ``otel-asgi-kit doctor``.

Whether a server is hooked is read from its installed source (``ast``), not
by importing it: importing ``daphne.server`` installs a Twisted reactor, and
the doctor must not change the process it describes. The targets listed are
the ones the kit's hooks check at start-up (``asgi/servers.py``,
``asgi/granian.py``, ``asgi/daphne.py``, ``aiohttp/hooks.py``). The route
column follows the framework hooks (``asgi/frameworks.py``, ``asgi/django.py``,
``asgi/falcon.py``, ``asgi/blacksheep.py``, the aiohttp adapter).
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from otel_asgi_kit.asgi.granian import CALLBACK_PARAMS


@dataclass(frozen=True)
class Framework:
    package: str  # top-level package of the app's class
    name: str
    routes: str  # whether spans and metrics are named by route, and how


_NAMED = "yes: spans and metrics are named by the route template"
_UNNAMED = "no: spans are named by the method only and metrics carry no http_route"
# Most derived first: FastAPI is a Starlette subclass.
FRAMEWORKS = (
    Framework("fastapi", "FastAPI", _NAMED),
    Framework("starlette", "Starlette", _NAMED),
    Framework("litestar", "Litestar", _NAMED),
    Framework("quart", "Quart", _NAMED),
    Framework("nexios", "Nexios", _NAMED),
    Framework("django", "Django", _NAMED + " (resolver_match.route)"),
    Framework("falcon", "Falcon", _NAMED + " (uri_template)"),
    Framework("blacksheep", "BlackSheep", _NAMED + " (the matched route pattern)"),
    Framework("sanic", "Sanic", _UNNAMED),
    Framework("aiohttp", "aiohttp.web", _NAMED + " (the canonical route; served by aiohttp itself, not ASGI)"),
)
BARE = Framework("", "bare ASGI", "no: a bare ASGI app has no route template (spans are named by the method)")


@dataclass(frozen=True)
class Target:
    """A function a hook relies on: its module, qualified name and the parameters it must take."""

    module: str
    qualname: str
    params: tuple[str, ...] = ()
    exact: bool = False


@dataclass(frozen=True)
class Server:
    name: str
    targets: tuple[Target, ...]
    condition: str = ""  # how it must be run for the hook to apply


SERVERS = (
    Server("uvicorn", (Target("uvicorn.config", "Config.load"), Target("uvicorn.server", "Server._serve"))),
    Server("hypercorn", (Target("hypercorn.utils", "wrap_app", ("app", "wsgi_max_body_size", "mode")),)),
    Server("gunicorn", (Target("gunicorn.glogging", "Logger.setup"),), "with -k uvicorn.workers.UvicornWorker"),
    Server(
        "granian",
        (Target("granian.asgi", "_callback_wrapper", CALLBACK_PARAMS, exact=True),),
        "with --interface asgi",
    ),
    Server("daphne", (Target("daphne.server", "Server.__init__", ("application", "action_logger")),)),
    Server(
        "aiohttp",
        (Target("aiohttp.web_protocol", "RequestHandler._handle_request"), Target("aiohttp.web", "_run_app")),
        "aiohttp.web apps",
    ),
)
# Installed servers the kit cannot trace at all, and why.
UNTRACEABLE = (
    ("werkzeug", "a WSGI server (Flask's development server)"),
    ("waitress", "a WSGI server"),
    ("tornado", "Tornado's own HTTP server"),
)


def detect_framework(app: Any) -> tuple[Framework | None, bool]:
    """The app's framework (``BARE`` for any other async callable, ``None`` if not ASGI) and
    whether the app is already the kit's middleware."""
    from otel_asgi_kit.asgi.middleware import KitMiddleware

    wrapped = False
    while isinstance(app, KitMiddleware):
        app, wrapped = app.app, True
    for cls in type(app).__mro__:
        package = cls.__module__.partition(".")[0]
        for framework in FRAMEWORKS:
            if package == framework.package:
                return framework, wrapped
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", None)  # noqa: B004
    if call is not None and inspect.iscoroutinefunction(call):
        return BARE, wrapped
    return None, wrapped


def installed_version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def server_status(server: Server) -> str:
    """``hooked ...``, or what the hook misses in the installed release."""
    for target in server.targets:
        missing = _missing(target)
        if missing is not None:
            return f"NOT hooked: {missing}; wrap the app with otel_asgi_kit.instrument(app)"
    return f"hooked{f' ({server.condition})' if server.condition else ''}"


def _missing(target: Target) -> str | None:
    where = f"{target.module}.{target.qualname}"
    params = params_in_source(target.module, target.qualname)
    if params is None:
        return f"{where} not found"
    if target.exact and params != target.params:
        return f"{where} takes {params}, the hook expects {target.params}"
    absent = [p for p in target.params if p not in params]
    if absent:
        return f"{where} takes no {', '.join(absent)}"
    return None


def params_in_source(module: str, qualname: str) -> tuple[str, ...] | None:
    """The parameter names of ``module.qualname`` as written in its source file, without importing it
    (``self`` left out); ``None`` when the module or the function is not there."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    try:
        with open(spec.origin, encoding="utf-8") as source:
            body: list[ast.stmt] = ast.parse(source.read()).body
    except (OSError, SyntaxError, ValueError):
        return None
    *owners, name = qualname.split(".")
    for owner in owners:
        cls = next((n for n in body if isinstance(n, ast.ClassDef) and n.name == owner), None)
        if cls is None:
            return None
        body = cls.body
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            args = node.args
            names = tuple(a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs))
            return names[1:] if owners and names[:1] == ("self",) else names
    return None
