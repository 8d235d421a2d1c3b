"""Nothing lost on SIGTERM/SIGINT, and a bounded exit when the collector is dead or black-holing."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from otel_asgi_kit import bootstrap
from tests.support.blackhole import BlackHole, refused_endpoint
from tests.support.otlp_receiver import OtlpReceiver, wait_for
from tests.support.servers import BIN, ROOT, free_port, kit_env, run_server, stop

pytestmark = pytest.mark.server

# Nothing is exported on schedule during the test: what arrives comes from the final flush.
HOLD = {
    "OTEL_BSP_SCHEDULE_DELAY": "60000",
    "OTEL_BLRP_SCHEDULE_DELAY": "60000",
    "OTEL_METRIC_EXPORT_INTERVAL": "600000",
    "OTEL_METRICS_EXPORTER": "prometheus,otlp",
}


def _send(base_url: str, n: int) -> None:
    # One shared client: building one per request (its TLS context) took ~0.2 s on a busy CI
    # machine, stretching 400 requests past the 60 s between two export-failure reports.
    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(5) as pool:
        assert list(pool.map(lambda i: client.get(f"{base_url}/items/{i}").status_code, range(n))) == [200] * n


@pytest.mark.parametrize(
    ("server", "workers", "sig"),
    [
        ("uvicorn", 1, signal.SIGTERM),
        ("uvicorn", 1, signal.SIGINT),
        ("uvicorn", 3, signal.SIGTERM),
        ("gunicorn", 3, signal.SIGTERM),
        ("hypercorn", 1, signal.SIGTERM),
        ("granian", 1, signal.SIGTERM),
        ("granian", 2, signal.SIGTERM),
        ("daphne", 1, signal.SIGTERM),
    ],
)
def test_everything_before_the_signal_arrives(server: str, workers: int, sig: int, receiver: OtlpReceiver) -> None:
    """50 requests, then the signal: 50 spans, 50 handler logs and the final metric count of 50."""
    env = kit_env(receiver.endpoint, **HOLD)
    with run_server(server, "examples.starlette_app:app", env, workers=workers) as srv:
        _send(srv.base_url, 50)
        assert receiver.spans() == []  # held back until the flush
        code = stop(srv.process, sig)
    spans = [s for s in receiver.spans() if s.name == "GET /items/{item_id}"]
    handler_logs = [r for r in receiver.logs() if str(r.body).startswith("looking up item")]
    assert len(spans) == 50
    assert len({s.span_id for s in spans}) == 50
    assert len(handler_logs) == 50
    assert receiver.final_count() == 50
    # The server's own exit semantics are kept: same code as without the kit.
    with run_server(server, "examples.starlette_app:app", env, workers=workers, launcher=False) as bare:
        _send(bare.base_url, 5)
        assert code == stop(bare.process, sig)


@pytest.mark.parametrize("collector", ["refusing", "black-hole"])
def test_dead_collector_exit_is_bounded(collector: str) -> None:
    """With no collector answering, SIGTERM still ends the whole process within 5 s (4 s flush bound)."""
    with BlackHole() as hole:
        endpoint = hole.endpoint if collector == "black-hole" else refused_endpoint()
        env = kit_env(endpoint, **HOLD)
        with run_server("uvicorn", "examples.starlette_app:app", env) as srv:
            _send(srv.base_url, 50)
            started = time.monotonic()
            stop(srv.process, signal.SIGTERM, timeout=30)
            elapsed = time.monotonic() - started
            stderr = srv.stderr()
    assert elapsed < 5.0, f"exit took {elapsed:.1f}s"
    assert "did not finish within 4s" in stderr or "cannot export" in stderr


def test_dead_collector_is_reported_once_and_requests_still_fast() -> None:
    """Spool off, collector refusing: the app serves, one stderr line per signal names the endpoint, drops counted."""
    endpoint = refused_endpoint()
    env = kit_env(
        endpoint,
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_BSP_MAX_QUEUE_SIZE="100",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="50",
        OTEL_ASGI_KIT_SPOOL="false",  # the SDK's own behaviour; with the spool see tests/test_spool_server.py
    )
    with run_server("uvicorn", "examples.starlette_app:app", env) as srv:
        _send(srv.base_url, 400)
        # The first failed export (its retries take up to the export timeout), not a fixed sleep.
        wait_for(lambda: "cannot export traces" in srv.stderr(), timeout=30)
        metrics = httpx.get(f"http://127.0.0.1:{srv.admin_port}/metrics").text
        stderr = srv.stderr()
        stdout = srv.stdout()
    trace_lines = [line for line in stderr.splitlines() if "cannot export traces" in line]
    assert len(trace_lines) == 1, stderr
    assert endpoint + "/v1/traces" in trace_lines[0]
    assert "Queue full" not in stdout + stderr  # no line per dropped span
    queue_full = [
        line
        for line in metrics.splitlines()
        if line.startswith("otel_sdk_processor_span_processed_total") and 'error_type="queue_full"' in line
    ]
    failed = [
        line
        for line in metrics.splitlines()
        if line.startswith("otel_sdk_exporter_span_exported_total")
        and "error_type=" in line
        and 'error_type=""' not in line
    ]
    dropped = sum(float(line.rsplit(" ", 1)[1]) for line in queue_full + failed)
    assert queue_full and failed, metrics
    assert dropped >= 250  # 400 spans, a queue of 100, one batch of 50 in flight


def test_recovery_after_the_collector_returns() -> None:
    """Collector down, then up: what is produced after it returns arrives, and stderr says so once."""
    endpoint = refused_endpoint()
    port = int(endpoint.rsplit(":", 1)[1])
    env = kit_env(endpoint, OTEL_METRICS_EXPORTER="prometheus", OTEL_EXPORTER_OTLP_TIMEOUT="1000")
    with run_server("uvicorn", "examples.starlette_app:app", env) as srv:
        _send(srv.base_url, 20)
        time.sleep(1.5)  # failed rounds while nothing listens
        with OtlpReceiver(port=port) as receiver:
            after = [httpx.get(f"{srv.base_url}/items/{i}") for i in range(10)]
            ids = {r.headers["traceresponse"].split("-")[1] for r in after}
            arrived = wait_for(lambda: ids <= {s.trace_id for s in receiver.spans()}, timeout=20)
            stderr = srv.stderr()
    assert arrived
    assert "cannot export traces" in stderr
    assert "export of traces to" in stderr and "works again" in stderr


def _children(pid: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


@pytest.mark.parametrize(
    ("worker", "app", "sig"),
    [
        pytest.param("aiohttp.GunicornWebWorker", "examples.aiohttp_app:app", signal.SIGTERM, id="aiohttp-TERM"),
        pytest.param("aiohttp.GunicornWebWorker", "examples.aiohttp_app:app", signal.SIGINT, id="aiohttp-INT"),
        # Not SIGINT: a booted UvicornWorker ignores the master's SIGQUIT (gunicorn 27), with or without the kit.
        pytest.param("uvicorn.workers.UvicornWorker", "examples.starlette_app:app", signal.SIGTERM, id="uvicorn-TERM"),
    ],
)
def test_gunicorn_stopped_while_a_worker_boots(worker: str, app: str, sig: int, receiver: OtlpReceiver) -> None:
    """The master's SIGTERM (SIGINT: SIGQUIT to the workers) reaches a worker still being set up by the kit.

    It used to land in the gunicorn master's handler the worker inherited, and the worker served on
    until the graceful timeout (20 s here) killed it.
    """
    cmd = [str(BIN / "opentelemetry-instrument"), str(BIN / "gunicorn"), app, "-k", worker]
    cmd += ["-b", f"127.0.0.1:{free_port()}", "-w", "2", "--graceful-timeout", "20"]
    env = kit_env(receiver.endpoint, **HOLD, OTEL_EXPORTER_PROMETHEUS_PORT=str(free_port()))
    process = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while len(_children(process.pid)) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(_children(process.pid)) == 2  # the second worker is forked: it is setting itself up
        started = time.monotonic()
        process.send_signal(sig)
        process.wait(30)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert elapsed < 8.0, f"gunicorn took {elapsed:.1f}s to stop: a worker waited for the graceful timeout"


@contextmanager
def _handlers_kept() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in bootstrap._STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_a_forked_worker_drops_only_the_supervisors_stop_handlers() -> None:
    def supervisors(signum: int, frame: object) -> None:  # like gunicorn's Arbiter.signal
        pass

    with _handlers_kept():
        signal.signal(signal.SIGTERM, supervisors)
        signal.signal(signal.SIGQUIT, supervisors)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        bootstrap._drop_supervisor_stop_handlers()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert signal.getsignal(signal.SIGQUIT) is bootstrap._quit_at_once  # ends it without a core dump
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own: kept

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, supervisors)
        bootstrap._drop_supervisor_stop_handlers()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # not a Python handler: kept
        assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL
