"""Nothing lost on SIGTERM/SIGINT, and a bounded exit when the collector is dead or black-holing."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.blackhole import BlackHole, refused_endpoint
from tests.support.otlp_receiver import OtlpReceiver, wait_for
from tests.support.servers import kit_env, run_server, stop

pytestmark = pytest.mark.server

# Nothing is exported on schedule during the test: what arrives comes from the final flush.
HOLD = {
    "OTEL_BSP_SCHEDULE_DELAY": "60000",
    "OTEL_BLRP_SCHEDULE_DELAY": "60000",
    "OTEL_METRIC_EXPORT_INTERVAL": "600000",
    "OTEL_METRICS_EXPORTER": "prometheus,otlp",
}


def _send(base_url: str, n: int) -> None:
    def one(i: int) -> int:
        return httpx.get(f"{base_url}/items/{i}", timeout=10).status_code

    with ThreadPoolExecutor(5) as pool:
        assert list(pool.map(one, range(n))) == [200] * n


def _final_count(receiver: OtlpReceiver) -> int:
    """Sum over workers of the last cumulative duration count each pushed."""
    latest: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    for request in receiver.received.metrics:
        for rm in request.resource_metrics:
            instance = next(kv.value.string_value for kv in rm.resource.attributes if kv.key == "service.instance.id")
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != "http.server.request.duration":
                        continue
                    for point in metric.histogram.data_points:
                        attrs = tuple(sorted((kv.key, str(kv.value)) for kv in point.attributes))
                        latest[(instance, attrs)] = point.count
    return sum(latest.values())


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
    assert _final_count(receiver) == 50
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
        time.sleep(2.5)  # a few failed export rounds
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
