"""Granian's and Daphne's hooks, the import watcher and the never-silently-off checks, in process."""

from __future__ import annotations

import asyncio
import logging
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_asgi_kit import patching
from otel_asgi_kit.asgi import daphne, granian, unhooked
from otel_asgi_kit.asgi.import_hooks import when_imported
from otel_asgi_kit.asgi.middleware import SPAN_KEY


@pytest.fixture(autouse=True)
def _own_patch_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in modules' patches stay out of the process-wide record other tests read."""
    monkeypatch.setattr(patching, "_applied", [])


@pytest.fixture
def module_dir(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.startswith("kit_probe")]:
            del sys.modules[name]


def test_hook_runs_after_the_module_and_before_the_importer_binds(module_dir: Path) -> None:
    """A watched module is hooked once its code ran: ``from m import f`` already gets the replacement."""
    (module_dir / "kit_probe_a.py").write_text("def f():\n    return 'original'\n")
    seen: list[str] = []

    def hook(module: types.ModuleType) -> None:
        seen.append(module.f())
        module.f = lambda: "hooked"

    when_imported("kit_probe_a", hook)
    from kit_probe_a import f  # type: ignore[import-not-found]

    assert seen == ["original"]
    assert f() == "hooked"
    when_imported("kit_probe_a", lambda m: seen.append("late"))  # already imported: runs at once
    assert seen == ["original", "late"]


def test_failing_hook_is_reported_once_and_the_import_succeeds(
    module_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hook that raises never breaks the server's import; one stderr line names the module."""
    (module_dir / "kit_probe_b.py").write_text("VALUE = 3\n")

    def broken(module: types.ModuleType) -> None:
        raise RuntimeError("changed internals")

    when_imported("kit_probe_b", broken)
    import kit_probe_b  # type: ignore[import-not-found]

    assert kit_probe_b.VALUE == 3
    err = capsys.readouterr().err
    assert err.count("hooking kit_probe_b failed and was contained") == 1 and "changed internals" in err


def _fake_module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(textwrap.dedent(source), module.__dict__)
    return module


def test_granian_with_other_internals_is_left_alone_with_one_warning(capsys: pytest.CaptureFixture[str]) -> None:
    """A Granian whose callback wrapper has other parameters: untouched, one line saying what to do."""
    module = _fake_module("granian.asgi", "def _callback_wrapper(callback, options):\n    return callback\n")
    original = module._callback_wrapper
    for _ in range(2):
        granian._hook(module, lambda app: ("wrapped", app), lambda: None)
    assert module._callback_wrapper is original
    err = capsys.readouterr().err
    assert err.count("granian.asgi._callback_wrapper") == 1
    assert "('callback', 'options')" in err and "otel_asgi_kit.instrument(app)" in err


def test_granian_access_log_runs_inside_the_request_span() -> None:
    """Granian's real access-log function, called after the app returned, sees the span the middleware left."""
    import logging

    import granian.asgi as real
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    granian._hook(real, lambda app: app, lambda: None)
    span = TracerProvider().get_tracer("t").start_span("GET /x")
    seen: list[int] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(trace.get_current_span().get_span_context().span_id)

    logger = logging.getLogger("granian.access")
    handler, level = Grab(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        access_log = real._build_access_logger("%(path)s")
        scope = {"client": ("1.2.3.4", 5), "http_version": "1.1", "path": "/x", "query_string": b"", "scheme": "http"}
        access_log(0.0, 0.0, {**scope, SPAN_KEY: span}, 200)
        access_log(0.0, 0.0, scope, 200)  # a request the kit did not trace (an excluded path)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert seen == [span.get_span_context().span_id, 0]


def test_daphne_without_action_logger_is_left_alone_with_one_warning(capsys: pytest.CaptureFixture[str]) -> None:
    """A Daphne whose Server takes no action_logger: untouched, one line saying what to do."""
    module = _fake_module(
        "daphne.server",
        """
        class Server:
            def __init__(self, application, endpoints=None):
                self.application = application
            def run(self):
                pass
        """,
    )
    init = module.Server.__init__
    for _ in range(2):
        daphne._hook(module, lambda app: ("wrapped", app), lambda: None)
    assert module.Server.__init__ is init
    assert module.Server(application="app").application == "app"
    err = capsys.readouterr().err
    assert err.count("daphne.server.Server") == 1 and "otel_asgi_kit.instrument(app)" in err


def test_daphne_console_access_log_is_replaced_and_a_file_one_kept() -> None:
    """Daphne's console access log becomes the kit's logger; one written to a file stays Daphne's."""
    module = _fake_module(
        "daphne.server",
        """
        class Server:
            def __init__(self, application, endpoints=None, action_logger=None):
                self.application, self.action_logger = application, action_logger
            def run(self):
                pass
        """,
    )
    access = _fake_module(
        "daphne.access", "class AccessLogGenerator:\n    def __init__(self, s):\n        self.stream = s\n"
    )
    generator = access.AccessLogGenerator
    generator.__module__ = "daphne.access"
    calls: list[str] = []

    def wrap_app(app: str) -> Any:
        async def wrapped(scope: Any, receive: Any, send: Any) -> None:
            calls.append(app)

        return wrapped

    daphne._hook(module, wrap_app, lambda: None)
    console = module.Server("app", action_logger=generator(sys.stdout))
    asyncio.run(console.application({}, _noop, _noop))
    assert calls == ["app"]  # the kit's wrapper around the given app
    assert console.action_logger is daphne.log_action
    with open(Path(__file__), encoding="utf-8") as file:
        kept = generator(file)
        assert module.Server(application="app", action_logger=kept).action_logger is kept


class _App:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["served"] = True


async def _noop() -> Any:
    return None


def test_first_request_without_the_middleware_is_reported_once_then_unchecked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The framework check looks at one request, says it once, and puts the class's __call__ back."""
    import asyncio
    import re

    module = types.ModuleType("fake_framework")
    module.App = type("App", (_App,), {})  # type: ignore[attr-defined]
    own_call = _App.__call__
    monkeypatch.setattr(unhooked, "_excluded", re.compile("^/healthz$").search)  # what install() sets
    unhooked._check_first_request(module, name="App", framework="FakeFramework")
    app = module.App()
    asyncio.run(app({"type": "http", "path": "/healthz"}, _noop, _noop))  # excluded: not a verdict
    assert capsys.readouterr().err == ""
    scope: dict[str, Any] = {"type": "http", "path": "/items/1"}
    asyncio.run(app(scope, _noop, _noop))
    assert scope["served"]
    assert module.App.__call__ is own_call  # back to the class's own: nothing per request from now on
    err = capsys.readouterr().err
    assert err.count("FakeFramework gets requests from a server the kit does not hook") == 1
    assert "otel_asgi_kit.instrument(app)" in err


def test_first_request_through_the_middleware_says_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    """A request that passed the kit's middleware (span in the scope) is no finding."""
    import asyncio

    module = types.ModuleType("fake_framework2")
    module.App = type("App", (_App,), {})  # type: ignore[attr-defined]
    unhooked._check_first_request(module, name="App", framework="Traced")
    asyncio.run(module.App()({"type": "http", "path": "/", SPAN_KEY: object()}, _noop, _noop))
    assert "Traced" not in capsys.readouterr().err


def test_middleware_added_inside_the_app_is_no_finding(capsys: pytest.CaptureFixture[str]) -> None:
    """FastAPI's ``app.add_middleware(KitMiddleware)`` puts the middleware inside: the verdict waits for it."""
    import asyncio

    from fastapi import FastAPI

    from otel_asgi_kit import KitMiddleware
    from otel_asgi_kit.testing import capture_telemetry

    module = types.ModuleType("fake_framework3")

    class Inner(FastAPI):
        pass

    module.App = Inner  # type: ignore[attr-defined]
    unhooked._check_first_request(module, name="App", framework="Inside")
    app = module.App()
    app.add_middleware(KitMiddleware)
    messages: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        messages.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b"", "root_path": ""}
    with capture_telemetry():
        asyncio.run(app(scope, receive, send))
    assert messages and messages[0]["status"] == 404
    assert "Inside" not in capsys.readouterr().err


def test_daphne_app_failure_is_logged_once_where_it_happens() -> None:
    """The kit logs an app's exception as it leaves the app; Daphne's later copy of it is dropped."""
    module = _fake_module(
        "daphne.server",
        """
        class Server:
            def __init__(self, application, action_logger=None):
                self.application = application
            def run(self):
                pass
        """,
    )
    boom = RuntimeError("boom")

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise boom

    daphne._hook(module, lambda app: app, lambda: None)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    daphne.server_logger.addHandler(keep)
    try:
        with pytest.raises(RuntimeError):
            asyncio.run(module.Server(failing).application({}, _noop, _noop))
        # What Daphne's once-a-second check then logs for the same exception:
        daphne.server_logger.error(daphne.FAILURE, boom, exc_info=boom)
        other = ValueError("other")
        daphne.server_logger.error(daphne.FAILURE, other, exc_info=other)  # not seen by the kit: kept
    finally:
        daphne.server_logger.removeHandler(keep)
    assert [(r.getMessage(), r.funcName) for r in records] == [
        ("Exception inside application: boom", "app_logging_failures"),
        ("Exception inside application: other", "test_daphne_app_failure_is_logged_once_where_it_happens"),
    ]


# Tornado and waitress are not among the test dependencies; everything else is.
_RELIED_ON = [
    *[(module, f"{cls}.__call__") for module, cls, _ in unhooked.FRAMEWORK_APPS],
    *[
        (module, path)
        for module, path, _, _ in unhooked.UNTRACEABLE_SERVERS
        if not module.startswith(("tornado", "waitress"))
    ],
]


@pytest.mark.parametrize(("module", "qualname"), _RELIED_ON)
def test_what_the_checks_rely_on_is_in_the_installed_releases(module: str, qualname: str) -> None:
    """Each app class and server start function the checks wrap exists in the release the tests install."""
    from otel_asgi_kit.stacks import params_in_source

    params = params_in_source(module, qualname)
    assert params is not None, f"{module}.{qualname} is gone: the never-silently-off check for it is blind"
    if qualname.endswith("__call__"):
        assert params == ("scope", "receive", "send")


def test_every_check_target_is_listed_with_the_kit_s_patches() -> None:
    """The never-silently-off checks patch only targets listed in otel_asgi_kit.patching.KNOWN."""
    targets = [f"{module}.{path}" for module, path, _, _ in unhooked.UNTRACEABLE_SERVERS]
    targets += [f"{module}.{cls}.__call__" for module, cls, _ in unhooked.FRAMEWORK_APPS]
    assert [t for t in targets if t not in patching.KNOWN] == []
