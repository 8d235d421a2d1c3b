"""A handler that blocks the loop, under each real server: one warning in that request's trace."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.otlp_receiver import OtlpReceiver, wait_for
from tests.support.servers import kit_env, run_server

pytestmark = pytest.mark.server

LOOP_LOGGER = "otel_asgi_kit.loop"


def _scrape(admin_port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{admin_port}/metrics", timeout=10).text


def _value(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn", "gunicorn"])
def test_blocked_handler_is_reported_in_its_trace(server: str, receiver: OtlpReceiver) -> None:
    """`time.sleep(0.3)` in a handler: one warning on stdout and over OTLP naming the handler, with its trace id."""
    env = kit_env(receiver.endpoint, OTEL_ASGI_KIT_METRICS_SNAPSHOT_INTERVAL="200")
    with run_server(server, "examples.blocking_app:app", env) as srv:
        for _ in range(5):
            assert httpx.get(srv.base_url + "/healthz").status_code == 200
        blocked = httpx.get(srv.base_url + "/block")
        assert blocked.status_code == 200
        trace_id = blocked.headers["traceresponse"].split("-")[1]
        logs = wait_for(lambda: [r for r in receiver.logs() if "event loop blocked" in str(r.body)])
        metrics = wait_for(
            lambda: (
                (text := _scrape(srv.admin_port))
                and _value(text, "python_asyncio_event_loop_blocked_total") == 1
                and text
            ),
            timeout=10,
        )
        stdout = srv.stdout()

    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    warnings = [d for d in lines if d["log.logger"] == LOOP_LOGGER]
    assert len(warnings) == 1, warnings
    (warning,) = warnings
    assert warning["log.level"] == "warning"
    assert warning["message"].startswith("event loop blocked for ")
    ms = int(warning["message"].split()[4])
    assert 290 <= ms <= 500, warning["message"]
    assert " in block (" in warning["message"] and "examples/blocking_app.py:12)" in warning["message"]
    assert 'examples/blocking_app.py", line 12, in block' in warning["error.stack_trace"]
    assert warning["trace.id"] == trace_id

    (record,) = logs
    assert record.trace_id == trace_id and record.severity_text == "WARN"
    assert record.attributes["code.function.name"] == "block"
    assert "in block" in record.attributes["code.stacktrace"]

    assert (_value(metrics, "python_asyncio_event_loop_lag_seconds_count") or 0) > 0
    assert _value(metrics, "process_cpu_time_seconds_total") is not None
    assert not [line for line in metrics.splitlines() if line.startswith(("system_", "process_runtime_"))]
