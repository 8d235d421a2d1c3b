"""``otel-asgi-kit doctor``: the effective configuration, masked secrets, and one problem line per finding."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from otel_asgi_kit.admin import start_admin_server
from otel_asgi_kit.cli import doctor
from tests.support.servers import ROOT, free_port


@pytest.fixture
def quiet_env() -> dict[str, str]:
    """Nothing exported over OTLP and a free admin port: no problems by default."""
    return {
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(free_port()),
    }


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _run(env: dict[str, str], app: str | None = None) -> tuple[int, str]:
    out = io.StringIO()
    return doctor(app, env, out), out.getvalue()


def _problems(output: str) -> list[str]:
    return [line.removeprefix("problem: ") for line in output.splitlines() if line.startswith("problem: ")]


def _config_line(output: str, name: str) -> str:
    (line,) = [line for line in output.splitlines() if line.strip().startswith(name + " ")]
    return line


def test_clean_configuration_exits_zero(quiet_env: dict[str, str]) -> None:
    """With nothing to complain about the exit code is 0 and no problem line is printed."""
    code, output = _run(quiet_env)
    assert code == 0, output
    assert _problems(output) == []
    assert "No problems found." in output
    # The installed SDK/exporter releases are the ones the kit's shortcuts were written for.
    assert "Fast paths: all on" in output


def test_a_changed_sdk_turns_fast_paths_off_and_says_so(
    quiet_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_asgi_kit.sdk import server_span

    monkeypatch.setattr(server_span, "_SPAN_FIELDS", server_span._SPAN_FIELDS | {"_a_new_sdk_field"})
    code, output = _run(quiet_env)
    assert code == 0, output
    assert "Fast paths: off for server span start" in output


def test_every_variable_is_listed_with_its_source(quiet_env: dict[str, str]) -> None:
    """Each variable shows its value and whether it came from the env, the spec default or the kit's default."""
    code, output = _run({**quiet_env, "OTEL_SERVICE_NAME": "shop"})
    assert code == 0, output
    assert _config_line(output, "OTEL_SERVICE_NAME").split()[1:] == ["shop", "[env]"]
    assert _config_line(output, "OTEL_TRACES_SAMPLER").split()[1:] == ["parentbased_always_on", "[default]"]
    assert _config_line(output, "OTEL_ASGI_KIT_LOG_FORMAT").split()[1:] == ["json", "[kit", "default]"]


def test_secrets_are_masked(quiet_env: dict[str, str]) -> None:
    """OTLP header values and the admin token appear as *** and never in clear."""
    env = {
        **quiet_env,
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cr3t-one",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "authorization=Bearer%20s3cr3t-two",
        "OTEL_ASGI_KIT_ADMIN_TOKEN": "s3cr3t-three",
    }
    code, output = _run(env)
    assert code == 0, output
    assert "s3cr3t" not in output
    for name in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_ASGI_KIT_ADMIN_TOKEN"):
        assert _config_line(output, name).split()[1:] == ["***", "[env]"]


def test_bad_values_are_problems(quiet_env: dict[str, str]) -> None:
    """A value the settings reject is one problem line naming variable, value and expectation; exit 1."""
    code, output = _run({**quiet_env, "OTEL_TRACES_SAMPLER_ARG": "abc"})
    assert code == 1
    assert _problems(output) == [
        "OTEL_TRACES_SAMPLER_ARG='abc' is not a number between 0 and 1; using the default '1.0'"
    ]


def test_unreachable_otlp_endpoint_is_a_problem(quiet_env: dict[str, str]) -> None:
    """An endpoint nobody listens on is reported once per address, naming the signals that use it."""
    port = free_port()
    env = {
        **quiet_env,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
    }
    code, output = _run(env)
    assert code == 1
    (problem,) = _problems(output)
    assert problem.startswith(f"OTLP endpoint 127.0.0.1:{port} (traces, logs) is not reachable: ")
    assert f"http://127.0.0.1:{port}/v1/traces (http/protobuf): not reachable" in output


def test_reachable_otlp_endpoint_is_fine(quiet_env: dict[str, str], listener: int) -> None:
    """An endpoint that accepts a TCP connection passes."""
    env = {**quiet_env, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{listener}"}
    code, output = _run(env)
    assert code == 0, output
    assert f"http://127.0.0.1:{listener}/v1/traces (http/protobuf): accepts connections" in output


def test_taken_admin_port_is_a_problem(quiet_env: dict[str, str], listener: int) -> None:
    """An admin port another program holds would leave /metrics unserved: a problem."""
    code, output = _run({**quiet_env, "OTEL_EXPORTER_PROMETHEUS_PORT": str(listener)})
    assert code == 1
    (problem,) = _problems(output)
    assert problem.startswith(f"admin port 127.0.0.1:{listener} cannot be bound (address already in use)")


def test_admin_port_of_a_running_kit_is_not_a_problem(quiet_env: dict[str, str]) -> None:
    """When the kit's own admin server holds the port (the app is running), doctor says so and passes."""
    server = start_admin_server("127.0.0.1", 0, CollectorRegistry())
    assert server is not None
    try:
        code, output = _run({**quiet_env, "OTEL_EXPORTER_PROMETHEUS_PORT": str(server.port)})
    finally:
        server.stop()
    assert code == 0, output
    assert f"127.0.0.1:{server.port}: in use by a running otel-asgi-kit" in output


def _app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    name = f"doctor_app_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return name


@pytest.mark.parametrize(
    ("source", "framework"),
    [
        ("from fastapi import FastAPI\napp = FastAPI()\n", "FastAPI"),
        ("from starlette.applications import Starlette\napp = Starlette()\n", "Starlette"),
        ("from litestar import Litestar\napp = Litestar(route_handlers=[])\n", "Litestar"),
        ("from quart import Quart\napp = Quart(__name__)\n", "Quart"),
        ("from nexios import NexiosApp\napp = NexiosApp()\n", "Nexios"),
        ("import falcon.asgi\napp = falcon.asgi.App()\n", "Falcon"),
        ("from blacksheep import Application\napp = Application()\n", "BlackSheep"),
        # Django's settings are configured once per process: the example's, shared with other tests.
        ("from examples.django_app import app\n", "Django"),
        ("async def app(scope, receive, send):\n    pass\n", "bare ASGI"),
        (
            "import otel_asgi_kit\nfrom fastapi import FastAPI\napp = otel_asgi_kit.instrument(FastAPI())\n",
            "FastAPI (already wrapped by otel_asgi_kit.instrument)",
        ),
    ],
)
def test_app_framework_is_named(
    quiet_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, framework: str
) -> None:
    """APP is imported from the working directory and its framework named."""
    module = _app_module(tmp_path, monkeypatch, source)
    code, output = _run(quiet_env, f"{module}:app")
    assert code == 0, output
    assert f"  framework: {framework}\n" in output


def test_app_that_does_not_import_is_a_problem(
    quiet_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import error of the app becomes one problem line with the exception."""
    module = _app_module(tmp_path, monkeypatch, "import no_such_dependency_xyz\n")
    code, output = _run(quiet_env, f"{module}:app")
    assert code == 1
    assert _problems(output) == [
        f"APP '{module}:app' cannot be loaded: ModuleNotFoundError: No module named 'no_such_dependency_xyz'"
    ]


def test_app_that_is_not_asgi_is_a_problem(
    quiet_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain (WSGI-style) callable is not an ASGI app."""
    module = _app_module(tmp_path, monkeypatch, "def app(environ, start_response):\n    return []\n")
    code, output = _run(quiet_env, f"{module}:app")
    assert code == 1
    assert _problems(output) == [f"APP '{module}:app' is a function, not an ASGI app (an async callable)"]


def test_aiohttp_application_is_recognised(
    quiet_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An aiohttp web.Application is no problem: the kit traces it through its aiohttp hooks."""
    module = _app_module(tmp_path, monkeypatch, "from aiohttp import web\napp = web.Application()\n")
    _, output = _run(quiet_env, f"{module}:app")
    assert "framework: aiohttp.web (Application), traced through the kit's aiohttp hooks" in output
    assert not [p for p in _problems(output) if "APP" in p]


def test_installed_servers_are_listed_as_hooked(quiet_env: dict[str, str]) -> None:
    """Each server the kit hooks is listed with its version and, for the installed release, as hooked."""
    from importlib.metadata import version

    _, output = _run(quiet_env)
    for server, condition in [
        ("uvicorn", ""),
        ("hypercorn", ""),
        ("gunicorn", " (with -k uvicorn.workers.UvicornWorker)"),
        ("granian", " (with --interface asgi)"),
        ("daphne", ""),
        ("aiohttp", " (aiohttp.web apps)"),
    ]:
        assert f"  {server} {version(server)}: hooked{condition}\n" in output
    assert f"  werkzeug {version('werkzeug')}: a WSGI server" in output  # installed, never traced


@pytest.mark.parametrize(
    ("source", "routes"),
    [
        ("from starlette.applications import Starlette\napp = Starlette()\n", "yes"),
        ("import falcon.asgi\napp = falcon.asgi.App()\n", "yes"),
        ("async def app(scope, receive, send):\n    pass\n", "no"),
    ],
)
def test_app_says_whether_routes_are_named(
    quiet_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, routes: str
) -> None:
    """The doctor says whether the app's spans and metrics will carry the route template."""
    module = _app_module(tmp_path, monkeypatch, source)
    _, output = _run(quiet_env, f"{module}:app")
    assert f"  routes named: {routes}: " in output


def test_a_server_release_the_hooks_do_not_fit_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hooked function missing or with other parameters in the installed source: NOT hooked, and why."""
    from otel_asgi_kit.stacks import Server, Target, server_status

    source = "class Server:\n    def __init__(self, app, endpoints):\n        pass\n"
    (tmp_path / "kit_fake_server.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    fits = Server("fake", (Target("kit_fake_server", "Server.__init__", ("app",)),))
    changed = Server("fake", (Target("kit_fake_server", "Server.__init__", ("application", "action_logger")),))
    exact = Server("fake", (Target("kit_fake_server", "Server.__init__", ("app",), exact=True),))
    gone = Server("fake", (Target("kit_fake_server", "Server.run"),))
    assert server_status(fits) == "hooked"
    assert server_status(changed).startswith("NOT hooked: kit_fake_server.Server.__init__ takes no application, ")
    assert "takes ('app', 'endpoints'), the hook expects ('app',)" in server_status(exact)
    assert server_status(gone).startswith("NOT hooked: kit_fake_server.Server.run not found")
    assert "otel_asgi_kit.instrument(app)" in server_status(gone)


def test_command_line_exit_code(quiet_env: dict[str, str]) -> None:
    """``python -m otel_asgi_kit.cli doctor`` prints to stdout and exits 1 on a problem."""
    env = {**quiet_env, "OTEL_METRIC_EXPORT_INTERVAL": "soon", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "otel_asgi_kit.cli", "doctor"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert _problems(result.stdout) == [
        "OTEL_METRIC_EXPORT_INTERVAL='soon' is not a whole number from 100 to 86400000; using the default '60000'"
    ]
