"""Never silently off: real processes the kit cannot trace say so once on stderr; traced ones say nothing."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from tests.support.otlp_receiver import OtlpReceiver, wait_for
from tests.support.servers import BIN, ROOT, free_port, kit_env, run_server, stop

pytestmark = pytest.mark.server

NOT_TRACED = "its requests are not traced"


def _finding_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if NOT_TRACED in line]


def test_unknown_asgi_server_is_named_once_with_what_to_do(receiver: OtlpReceiver) -> None:
    """An ASGI server the kit does not hook: one line after the first request, none later; no spans."""
    with run_server("tiny", "examples.starlette_app:app", kit_env(receiver.endpoint)) as srv:
        responses = [httpx.get(srv.base_url + f"/items/{i}") for i in range(3)]
        lines = wait_for(lambda: _finding_lines(srv.stderr()), timeout=5)
        time.sleep(0.5)
        stderr = srv.stderr()
    assert [r.status_code for r in responses] == [200] * 3
    assert lines == _finding_lines(stderr) and len(lines) == 1, stderr
    assert "Starlette gets requests from a server the kit does not hook" in lines[0]
    assert "otel_asgi_kit.instrument(app)" in lines[0]
    assert receiver.spans() == []


def test_following_the_advice_traces_and_silences_it(receiver: OtlpReceiver) -> None:
    """The same server with the app wrapped by instrument(app): spans arrive, no finding."""
    with run_server(
        "tiny", "examples.starlette_app:app", kit_env(receiver.endpoint), extra_args=("--instrument",)
    ) as srv:
        response = httpx.get(srv.base_url + "/items/1")
        spans = wait_for(receiver.spans)
        stderr = srv.stderr()
    assert "traceresponse" in response.headers
    assert [s.name for s in spans] == ["GET /items/{item_id}"]
    assert _finding_lines(stderr) == []


def test_granian_with_an_rsgi_interface_says_so_once_at_start(receiver: OtlpReceiver) -> None:
    """granian --interface rsgi (2 workers): one line from the main process at start-up, before any request."""
    env = kit_env(receiver.endpoint)
    with run_server("granian", "examples.starlette_app:app", env, workers=2, extra_args=("--interface", "rsgi")) as srv:
        stderr = srv.stderr()
    lines = _finding_lines(stderr)
    assert len(lines) == 1, stderr
    assert "Granian with --interface rsgi" in lines[0] and "granian --interface asgi" in lines[0]


def test_gunicorn_with_a_wsgi_worker_says_so_once_at_start(receiver: OtlpReceiver) -> None:
    """gunicorn's default sync worker (a WSGI app, 2 workers): one line from the master, the app serves."""
    env = kit_env(receiver.endpoint)
    with run_server("gunicorn", "tests.support.wsgi_app:app", env, workers=2, extra_args=("-k", "sync")) as srv:
        response = httpx.get(srv.base_url + "/items/1")
        stderr = srv.stderr()
    assert response.text == "ok" and "traceresponse" not in response.headers
    lines = _finding_lines(stderr)
    assert len(lines) == 1, stderr
    assert "gunicorn with worker class 'sync'" in lines[0] and "uvicorn.workers.UvicornWorker" in lines[0]


def test_wsgi_development_server_says_so_when_it_starts() -> None:
    """Flask's/werkzeug's WSGI server started under the kit: one line naming it, the app still serves."""
    port = free_port()
    code = (
        "from werkzeug.serving import run_simple\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('content-type', 'text/plain')])\n"
        "    return [b'ok']\n"
        f"run_simple('127.0.0.1', {port}, app)\n"
    )
    env = kit_env(None, OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    env["OTEL_EXPORTER_PROMETHEUS_PORT"] = str(free_port())
    process = subprocess.Popen(
        [str(BIN / "opentelemetry-instrument"), str(BIN / "python"), "-c", code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        response = wait_for(lambda: _get(f"http://127.0.0.1:{port}/"), timeout=20)
    finally:
        stop(process)
    assert process.stderr is not None
    stderr = process.stderr.read().decode()
    assert response is not None and response.text == "ok"
    lines = _finding_lines(stderr)
    assert len(lines) == 1, stderr
    assert "werkzeug's WSGI development server" in lines[0] and "ASGI" in lines[0]


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return None
